"""Architecture records are checked before they are believed.

A checkpoint's ``arch`` record rebuilds its model, and a checkpoint is a file people share: a
forged record (with its manifest's hash updated) must not size a tensor, reach a constructor
argument edgeopt did not write, or open a file. ``check_record`` checks the record's own shape
(sources, names, JSON types, the constructor arguments each library may receive); ``check_against_weights``
builds the record's model on PyTorch's ``meta`` device (no memory behind any tensor) and compares
every parameter and buffer with the checkpoint's state dict before anything is built for real.
"""

from __future__ import annotations

import math
from typing import Any

from edgeopt.errors import ArtifactError, ConfigError

SOURCES = ("yaml", "timm", "torchvision", "registered")  # registered: ``edgeopt.register_model``, rebuilt by name
# The constructor arguments a record may pass to its library, with their JSON types. Everything else
# (timm's checkpoint_path or pretrained_cfg_overlay, torchvision's weights, ...) is refused by name.
CONSTRUCTOR_ARGS: dict[str, dict[str, type]] = {
    "timm": {"drop_rate": float, "drop_path_rate": float},
    "torchvision": {"dropout": float},
    "registered": {},  # a registered factory is called with the class count only
}


def check_constructor_args(source: str, kwargs: Any, where: str = "model") -> dict[str, Any]:
    """The ``kwargs`` for ``source``'s constructor, if every key is declared and of its JSON type."""
    if not isinstance(kwargs, dict):
        raise ConfigError(f"{where}: constructor arguments must be a mapping, not {type(kwargs).__name__}")
    allowed = CONSTRUCTOR_ARGS.get(source, {})
    for key, value in kwargs.items():
        kind = allowed.get(key)
        if kind is None:
            valid = ", ".join(sorted(allowed)) or "none"
            raise ConfigError(f"{where}: constructor argument {key!r} is not one edgeopt passes to {source} models "
                              f"(allowed: {valid})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (kind is int and not isinstance(value, int)) or not 0 <= value < 1:
            raise ConfigError(f"{where}: constructor argument {key}={value!r} must be a {kind.__name__} in [0, 1)")
    return dict(kwargs)


def _positive_ints(value: Any, length: tuple[int, int]) -> bool:
    return (isinstance(value, list) and length[0] <= len(value) <= length[1]
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))


def check_record(arch: Any, where: str) -> None:
    """Refuse a record whose fields are not what edgeopt writes (one line naming the field)."""
    def bad(field: str, what: str) -> ArtifactError:
        return ArtifactError(f"{where}: its architecture record's {field} {what}; the file was altered or is not "
                             "from edgeopt: retrain or re-export it")

    if not isinstance(arch, dict):
        raise ArtifactError(f"{where}: its architecture record is a {type(arch).__name__}, not a mapping; the file was "
                            "altered or is not from edgeopt: retrain or re-export it")
    if arch.get("source") not in SOURCES:
        raise bad("source", f"{arch.get('source')!r} is not one of {', '.join(SOURCES)}")
    if not isinstance(arch.get("name"), str):
        raise bad("name", "is not a string")
    n = arch.get("num_classes")
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise bad("num_classes", f"{n!r} is not a class count of at least 2")
    if arch["source"] == "yaml" and not isinstance(arch.get("yaml"), str):
        raise bad("yaml", "is not the model's YAML text")
    try:
        check_constructor_args(arch["source"], arch.get("kwargs", {}), where=f"{where}: architecture record")
    except ConfigError as exc:
        raise ArtifactError(f"{exc}; the file was altered or is not from edgeopt") from None
    shapes = arch.get("layer_shapes") or {}
    if not isinstance(shapes, dict) or not all(isinstance(k, str) and _positive_ints(v, (2, 5)) for k, v in shapes.items()):
        raise bad("layer_shapes", "are not {layer: [positive ints..., groups]}")
    ranks = arch.get("decomposed") or {}
    if not isinstance(ranks, dict) or not all(isinstance(k, str) and _positive_ints(v, (2, 2)) for k, v in ranks.items()):
        raise bad("decomposed ranks", "are not {layer: [rank in, rank out]}")


def check_layer_shapes(shapes: dict[str, list[int]], state_dict: dict[str, Any], where: str) -> None:
    """Every recorded (pruned) layer shape is the shape of that layer's weight in the state dict."""
    for name, record in shapes.items():
        *shape, groups = record
        weight = state_dict.get(f"{name}.weight")
        held = list(weight.shape) if weight is not None else None
        if held != shape:
            raise ArtifactError(f"{where}: pruned layer {name!r} is recorded as {shape} but the weights hold "
                                f"{held if held is not None else 'no such layer'}; the file was altered or is not from edgeopt")
        if len(shape) == 4 and (groups > shape[0] or shape[0] % groups):
            raise ArtifactError(f"{where}: pruned layer {name!r} has {groups} groups for {shape[0]} output channels; "
                                "the file was altered or is not from edgeopt")


def check_against_weights(arch: dict[str, Any], state_dict: Any, build: Any, where: str) -> None:
    """Build the record's model on the meta device with ``build(arch)`` and compare it with ``state_dict``.

    Nothing is allocated (meta tensors have shapes only), so a record that asks for a huge layer,
    a huge head or a YAML model of another size fails here, naming the first tensor that differs.
    """
    import torch

    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ArtifactError(f"{where}: its state dict is not a mapping of tensors; pass a best.pt written by edgeopt train")
    check_layer_shapes(arch.get("layer_shapes") or {}, state_dict, where)
    with torch.device("meta"):
        expected = {k: list(v.shape) for k, v in build(arch).state_dict().items()}
    held = {k: list(v.shape) for k, v in state_dict.items()}
    for key in sorted(expected.keys() | held.keys()):
        if expected.get(key) != held.get(key):
            want = expected.get(key, "no such tensor")
            got = held.get(key, "no such tensor")
            raise ArtifactError(f"{where}: its architecture record does not match its weights at {key!r} "
                                f"(record: {want}, weights: {got}); the file was altered or is not from edgeopt")
