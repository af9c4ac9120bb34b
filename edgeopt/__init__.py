"""edgeopt: from a trained compact classifier to a measured edge deployment."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "register_model"]


def __getattr__(name: str) -> Any:
    """``edgeopt.register_model`` (``edgeopt.models.plugins``), imported when first used, so that
    ``import edgeopt`` stays free of torch."""
    if name == "register_model":
        from edgeopt.models.plugins import register_model

        return register_model
    raise AttributeError(f"module 'edgeopt' has no attribute {name!r}")
