"""Models: the factory (timm, torchvision, registered and YAML models), offline pretrained weights, the YAML DSL, MACs/params."""

from edgeopt.models.complexity import Complexity, count_complexity
from edgeopt.models.factory import create_model, rebuild_model

__all__ = ["Complexity", "count_complexity", "create_model", "rebuild_model"]
