"""One trial of the study (build, prune, train distilled, export, time) and the chosen point's final run."""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeopt.errors import ConfigError, EdgeoptError
from edgeopt.search.config import SearchConfig, SearchSpace, TrialRecord


def baseline_macs(name: str, num_classes: int) -> tuple[int, int]:
    """(MACs, input size) of the named baseline at the size its model config gives."""
    from edgeopt.models import count_complexity, create_model
    from edgeopt.models.factory import default_input_size

    size = default_input_size(name)
    model, _ = create_model(name, num_classes)
    return count_complexity(model, size).macs, size


@functools.lru_cache(maxsize=None)
def point_macs(backbone: str, size: int, num_classes: int) -> int:
    """MACs of ``backbone`` at ``size`` px, unpruned (built without weights: only its shape counts)."""
    from edgeopt.models import count_complexity, create_model

    model, _ = create_model(backbone, num_classes)
    return count_complexity(model, size).macs


def fitting_space(space: SearchSpace, max_macs: int | None, num_classes: int) -> SearchSpace:
    """``space`` less the backbones and sizes that cannot fit ``max_macs`` even pruned by ``max_prune``:
    a trial that cannot be chosen is not worth training. Nothing fitting is a one-line error."""
    if max_macs is None:
        return space
    least = {(b, s): point_macs(b, s, num_classes) * (1 - space.max_prune) for b in space.backbones for s in space.sizes}
    fits = [point for point, macs in least.items() if macs <= max_macs]
    if not fits:
        (b, s), macs = min(least.items(), key=lambda kv: kv[1])
        pruned = f" pruned by {space.max_prune:.0%}" if space.max_prune else ""
        raise ConfigError(f"`max_macs` {max_macs / 1e6:g}M: no backbone fits at any size; the smallest point, {b} at {s} px"
                          f"{pruned}, costs {macs / 1e6:.1f}M MACs: raise `max_macs`, add smaller `sizes` or allow pruning "
                          "(`max_prune`)")
    return dataclasses.replace(space, backbones=tuple(b for b in space.backbones if any(p[0] == b for p in fits)),
                               sizes=tuple(s for s in space.sizes if any(p[1] == s for p in fits)))


def suggest(trial: Any, space: SearchSpace, has_teacher: bool) -> dict[str, Any]:
    params: dict[str, Any] = {
        "backbone": trial.suggest_categorical("backbone", list(space.backbones)),
        "img_size": trial.suggest_categorical("img_size", list(space.sizes)),
        "prune": trial.suggest_float("prune", 0.0, space.max_prune, step=0.05) if space.max_prune > 0 else 0.0,
        "lr": trial.suggest_float("lr", *space.lr, log=True) if space.lr[0] < space.lr[1] else space.lr[0],
    }
    if has_teacher:
        t, a = space.kd_temperature, space.kd_alpha
        params["kd_temperature"] = trial.suggest_float("kd_temperature", *t) if t[0] < t[1] else t[0]
        params["kd_alpha"] = trial.suggest_float("kd_alpha", *a) if a[0] < a[1] else a[0]
    return params


def _trial_dir(config: SearchConfig, trial: Any) -> Path:
    """A retried trial works in the folder of the trial it retries (and resumes its training)."""
    from optuna.storages import RetryFailedTrialCallback

    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    history = RetryFailedTrialCallback.retry_history(frozen)
    return config.study_dir / f"trial-{(history[0] if history else trial.number):04d}"


def train_point(config: SearchConfig, params: dict[str, Any], classes: list[str], folder: Path, *, epochs: int,
                val_split: float, data: Path | None = None, callbacks: Any = None, bn_recalibrate: bool = False,
                start: Path | None = None) -> Any:
    """Build the point's backbone (or take ``start``'s weights: the same backbone at another size), prune it to
    its fraction of MACs, train it (distilled) in ``folder`` (``callbacks``: ``train_classifier``'s progress hooks).

    The pruned start is kept as ``init.pt`` and training resumes from ``last.pt`` when the folder
    has them (a retried trial, an interrupted final run).
    """
    from edgeopt.models.checkpoint import save_checkpoint
    from edgeopt.models import count_complexity, create_model
    from edgeopt.models.factory import preset_for_model
    from edgeopt.compress.prune import prune_to_macs
    from edgeopt.train.loop import TrainConfig, train_classifier

    size = params["img_size"]
    init = folder / "init.pt"
    folder.mkdir(parents=True, exist_ok=True)
    if not init.exists() and start is not None:
        from edgeopt.models.checkpoint import load_model_and_arch

        model, _, arch = load_model_and_arch(start)
        save_checkpoint(init, model, arch, classes, preset_for_model(params["backbone"], size))
    if not init.exists():
        model, arch = create_model(params["backbone"], len(classes), pretrained=config.pretrained)
        macs = count_complexity(model, size).macs
        if params["prune"] > 0:
            prune_to_macs(model, arch, size, int(macs * (1 - params["prune"])), num_classes=len(classes))
            arch["pruned"] = {"fraction_of_macs": params["prune"], "macs_before": macs, "importance": "l2"}
        save_checkpoint(init, model, arch, classes, preset_for_model(params["backbone"], size))
    return train_classifier(TrainConfig(
        model=params["backbone"], data=data or config.data, out=folder, init_checkpoint=init, img_size=size,
        epochs=epochs, batch_size=config.batch_size, lr=params["lr"], pretrained=config.pretrained, schedule=config.schedule,
        # a point without KD params has no soft targets: alpha 0 (the temperature is then unused)
        kd=dataclasses.replace(config.kd, temperature=params.get("kd_temperature", config.kd.temperature),
                               alpha=params.get("kd_alpha", 0.0)),
        val_split=val_split, device=config.device, workers=config.workers, resume=(folder / "last.pt").exists(),
        warn_view_repeats=False, bn_recalibrate=bn_recalibrate), callbacks)


