"""The house rules that keep the code navigable: no import cycles, short positional calls from the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

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
    for node in ast.walk(ast.parse((PACKAGE / "cli.py").read_text())):
        if isinstance(node, ast.Call) and len(node.args) > 3:
            long_calls.append(f"line {node.lineno}: {ast.unparse(node.func)} with {len(node.args)} positional arguments")
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
