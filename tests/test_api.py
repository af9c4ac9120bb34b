"""The Python API: ``edgeopt`` exports every stage function and its config, named alike, without torch at import."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import edgeopt


def test_every_exported_name_resolves_to_what_its_stage_defines() -> None:
    for name in edgeopt.__all__[1:]:
        thing = getattr(edgeopt, name)
        assert thing.__name__ == name, name


def test_stage_functions_are_verb_noun_and_configs_end_in_config() -> None:
    functions = [n for n in edgeopt.__all__[1:] if inspect.isfunction(getattr(edgeopt, n))]
    classes = [n for n in edgeopt.__all__[1:] if inspect.isclass(getattr(edgeopt, n))]
    assert all(re.fullmatch(r"[a-z]+(_[a-z0-9]+)+", n) for n in functions), functions
    assert classes and all(n.endswith("Config") for n in classes), classes
    assert not [n for n in functions if n.startswith("run_") and n != "run_demo"], "a stage says what it does, not run_"


def test_import_edgeopt_stays_free_of_torch() -> None:
    code = "import sys, edgeopt; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_the_lazy_packages_names_resolve_even_after_their_modules_are_imported() -> None:
    """A submodule's name set on its package would hide a lazily exported name of the same name."""
    import importlib

    for package in ("edgeopt.search", "edgeopt.optimize"):
        module = importlib.import_module(package)
        for name in module.__all__:
            getattr(module, name)
        for name in module.__all__:  # the modules behind them are imported now
            assert not inspect.ismodule(getattr(module, name)), f"{package}.{name} is a module"