def run_trial(config: SearchConfig, trial: Any, classes: list[str], baseline: dict[str, Any],
              log: Callable[[str], None], callbacks: Any = None) -> tuple[float, ...]:
    """One trial: build, prune, train (distilled), export, time; returns the objective values."""
    import optuna

    from edgeopt.bench.score import score_macs

    params = suggest(trial, config.space, config.kd.enabled)
    folder = _trial_dir(config, trial)
    trial.set_user_attr("point", params)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("artifacts", str(folder.resolve()))
    resume = (folder / "last.pt").exists()
    if resume:
        trial.set_user_attr("resumed", True)
    log(f"trial {trial.number}: {_describe(params)}{' (resuming)' if resume else ''}")
    if config.max_macs is not None:  # a point of a backbone that fits at other sizes only: never trained
        macs = point_macs(params["backbone"], params["img_size"], len(classes)) * (1 - params["prune"])
        if macs > config.max_macs:
            reason = f"{macs / 1e6:.1f}M MACs is over `max_macs` {config.max_macs / 1e6:g}M: not trained"
            trial.set_user_attr("error", reason)
            log(f"trial {trial.number}: skipped: {reason}")
            raise optuna.TrialPruned(reason)
    try:
        train = train_point(config, params, classes, folder, epochs=config.epochs, val_split=config.val_split,
                            callbacks=callbacks)
        onnx_path, latency = _export_and_time(train.best_checkpoint, folder, config)
    except EdgeoptError as exc:  # a point of the space this backbone cannot take (e.g. below its pruning floor)
        trial.set_user_attr("error", str(exc))
        log(f"trial {trial.number}: skipped: {exc}")
        raise optuna.TrialPruned(str(exc)) from None
    f1 = float(train.best_macro_f1)
    score = score_macs(train.macs, baseline["macs"], f1, config.baseline_f1)
    trial.set_user_attr("macs", train.macs)
    trial.set_user_attr("params_count", train.params)
    trial.set_user_attr("val_macro_f1", f1)
    trial.set_user_attr("latency_ms", latency)
    trial.set_user_attr("score", score)
    trial.set_user_attr("onnx", str(onnx_path))
    log(f"trial {trial.number}: val macro-F1 {f1:.4f}, {train.macs / 1e6:.1f}M MACs, {latency:.2f} ms, score {score:.4f}")
    return (f1, float(train.macs)) if config.objective == "pareto" else (score,)


def refit(config: SearchConfig, chosen: TrialRecord, classes: list[str], log: Callable[[str], None],
          callbacks: Any = None) -> dict[str, Any]:
    """Train the chosen point again on all of ``--data`` for ``final_epochs`` (no selection) and export it.

    With ``config.int8``, a slice of ``--data`` is held out of that run first, and INT8 is made by
    PTQ or QAT, whichever loses less macro-F1 on that slice (``edgeopt.quant.int8_choice``)."""
    from edgeopt.quant.int8_choice import choose_int8, split_for_judging

    folder = config.study_dir / f"final-trial-{chosen.number:04d}"
    data, judge = config.data, None
    if config.int8 is not None:
        data, judge = split_for_judging(config.data, config.study_dir / "final-split", config.int8.holdout)
    assistant, start = None, None
    teaches = chosen.params["img_size"] <= config.assistant_for
    starts = config.assistant_init and not chosen.params["prune"]  # a pruned student has other shapes
    if config.assistant_size > chosen.params["img_size"] and (teaches or starts):
        assistant = teacher_assistant(config, chosen.params, classes, data, log, callbacks, bank=teaches)
        if assistant["bank"]:
            config = dataclasses.replace(config, kd=dataclasses.replace(config.kd, soft_labels=Path(assistant["bank"])))
        start = Path(assistant["checkpoint"]) if starts else None
    log(f"final run of trial {chosen.number} on {'all of ' if judge is None else ''}{data}, {config.final_epochs} epochs"
        f"{f', starting from {start}' if start else ''} -> {folder}")
    _say_view_repeats(config, config.final_epochs, log)
    train = train_point(config, chosen.params, classes, folder, epochs=config.final_epochs, val_split=0.0, data=data,
                        callbacks=callbacks, bn_recalibrate=config.bn_recalibrate, start=start)
    onnx_path, latency = _export_and_time(train.best_checkpoint, folder, config)
    record = {"trial": chosen.number, "checkpoint": str(train.best_checkpoint), "onnx": str(onnx_path), "macs": train.macs,
              "epochs": config.final_epochs, "latency_ms": latency, "trained_on": str(data),
              "bn_recalibrated": config.bn_recalibrate,
              "selection": "none: trained on all of `data` for a fixed number of epochs; score it on a test split",
              "assistant": assistant, "started_from": str(start) if start else None}
    if judge is not None:
        record["selection"] = (f"none: trained on `data` less a {config.int8.holdout:.0%} slice held out to judge INT8, for a "
                               "fixed number of epochs; score it on a test split")
        record["int8"] = choose_int8(train.best_checkpoint, onnx_path, data, judge, folder, config.int8, log, device=config.device)
    return record


