"""``edgeopt optimize``: crops and a budget in, a benchmarked model out (see ``pipeline``).

``config`` (the settings, from flags or YAML), ``checks`` (every input checked before step 1),
``steps`` (each step skipped, resumed or rerun by its inputs), ``pipeline`` (the steps), ``deploy``
(the target's form, judged itself) and ``report``.
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeopt.optimize.config import OptimizeConfig, read_yaml_config

# the settings import nothing heavy (the CLI declares its options from them); the pipeline loads on first use
_LAZY = {"OptimizeResult": "pipeline", "run_demo": "pipeline", "optimize_classifier": "pipeline", "tensorrt_available": "checks"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"edgeopt.optimize.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'edgeopt.optimize' has no attribute {name!r}")


__all__ = ["OptimizeConfig", "read_yaml_config", *_LAZY]
