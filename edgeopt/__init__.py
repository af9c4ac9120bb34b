"""edgeopt: from a trained compact classifier to a measured edge deployment.

The Python API is what the CLI calls: one function per stage, named verb_noun, most taking one config
dataclass whose fields are the command's flags (README, "Python API"). Every name below is imported
from its stage when first used, so ``import edgeopt`` stays free of torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_API = {
    # data
    "split_folder": "edgeopt.data.split", "convert_taco": "edgeopt.data.taco", "render_synthetic": "edgeopt.data.synthetic",
    "compute_stats": "edgeopt.data.stats",
    # models
    "create_model": "edgeopt.models.factory", "register_model": "edgeopt.models.plugins",
    # train and distil
    "train_classifier": "edgeopt.train.loop", "TrainConfig": "edgeopt.train.config", "KDConfig": "edgeopt.train.config",
    "make_soft_labels": "edgeopt.train.soft_labels", "SoftLabelConfig": "edgeopt.train.soft_labels",
    # compress
    "prune_checkpoint": "edgeopt.compress.prune", "PruneConfig": "edgeopt.compress.config",
    "decompose_checkpoint": "edgeopt.compress.decompose", "DecomposeConfig": "edgeopt.compress.config",
    # export, INT8, engines, and the walk that chains them
    "export_onnx": "edgeopt.export.onnx", "calibrate_onnx": "edgeopt.quant.calibrate",
    "finetune_qat": "edgeopt.quant.qat", "QatConfig": "edgeopt.quant.qat_config",
    "build_engine": "edgeopt.trt.build", "BuildConfig": "edgeopt.trt.plan", "convert_artifact": "edgeopt.convert",
    # measure and use
    "evaluate_artifact": "edgeopt.runtime.evaluate", "compare_artifacts": "edgeopt.runtime.evaluate",
    "classify_folder": "edgeopt.runtime.classify", "PredictConfig": "edgeopt.runtime.classify",
    "open_runner": "edgeopt.runtime",
    "bench_artifacts": "edgeopt.bench.harness", "BenchConfig": "edgeopt.bench.harness",
    # the whole pipeline
    "search_models": "edgeopt.search.study", "SearchConfig": "edgeopt.search.config",
    "optimize_classifier": "edgeopt.optimize.pipeline", "OptimizeConfig": "edgeopt.optimize.config",
    "run_demo": "edgeopt.optimize.pipeline",
    # serve
    "export_triton": "edgeopt.serve.triton", "TritonConfig": "edgeopt.serve.triton",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'edgeopt' has no attribute {name!r}")
