"""A user's own ``nn.Module`` as an edgeopt model: ``@edgeopt.register_model`` and installed plugins.

As timm's ``@register_model``: a decorated factory ``f(num_classes, **kwargs) -> nn.Module`` joins the
model registry under its name, with the preprocessing its weights expect (input size, mean, std), so
``create_model("my_net", ...)``, ``edgeopt train --model my_net`` and every later stage take it like
a timm or torchvision model. A checkpoint records the name (``arch["source"] == "registered"``) and
rebuilds through the same registration; where none is present, loading it is a one-line error
naming the model and the factory that registered it.

A package makes its models available without being imported by hand through the entry-point group
``edgeopt.models`` (``[project.entry-points."edgeopt.models"] my_net = "my_pkg.models"``): asked for a
name it does not hold, the registry loads the entry point of that name, whose import registers it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from edgeopt.data.presets import IMAGENET_MEAN, IMAGENET_STD
from edgeopt.errors import ConfigError
from edgeopt.registries import Registry

if TYPE_CHECKING:
    import torch.nn as nn

    from edgeopt.data.presets import Preprocess

ENTRY_POINT_GROUP = "edgeopt.models"


@dataclasses.dataclass(frozen=True)
class RegisteredModel:
    """A registered factory and the preprocessing its model expects."""

    name: str
    factory: Callable[..., nn.Module]  # factory(num_classes, **kwargs) -> nn.Module
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def origin(self) -> str:
        """Where the factory lives: ``package.module.function``."""
        return f"{getattr(self.factory, '__module__', '?')}.{getattr(self.factory, '__qualname__', '?')}"


MODELS: Registry[RegisteredModel] = Registry("registered model")


def register_model(name: str | None = None, *, preprocess: Preprocess | Mapping[str, Any] | None = None
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``factory(num_classes, **kwargs) -> nn.Module`` as model ``name`` (default: the
    function's name). ``preprocess``: an ``edgeopt.data.presets.Preprocess`` or a mapping with ``size``,
    ``mean`` and ``std`` (default 224 px, ImageNet mean/std); training sets the size it trains at and
    the resize rule, the model keeps its mean and std. A second registration of one name is an error."""
    settings = _preprocess_settings(preprocess)

    def decorate(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if not callable(factory):
            raise ConfigError(f"register_model: {factory!r} is not a function that builds a model")
        MODELS.register(name or factory.__name__, RegisteredModel(name or factory.__name__, factory, **settings))
        return factory

    return decorate


def _preprocess_settings(preprocess: Any) -> dict[str, Any]:
    if preprocess is None:
        return {"input_size": 224, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    values = preprocess.to_dict() if hasattr(preprocess, "to_dict") else dict(preprocess)
    unknown = sorted(set(values) - {"size", "mean", "std", "resize"})
    if unknown:
        raise ConfigError(f"register_model: `preprocess` keys {unknown} are unknown: use size, mean and std")
    size, mean, std = values.get("size", 224), tuple(values.get("mean", IMAGENET_MEAN)), tuple(values.get("std", IMAGENET_STD))
    if not isinstance(size, int) or not 16 <= size <= 1024 or len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError(f"register_model: `preprocess` {values}: size is 16..1024 pixels, mean and std 3 numbers each "
                          "(std above 0)")
    return {"input_size": size, "mean": mean, "std": std}


def registered_model(name: str) -> RegisteredModel | None:
    """The registration of ``name``, loading the installed plugin of that name first if needed; None if none."""
    if name not in MODELS:
        _load_entry_point(name)
    return MODELS.get(name) if name in MODELS else None


def plugin_names() -> list[str]:
    """Registered models and installed plugins' entry points (not loaded)."""
    from importlib.metadata import entry_points

    return sorted(set(MODELS.names()) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def _load_entry_point(name: str) -> None:
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        return
    ep = found[0]
    try:
        ep.load()
    except Exception as exc:  # a broken plugin: any import error, said in one line
        raise ConfigError(f"model {name!r}: its plugin {ep.value} (entry point group {ENTRY_POINT_GROUP}) failed to "
                          f"load ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
    if name not in MODELS:
        raise ConfigError(f"model {name!r}: its plugin {ep.value} (entry point group {ENTRY_POINT_GROUP}) loaded but "
                          f"registered no model {name!r}: decorate its factory with @edgeopt.register_model({name!r})")
