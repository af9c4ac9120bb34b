"""One factory over edgeopt's own builders, registered models, timm, torchvision and YAML model files.

``create_model(name_or_yaml, num_classes, pretrained=...)`` returns the module and an ``arch``
record (stored in checkpoints and manifests) from which the same module can be rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from edgeopt.data.presets import Preprocess
from edgeopt.errors import ArtifactError, ConfigError, MissingDependencyError
from edgeopt.models.plugins import RegisteredModel, plugin_names, registered_model
from edgeopt.registries import Registry, unknown_name_message

# Loaders of pretrained weights that need no network, by model name.
PRETRAINED_LOADERS: Registry[Callable[[nn.Module], None]] = Registry("offline pretrained loader")


def _lite_loader(variant: int) -> Callable[[nn.Module], None]:
    def load(model: nn.Module) -> None:
        from edgeopt.models.pretrained import load_efficientnet_lite

        load_efficientnet_lite(model, variant)

    return load


def _mobilenet_v2_loader(model: nn.Module) -> None:
    from edgeopt.models.pretrained import load_mobilenet_v2

    load_mobilenet_v2(model)


for _variant in (0, 1, 2):
    PRETRAINED_LOADERS.register(f"tf_efficientnet_lite{_variant}", _lite_loader(_variant))
PRETRAINED_LOADERS.register("mobilenet_v2", _mobilenet_v2_loader)  # torchvision's


@dataclass(frozen=True)
class Variant:
    """A library model with some convolutions' strides changed: the same weights (pretrained ones load), other MACs."""

    base: str
    strides: dict[str, int] = field(default_factory=dict)  # module path -> stride
    doc: str = ""


# edgeopt's own builders: variants of library models, rebuilt by name like the library's own.
VARIANTS: Registry[Variant] = Registry("model variant")
VARIANTS.register("mobilenet_v2_s2", Variant(
    "mobilenet_v2", {"features.1.conv.0.0": 2},
    "MobileNetV2 whose first block (a 3x3 depthwise) has stride 2: at 64 px it sees twice the pixels per side of "
    "MobileNetV2 at 32 px for about the same MACs (6.8 M against 6.1 M), with the same ImageNet weights"))


def base_model(name: str) -> str:
    """The library model a variant is built from (``mobilenet_v2_s2`` -> ``mobilenet_v2``); any other name as it is."""
    return VARIANTS.get(name).base if name in VARIANTS else name


def _apply_strides(model: nn.Module, strides: dict[str, int], name: str) -> None:
    modules = dict(model.named_modules())
    for path, stride in strides.items():
        conv = modules.get(path)
        if not isinstance(conv, nn.Conv2d):
            raise ConfigError(f"model variant {name!r}: {path!r} is not a convolution of its base model")
        conv.stride = (stride, stride)


