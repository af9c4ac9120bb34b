"""The house rules that keep the code navigable: no import cycles, short positional calls from the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgeopt"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str) -> str | None:
    """``edgeopt.a.b`` -> the module it names (a package's ``__init__`` or a file), or None."""
    path = ROOT.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
        return name
    return None


def import_graph() -> dict[str, set[str]]:
    """edgeopt module -> the edgeopt modules it imports anywhere (deferred imports inside functions too)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        here = _module_name(path)
        edges = graph.setdefault(here, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if _resolve(f"{node.module}.{a.name}") else node.module for a in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("edgeopt.") and _resolve(target) and target != here:
                    edges.add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles_not_even_through_deferred_imports() -> None:
    assert find_cycle(import_graph()) is None


def test_the_cycle_check_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_cli_calls_use_keywords_past_a_handful_of_arguments() -> None:
    """A reordered parameter must not silently mis-wire a stage call from the CLI."""
    long_calls = []
    for path in sorted((PACKAGE / "cli").glob("*_commands.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and len(node.args) > 3:
                long_calls.append(f"{path.name}:{node.lineno}: {ast.unparse(node.func)} with {len(node.args)} positional arguments")
    assert long_calls == []


def test_every_warning_is_an_edgeopt_warning() -> None:
    """One way to warn: the CLI renders ``EdgeoptWarning``s as ``warning:`` lines, so every warning the
    package raises must be one (a bare ``warnings.warn(msg)`` would come out as Python's raw format)."""
    bare = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "warnings.warn":
                category = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "category"), None)
                if category is None or ast.unparse(category) != "EdgeoptWarning":
                    bare.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bare == []


# the stages that turn one artifact into another; running two of them in sequence is convert's job
CONVERSION_STAGES = ("edgeopt.export", "edgeopt.quant.calibrate", "edgeopt.trt.build")


def _stage(module: str) -> str | None:
    return next((s for s in CONVERSION_STAGES if module == s or module.startswith(s + ".")), None)


def stage_chains(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Modules that import (or are) two conversion stages or more: hand-built chains. The CLI's
    modules are judged command by command (``cli_command_imports``), since each command runs one stage."""
    chains = {}
    for module, imports in graph.items():
        if module == "edgeopt.convert" or module.startswith("edgeopt.cli."):
            continue
        stages = {_stage(m) for m in (*imports, module)} - {None}
        if len(stages) > 1:
            chains[module] = sorted(stages)
    return chains


def cli_command_imports() -> dict[str, set[str]]:
    """``module:function`` of every CLI command -> the edgeopt modules it imports."""
    found = {}
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        for fn in ast.parse(path.read_text()).body:
            if isinstance(fn, ast.FunctionDef):
                found[f"{path.stem}:{fn.name}"] = {n.module for n in ast.walk(fn)
                                                    if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("edgeopt.")}
    return found


def test_convert_is_the_only_place_that_chains_stages() -> None:
    assert stage_chains(import_graph()) == {}
    commands = {name: sorted({_stage(m) for m in imports} - {None}) for name, imports in cli_command_imports().items()}
    assert {name: stages for name, stages in commands.items() if len(stages) > 1} == {}
    assert commands["deploy_commands:build_engine_cmd"] == []  # it goes through convert


def test_the_chain_check_finds_a_hand_built_chain() -> None:
    graph = {"edgeopt.demo": {"edgeopt.export.onnx", "edgeopt.quant.calibrate"}, "edgeopt.trt.build": {"edgeopt.export.onnx"},
             "edgeopt.convert": {"edgeopt.export.onnx", "edgeopt.trt.build"}, "edgeopt.search": {"edgeopt.export.onnx"}}
    assert stage_chains(graph) == {"edgeopt.demo": ["edgeopt.export", "edgeopt.quant.calibrate"],
                                   "edgeopt.trt.build": ["edgeopt.export", "edgeopt.trt.build"]}


# the pipeline's stage packages; tests/ mirrors them
STAGE_PACKAGES = ("data", "models", "train", "compress", "export", "quant", "trt", "runtime", "bench", "serve", "search", "optimize", "cli")


def test_the_package_reads_as_the_pipeline() -> None:
    """Stage packages, a few shared modules at the top, and tests/ mirroring the packages."""
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "__main__", "artifacts", "convert", "device", "errors", "formats", "metrics",
                   "plots", "registries", "settings"]
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()) == sorted(STAGE_PACKAGES)
    tests = ROOT / "tests"
    for package in STAGE_PACKAGES:
        modules = [p.stem for p in (PACKAGE / package).glob("*.py") if p.stem != "__init__"]
        mirrored = [p.name for p in (tests / package).glob(f"test_{package}_*.py")] if (tests / package).is_dir() else []
        assert mirrored, f"tests/{package}/ holds no test_{package}_*.py for edgeopt/{package}/ ({', '.join(sorted(modules))})"


def test_no_module_is_over_400_lines() -> None:
    """STYLE's mark: a module past ~400 lines is probably two modules (issue 33 split search.py, train/loop.py,
    quant/ptq.py and trt/build.py along their seams)."""
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def long_functions(limit: int = 80) -> dict[str, int]:
    """``path::function`` -> lines, of every function or method in edgeopt/ longer than ``limit`` lines."""
    long = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (n := node.end_lineno - node.lineno + 1) > limit:
                long[f"{path.relative_to(ROOT)}::{node.name}"] = n
    return long


def test_no_function_is_over_80_lines() -> None:
    """A function does one thing (issue 33 split train_classifier, convert_taco, finetune_qat, build_engine, bench_artifacts
    and calibrate_onnx along their seams: setup, the epoch, teardown)."""
    long = long_functions()
    assert long == {}, "functions over 80 lines (split them along their seams): " + ", ".join(
        f"{name} ({n} lines)" for name, n in sorted(long.items()))


def test_the_function_length_check_finds_a_long_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "edgeopt"
    package.mkdir()
    (package / "long.py").write_text("def long():\n" + "    x = 1\n" * 80 + "\n\ndef short():\n    return 1\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE", package)
    assert long_functions() == {"edgeopt/long.py::long": 81}


def test_only_the_plots_module_draws() -> None:
    """One module renders every figure (matplotlib, its backend, the atomic PNG write)."""
    drawing = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "matplotlib" in p.read_text())
    assert drawing == ["plots.py"]
