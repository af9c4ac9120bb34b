"""Model registry, offline pretrained weights, YAML DSL, MACs/params."""

from edgeopt.models.complexity import Complexity, count_complexity
from edgeopt.models.registry import create_model, rebuild_model

__all__ = ["Complexity", "count_complexity", "create_model", "rebuild_model"]