def create_model(
    name: str | Path, num_classes: int, pretrained: bool = False, **kwargs: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """Build a classifier by registered, timm or torchvision name or YAML file; returns ``(model, arch)``.

    A name registered with ``edgeopt.register_model`` (or by an installed plugin, entry-point group
    ``edgeopt.models``) comes first, then timm's, then torchvision's.

    ``pretrained=True`` never falls back to random weights: it loads offline weights where
    edgeopt ships them, otherwise the library's own (hub) loading, and stops with a clear
    message when that fails.
    """
    if num_classes < 2:
        raise ConfigError(f"num_classes={num_classes}: a classifier needs at least 2 classes")
    name_str = str(name)
    if name_str.endswith((".yaml", ".yml")):
        from edgeopt.models.dsl import build_from_yaml_text, read_model_yaml

        if pretrained:
            raise ConfigError(f"{name_str}: YAML models have no pretrained weights; drop `pretrained`")
        text = read_model_yaml(name_str)
        model = build_from_yaml_text(text, num_classes, source=name_str)
        return model, {"source": "yaml", "name": Path(name_str).stem, "yaml": text, "num_classes": num_classes}
    registered = registered_model(name_str)
    if registered is not None:
        return _create_registered(registered, num_classes, pretrained, **kwargs)
    return _create_library_model(name_str, num_classes, pretrained, **kwargs)


def _create_registered(registered: RegisteredModel, num_classes: int, pretrained: bool,
                       **kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
    from edgeopt.models.records import check_constructor_args

    if pretrained:
        raise ConfigError(f"{registered.name}: a registered model builds its own weights in its factory "
                          f"({registered.origin}); drop `pretrained`")
    check_constructor_args("registered", kwargs, where=registered.name)
    model = registered.factory(num_classes)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{registered.name}: its factory {registered.origin} returned a {type(model).__name__}, "
                          "not a torch.nn.Module")
    return model, {"source": "registered", "name": registered.name, "num_classes": num_classes, "kwargs": {},
                   "factory": registered.origin}


def _create_library_model(name: str, num_classes: int, pretrained: bool, **kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
    import timm
    import torchvision

    from edgeopt.models.records import check_constructor_args

    if name in VARIANTS:
        variant = VARIANTS.get(name)
        model, arch = _create_library_model(variant.base, num_classes, pretrained, **kwargs)
        _apply_strides(model, variant.strides, name)
        return model, {**arch, "name": name}
    arch = {"source": "", "name": name, "num_classes": num_classes, "kwargs": kwargs}
    if name in timm.list_models():
        arch["source"] = "timm"
        check_constructor_args("timm", kwargs, where=name)
        if pretrained and name in PRETRAINED_LOADERS:
            model = timm.create_model(name, pretrained=False, **kwargs)
            PRETRAINED_LOADERS.get(name)(model)
            model.reset_classifier(num_classes)
            arch["pretrained"] = "offline"
            return model, arch
        if pretrained:
            try:
                model = timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
            except Exception as exc:  # hub errors come in many types; the message says which
                raise MissingDependencyError(
                    f"pretrained weights for {name!r} could not be loaded ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:160]}); edgeopt ships offline weights only for "
                    f"{', '.join(PRETRAINED_LOADERS.names())}: connect to the model hub or drop `pretrained`"
                ) from None
            arch["pretrained"] = "hub"
            return model, arch
        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs), arch
    if name in torchvision.models.list_models(module=torchvision.models):
        arch["source"] = "torchvision"
        check_constructor_args("torchvision", kwargs, where=name)
        if pretrained and name in PRETRAINED_LOADERS:
            model = torchvision.models.get_model(name, weights=None, **kwargs)
            PRETRAINED_LOADERS.get(name)(model)
            _replace_torchvision_head(model, num_classes)
            arch["pretrained"] = "offline"
            return model, arch
        if pretrained:
            try:
                weights = torchvision.models.get_model_weights(name).DEFAULT
                model = torchvision.models.get_model(name, weights=weights, **kwargs)
            except Exception as exc:
                raise MissingDependencyError(
                    f"pretrained weights for {name!r} could not be loaded ({type(exc).__name__}); "
                    "connect to the internet or drop `pretrained`"
                ) from None
            _replace_torchvision_head(model, num_classes)
            arch["pretrained"] = "hub"
            return model, arch
        return torchvision.models.get_model(name, num_classes=num_classes, **kwargs), arch
    choices = plugin_names() + VARIANTS.names() + timm.list_models() + torchvision.models.list_models(module=torchvision.models)
    raise ConfigError(unknown_name_message("model", name, choices, "; or pass a models/*.yaml file"))


def _replace_torchvision_head(model: nn.Module, num_classes: int) -> None:
    for attr in ("fc", "classifier", "head"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Linear(head.in_features, num_classes))
            return
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            head[-1] = nn.Linear(head[-1].in_features, num_classes)
            return
    raise ConfigError(f"cannot find the classifier layer of {type(model).__name__} to resize")


def rebuild_model(arch: dict[str, Any], state_dict: dict[str, Any] | None = None, where: str = "checkpoint") -> nn.Module:
    """Rebuild the (untrained) module an ``arch`` record describes, for loading a state dict.

    A pruned model's record carries ``layer_shapes`` (every conv, linear and norm layer's weight
    shape and groups): the base model is built, then those layers take their pruned shapes. A
    decomposed model's ``decomposed`` ranks then turn the named convolutions into Tucker-2 triples.
    The record is checked first (``edgeopt.models.records``): its fields and constructor arguments,
    and, given the ``state_dict`` it is for, every tensor shape, on the meta device before anything
    is allocated.
    """
    from edgeopt.models.records import check_against_weights, check_record

    check_record(arch, where)
    if arch["source"] == "registered" and registered_model(arch["name"]) is None:
        raise ArtifactError(f"{where}: its model {arch['name']!r} was registered by {arch.get('factory', 'a plugin')} and "
                            f"no registration of it is present: install or import the package that registers it "
                            f"(entry-point group edgeopt.models)")
    if state_dict is not None:
        check_against_weights(arch, state_dict, _build_from_record, where)
    return _build_from_record(arch)


def _build_from_record(arch: dict[str, Any]) -> nn.Module:
    if arch.get("source") == "yaml":
        from edgeopt.models.dsl import build_from_yaml_text

        model = build_from_yaml_text(arch["yaml"], arch["num_classes"], source=arch.get("name", "yaml"))
    elif arch.get("source") == "registered":
        model, _ = _create_registered(_require_registered(arch["name"]), arch["num_classes"], False)
    else:
        model, _ = _create_library_model(arch["name"], arch["num_classes"], False, **arch.get("kwargs", {}))
    if arch.get("layer_shapes"):
        apply_layer_shapes(model, arch["layer_shapes"])
    if arch.get("decomposed"):
        from edgeopt.models.tucker import apply_decomposition

        apply_decomposition(model, arch["decomposed"])
    return model


def _require_registered(name: str) -> RegisteredModel:
    registered = registered_model(name)
    if registered is None:
        raise ArtifactError(f"model {name!r} is not registered: install or import the package that registers it")
    return registered


def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """``{module name: [*weight shape, groups]}`` of every Conv2d, Linear and BatchNorm2d."""
    shapes = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and getattr(module, "weight", None) is not None:
            shapes[name] = [*module.weight.shape, getattr(module, "groups", 1)]
    return shapes


def apply_layer_shapes(model: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Give the named layers the recorded shapes (uninitialised: a state dict fills them)."""
    import torch

    modules = dict(model.named_modules())
    for name, record in shapes.items():
        module = modules.get(name)
        if module is None:
            raise ConfigError(f"pruned layer {name!r} is not in {type(model).__name__}: the checkpoint's record does not fit")
        *shape, groups = record
        if isinstance(module, nn.Conv2d):
            module.out_channels, module.groups, module.in_channels = shape[0], groups, shape[1] * groups
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = shape
        elif isinstance(module, nn.BatchNorm2d):
            module.num_features = shape[0]
            for buffer in ("running_mean", "running_var"):
                if getattr(module, buffer, None) is not None:
                    setattr(module, buffer, torch.empty(shape[0]))
        module.weight = nn.Parameter(torch.empty(shape))
        if getattr(module, "bias", None) is not None:
            module.bias = nn.Parameter(torch.empty(shape[0]))


def pretrained_config(name: str) -> tuple[int, tuple[float, float, float], tuple[float, float, float]]:
    """(input size, mean, std) a model was designed and pretrained with, read from its library's config.

    timm models: their default pretrained config (``resnet18d`` 224 px ImageNet mean/std,
    ``tf_efficientnet_lite0`` 224 px mean/std 0.5, ``tf_efficientnet_b0`` ImageNet mean/std);
    YAML models: their ``INPUT_SIZE``; torchvision's classifiers: the crop size, mean and std of
    their default weights' own transforms (``mobilenet_v2``: 224 px, ImageNet mean/std); registered
    models: their registration's ``preprocess``.
    """
    from edgeopt.data.presets import IMAGENET_MEAN, IMAGENET_STD

    name = base_model(str(name))
    if name.endswith((".yaml", ".yml")):
        from edgeopt.models.dsl import read_model_yaml, yaml_input_size

        return yaml_input_size(read_model_yaml(name)) or 224, IMAGENET_MEAN, IMAGENET_STD
    registered = registered_model(name)
    if registered is not None:
        return registered.input_size, registered.mean, registered.std
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is not None:
        return int(cfg.input_size[-1]), tuple(cfg.mean), tuple(cfg.std)  # type: ignore[return-value]
    tv = _torchvision_transforms(name)
    if tv is not None:
        return int(tv.crop_size[0]), tuple(tv.mean), tuple(tv.std)  # type: ignore[return-value]
    return 224, IMAGENET_MEAN, IMAGENET_STD


def _torchvision_transforms(name: str) -> Any:
    """The eval transforms of a torchvision classifier's default weights (no download), or None."""
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        return None
    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        return None
    return weights.transforms()


def default_input_size(name: str) -> int:
    """The input size a model is designed for (see ``pretrained_config``)."""
    return pretrained_config(name)[0]


def preset_for_model(name: str, size: int, resize: str = "squash") -> Preprocess:
    """Preprocessing at ``size`` with the mean/std the model's pretrained weights expect."""
    _, mean, std = pretrained_config(name)
    return Preprocess(size=size, mean=mean, std=std, resize=resize)
