"""Name -> object registries (models, DSL modules, offline weights): duplicates and unknown names are errors."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from edgeopt.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object. Duplicate names and unknown names are errors (with close matches)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._items[name] = item
        return item

    def __call__(self, name: str) -> Callable[[T], T]:
        """Decorator form: ``@registry("name")``."""
        return functools.partial(self.register, name)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(unknown_name_message(self.what, name, self._items))
        return self._items[name]


def unknown_name_message(what: str, name: str, choices: Any, extra: str = "") -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown {what} {name!r}{hint}{extra}"
