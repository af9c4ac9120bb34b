"""``edgeopt optimize``: crops and a budget in, a benchmarked model out (see ``pipeline``).

``config`` (the settings, from flags or YAML), ``checks`` (every input checked before step 1),
``steps`` (each step skipped, resumed or rerun by its inputs), ``pipeline`` (the steps), ``deploy``
(the target's form, judged itself) and ``report``.
"""

from edgeopt.optimize.checks import tensorrt_available
from edgeopt.optimize.config import OptimizeConfig, read_yaml_config
from edgeopt.optimize.pipeline import OptimizeResult, run_demo, run_optimize

__all__ = ["OptimizeConfig", "OptimizeResult", "read_yaml_config", "run_demo", "run_optimize", "tensorrt_available"]
