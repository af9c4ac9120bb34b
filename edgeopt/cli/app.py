"""The ``edgeopt`` command line: parse and validate, call one stage function, render with rich.

No stage logic lives here; heavy libraries are imported inside the commands so ``--help`` is
instant and works without torch, onnxruntime or TensorRT being importable. The commands live in
``*_commands.py`` by pipeline area; importing them registers them on ``app``.
"""

from __future__ import annotations

# importing a commands module registers its commands, in this order in --help: the pipeline's
from edgeopt.cli import data_commands  # noqa: F401  isort: skip
from edgeopt.cli import train_commands  # noqa: F401  isort: skip
from edgeopt.cli import predict_commands  # noqa: F401  isort: skip
from edgeopt.cli import deploy_commands  # noqa: F401  isort: skip
from edgeopt.cli import bench_commands  # noqa: F401  isort: skip
from edgeopt.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
