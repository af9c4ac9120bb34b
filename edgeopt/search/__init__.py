"""``edgeopt search``: an Optuna study over backbone x input size x pruning x distillation x lr.

Each trial builds a (pretrained) backbone at a sampled input size, prunes it to a sampled
fraction of its MACs with Torch-Pruning, trains it with ``edgeopt train``'s loop (distilled from
``--teacher`` at a sampled temperature and weight), exports it to ONNX and times it with ONNX
Runtime on this machine's CPU. Its artifacts stay in ``OUT/STUDY/trial-NNNN/``.

Objectives: ``pareto`` maximises validation macro-F1 and minimises MACs (a Pareto front);
``score`` minimises the competition's MAC score against a baseline (``score.score_macs``). MACs,
not latency, are the objective because they are the same on every worker of a study that runs on
many machines; latency is recorded for every trial and plotted.

Storage is a SQLite file by default; ``postgresql://...`` lets several machines work on one study
at once (Optuna's RDB storage). Trials send heartbeats: one whose worker was killed is failed once
its heartbeat is stale and retried with the same parameters in its own folder, where training
resumes from ``last.pt``.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeopt.search.config import (
    BANK_FINAL_EPOCHS,
    DEFAULT_BACKBONES,
    OBJECTIVES,
    SearchConfig,
    SearchResult,
    SearchSpace,
    TrialRecord,
)

# (``report``, the study's report, is ``edgeopt.search.report.report``: the module's own name would hide it)
# the settings above import nothing heavy (the CLI declares its options from them); the study, its
# storage and trials (Optuna, torch) load on first use
_LAZY = {
    "search_models": "study", "choose": "report", "pareto_front": "report", "plot_pareto": "report",
    "_records": "report", "SETTINGS_ATTR": "storage", "StorageError": "storage", "_driver_url": "storage",
    "load_or_create_study": "storage", "mask_url": "storage", "open_storage": "storage", "study_settings": "storage",
    "_say_view_repeats": "trial", "baseline_macs": "trial", "fitting_space": "trial", "point_macs": "trial", "refit": "trial",
    "run_trial": "trial", "suggest": "trial", "train_point": "trial",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"edgeopt.search.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'edgeopt.search' has no attribute {name!r}")


__all__ = ["BANK_FINAL_EPOCHS", "DEFAULT_BACKBONES", "OBJECTIVES", "SearchConfig", "SearchResult", "SearchSpace", "TrialRecord",
           *_LAZY]
