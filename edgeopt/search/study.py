"""The study: ``search_models`` runs (or reports) an Optuna study of trials (``trial``) stored by ``storage``."""


from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

from edgeopt.errors import ConfigError, MissingDependencyError
from edgeopt.search.config import SearchConfig, SearchResult
from edgeopt.search.report import _records, choose, report
from edgeopt.search.storage import load_or_create_study, mask_url, open_storage, study_settings
from edgeopt.search.trial import _say_view_repeats, baseline_macs, fitting_space, refit, run_trial


def search_models(config: SearchConfig, log: Callable[[str], None] = print, *, report_only: bool = False,
               callbacks: Any = None) -> SearchResult:
    """Run (or join, or resume) the study until it holds ``trials`` finished trials; report and export.
    ``callbacks``: ``train_classifier``'s progress hooks, for every trial and the final run.

    ``report_only``: run no trial (nor the final run); report the study as it stands, e.g. on the
    machine that gathers a study other workers are running.
    """
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError("edgeopt search needs Optuna: pip install optuna") from None
    from optuna.trial import TrialState

    from edgeopt.data.folder import scan_folder

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # retry/heartbeat APIs
    scan = scan_folder(config.data)
    classes = scan.classes
    for teacher in config.kd.teachers:
        if not teacher.is_file():
            raise ConfigError(f"`teacher` {teacher}: no such checkpoint; train one with edgeopt train")
    if config.kd.soft_labels is not None:  # checked once, not once per trial
        from edgeopt.data.folder import split_scan
        from edgeopt.train.soft_labels import read_bank

        read_bank(config.kd.soft_labels).rows_for(split_scan(scan, config.val_split, seed=0)[0])  # train_point's split
        _say_view_repeats(config, config.epochs, log)
    _check_backbones(config, len(classes))
    space = fitting_space(config.space, config.max_macs, len(classes))
    if space != config.space:
        left_out = sorted(set(config.space.backbones) - set(space.backbones)) + sorted(set(config.space.sizes) - set(space.sizes))
        log(f"left out of the search, over `max_macs` {config.max_macs / 1e6:g}M at any setting: {', '.join(map(str, left_out))}")
        config = dataclasses.replace(config, space=space)
    storage = open_storage(config)
    study = load_or_create_study(config, storage, study_settings(config, classes))
    b_macs, b_size = baseline_macs(config.baseline, len(classes))
    baseline = {"name": config.baseline, "macs": b_macs, "img_size": b_size, "f1": config.baseline_f1}
    config.study_dir.mkdir(parents=True, exist_ok=True)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    if done < config.trials and not report_only:
        log(f"study {config.study!r} in {mask_url(config.storage_url)}: {done} of {config.trials} trials finished")
        stop = optuna.study.MaxTrialsCallback(config.trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
        study.optimize(lambda trial: run_trial(config, trial, classes, baseline, log, callbacks), n_trials=config.trials - done,
                       timeout=config.timeout, callbacks=[stop], gc_after_trial=True)
    final = None
    if config.final_epochs and not report_only:
        chosen = choose(_records(study)[0], config.max_macs)
        final = refit(config, chosen, classes, log, callbacks) if chosen is not None else None
    return report(config, study, baseline, mask_url(config.storage_url), final=final)


def _check_backbones(config: SearchConfig, num_classes: int) -> None:
    """Every backbone builds (with its pretrained weights): a bad name fails before any trial runs."""
    from edgeopt.models import create_model

    for name in config.space.backbones:
        create_model(name, num_classes, pretrained=config.pretrained)
