"""One error hierarchy: an ``EdgeoptError`` is a user error (one line, exit code 1).

Anything else that escapes a stage is a bug and keeps its traceback. What a user should know but
need not stop for is an ``EdgeoptWarning``: a Python warning to library callers, one yellow
``warning:`` line from the CLI.
"""

from __future__ import annotations


class EdgeoptError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""


class DataError(EdgeoptError):
    """A dataset, image or annotation file is missing, empty or malformed."""


class ConfigError(EdgeoptError):
    """An option, config key or model definition is invalid."""


class ArtifactError(EdgeoptError):
    """An artifact or its manifest is missing, of the wrong kind, or does not match its hash."""


class MissingDependencyError(EdgeoptError):
    """An optional backend (TensorRT, a GPU, an extra) is needed and absent."""


class VerificationError(EdgeoptError):
    """A stage's self-check failed (parity, Q/DQ rules, empty engine, zero calibration batches)."""


class EdgeoptWarning(UserWarning):
    """Something the user should know (few calibration images, skipped files); the stage goes on."""