def teacher_assistant(config: SearchConfig, params: dict[str, Any], classes: list[str], data: Path,
                      log: Callable[[str], None], callbacks: Any = None, bank: bool = True) -> dict[str, Any]:
    """The chosen backbone at ``assistant_size`` (unpruned), distilled from the bank on ``data``, and (``bank``)
    its own bank of the same views: what a student far below the teacher's resolution learns from (TAKD).

    Both resume: the assistant from its ``last.pt``, its bank from the chunks already written."""
    from edgeopt.train.soft_labels import SoftLabelConfig, make_soft_labels, read_bank

    folder = config.study_dir / f"assistant-{config.assistant_size}"
    point = {**params, "img_size": config.assistant_size, "prune": 0.0}
    log(f"teacher assistant: {params['backbone']} at {config.assistant_size} px, {config.assistant_epochs} epochs from the "
        f"bank on {data} -> {folder}")
    train = train_point(config, point, classes, folder, epochs=config.assistant_epochs, val_split=0.0, data=data,
                        callbacks=callbacks, bn_recalibrate=True)
    record = {"checkpoint": str(train.best_checkpoint), "img_size": config.assistant_size, "epochs": config.assistant_epochs,
              "macs": train.macs, "bank": None, "seconds": round(train.seconds, 1)}
    if not bank:
        return record
    made = read_bank(config.kd.soft_labels).manifest.extra  # the assistant's bank is drawn as the teacher's was
    views, mix = made["augmentation"], made.get("mix") or {"mode": "none", "alpha": 1.0}
    made_bank = make_soft_labels(SoftLabelConfig(
        teachers=[train.best_checkpoint], data=data, out=folder / "soft-labels.bank", views=made["views"],
        scale_min=views["scale_min"], brightness=views["brightness"], seed=views["seed"], tta_flip=bool(made.get("teacher_tta")),
        mix=mix["mode"], mix_alpha=mix["alpha"], batch_size=config.batch_size, device=config.device))
    log(f"teacher assistant's bank: {made_bank.images} images x {made_bank.views} views -> {made_bank.path}")
    return {**record, "bank": str(made_bank.path), "seconds": round(train.seconds + made_bank.seconds, 1)}


def _say_view_repeats(config: SearchConfig, epochs: int, log: Callable[[str], None]) -> None:
    """One line, where a run from the bank has more epochs than it has views (trials and the final run
    train with the view-repeat warning off: a search chooses its schedules itself)."""
    if config.kd.soft_labels is None:
        return
    from edgeopt.train.soft_labels import read_bank

    views = read_bank(config.kd.soft_labels).num_views
    if epochs > views:
        log(f"the bank holds {views} views per image: over {epochs} epochs each is seen about {epochs / views:.0f} times "
            f"(a bank with more `views` gives more distinct ones)")


def _describe(params: dict[str, Any]) -> str:
    text = f"{params['backbone']} @{params['img_size']} px, prune {params['prune']:.2f}, lr {params['lr']:.2g}"
    if "kd_alpha" in params:
        text += f", KD T={params['kd_temperature']:.1f} a={params['kd_alpha']:.2f}"
    return text


def _export_and_time(checkpoint: Path, folder: Path, config: SearchConfig) -> tuple[Path, float]:
    """ONNX export (parity-checked on the data) and its batch-1 p50 latency on this CPU (ms)."""
    from edgeopt.bench.timing import onnx_cpu_latency_ms
    from edgeopt.convert import convert_artifact

    onnx_path = convert_artifact(checkpoint, "onnx", folder / "model.onnx", data=config.data).path
    return onnx_path, onnx_cpu_latency_ms(onnx_path, runs=config.latency_runs, warmup=min(10, config.latency_runs))
