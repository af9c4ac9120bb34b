"""What every command shares: the Typer app and its error/warning handling, consoles, option types."""

from __future__ import annotations

import enum
import sys
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from edgeopt import __version__
from edgeopt.errors import EdgeoptError, EdgeoptWarning
from edgeopt.runtime import backend_names
from edgeopt.cli.render import (
    RENAMED,
    as_flags,
    set_commands,
    console,
)


class _Group(TyperGroup):
    """Turns an ``EdgeoptError`` into one red line and exit code 1 (no traceback), and every
    ``EdgeoptWarning`` of every command into one yellow line, as it happens."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        with warnings.catch_warnings():
            warnings.simplefilter("always", EdgeoptWarning)
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except EdgeoptError as exc:
                err_console.print(f"[red]error:[/] {escape(as_flags(str(exc), ctx.invoked_subcommand))}", soft_wrap=True)
                raise typer.Exit(code=1) from None


app = typer.Typer(
    cls=_Group,
    name="edgeopt",
    help="Train a compact classifier, export it, quantize it, build TensorRT engines and bench it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: TACO -> crops, statistics, pool/judge/test splits, the synthetic demo set.", no_args_is_help=True)
app.add_typer(data_app, name="data")
set_commands(lambda: typer.main.get_group(app))  # what as_flags reads the flags from

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

ExistingDir = Annotated[Path, typer.Argument(exists=True, file_okay=False, help="A folder of <class>/<image> crops.")]
# options several commands declare alike
# the runner registry's backends (``edgeopt.runtime.RUNNERS``): one registered there is a choice here
Backend = Annotated[str, typer.Option(help=f"{', '.join(backend_names())} (auto: the first its format lists).")]
SoftLabels = Annotated[Optional[Path], typer.Option("--soft-labels", exists=True, dir_okay=False,
                                                    help="Distil from a soft-label bank (edgeopt soft-labels) instead of running teachers.")]
# what an ONNX edgeopt did not export (no manifest, no metadata) cannot say of itself
ForeignImgSize = Annotated[Optional[int], typer.Option("--img-size", help="Input size of an ONNX edgeopt did not export.")]
ForeignMean = Annotated[Optional[str], typer.Option("--mean", help="R,G,B mean of an ONNX edgeopt did not export.")]
ForeignStd = Annotated[Optional[str], typer.Option("--std", help="R,G,B std of an ONNX edgeopt did not export.")]
ForeignClasses = Annotated[Optional[Path], typer.Option("--classes", exists=True, dir_okay=False,
                                                        help="Class names, one a line, for an ONNX edgeopt did not export.")]


def _version(value: bool) -> None:
    if value:
        console.print(f"edgeopt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """edgeopt: from a trained compact classifier to a measured edge deployment."""


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """The CLI's one way to warn: ``warning: <message>``. Other libraries' warnings are for their
    developers and stay quiet, unless Python was asked for them (``-W``, ``PYTHONWARNINGS``)."""
    if issubclass(category, EdgeoptWarning):
        err_console.print(f"[yellow]warning:[/] {escape(as_flags(str(message)))}")
    elif sys.warnoptions:
        err_console.print(f"[yellow]warning:[/] {escape(str(message))} ({category.__name__}, {Path(filename).name}:{lineno})")


# -- settings declared once: options derived from the config dataclasses, and --config FILE.yaml ----
def option(cls: type, name: str, *flags: str, **kwargs: Any) -> Any:
    """The option for ``cls``'s setting ``name``, its default and help taken from the field (where the
    setting is declared), so a command cannot drift from its config: ``epochs: int = option(TrainConfig,
    "epochs")``. ``flags`` default to ``--<key>``; ``kwargs`` go to ``typer.Option`` (``exists=True``...)."""
    from edgeopt.settings import MISSING, default_of, field_of, key_of, rule_of

    field = field_of(cls, name)
    default = kwargs.pop("default") if "default" in kwargs else default_of(field)
    if default is MISSING:
        default = ...
    elif isinstance(default, tuple):  # a list setting is comma-separated text on the command line
        default = ",".join(str(v) for v in default)
    kwargs.setdefault("help", _flags_in(rule_of(field).help) or None)
    kind = typing.get_type_hints(cls)[name]
    kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)  # X | None: X
    if isinstance(kind, type) and issubclass(kind, enum.Enum):  # its help lists the choices;
        kwargs.setdefault("metavar", "<name>")  # <none|mixup|cutmix> would narrow every help column
    return typer.Option(default, *(flags or ("--" + key_of(field).replace("_", "-"),)), **kwargs)


def argument(cls: type, name: str, **kwargs: Any) -> Any:
    """A command's positional argument for ``cls``'s setting ``name`` (required; help from the field)."""
    from edgeopt.settings import field_of, rule_of

    kwargs.setdefault("help", _flags_in(rule_of(field_of(cls, name)).help) or None)
    return typer.Argument(..., **kwargs)


def _flags_in(text: str) -> str:
    """A setting's help as the command line says it: `name` -> --name (help is the library's, it names settings)."""
    import re

    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: "--" + m.group(1).replace("_", "-"), text)


# each command's config classes, by dotted path (imported only when --config is given): a YAML key that
# is one of their settings is checked as the setting (its message names the key), the others as the flag
SETTINGS_OF = {
    "train": ("edgeopt.train.config:TrainConfig", "edgeopt.train.distill:KDConfig"),
    "soft-labels": ("edgeopt.train.soft_labels:SoftLabelConfig",),
    "search": ("edgeopt.search.config:SearchConfig", "edgeopt.search.config:SearchSpace", "edgeopt.quant.int8_choice:Int8ChoiceConfig"),
    "optimize": ("edgeopt.optimize.config:OptimizeConfig",),
    "bench": ("edgeopt.bench.harness:BenchConfig",),
    "predict": ("edgeopt.runtime.classify:PredictConfig",),
    "prune": ("edgeopt.compress.config:PruneConfig", "edgeopt.compress.config:FinetuneConfig", "edgeopt.train.config:KDConfig"),
    "decompose": ("edgeopt.compress.config:DecomposeConfig", "edgeopt.compress.config:FinetuneConfig",
                  "edgeopt.train.config:KDConfig"),
    "calibrate": ("edgeopt.quant.ptq:PtqConfig", "edgeopt.quant.fallback:FallbackConfig"),
    "qat": ("edgeopt.quant.qat_config:QatConfig", "edgeopt.train.config:KDConfig"),
    # BuildConfig first: its batch_size (the calibration batch) is the flag's
    "build-engine": ("edgeopt.trt.plan:BuildConfig", "edgeopt.trt.verify:VerifyConfig"),
    "triton": ("edgeopt.serve.triton:TritonConfig",),
}


def read_config_file(ctx: typer.Context, value: Optional[Path]) -> Optional[Path]:
    """``--config FILE.yaml``: the file's keys (the command's flags, ``-`` or ``_``) become the command's
    defaults, so a flag given too overrides the file. An unknown key, or a value its setting refuses, is
    one line naming the file and the key (a value only a flag's type refuses is said as that flag)."""
    if value is None or ctx.resilient_parsing:
        return value
    import dataclasses
    import importlib

    from edgeopt.errors import ConfigError
    from edgeopt.settings import check_field, key_of, read_yaml_settings

    params = {p.name: p for p in ctx.command.params if p.name and p.expose_value}
    # a key is a parameter's name or one of its flags (--json for json_path, --global for global_pruning)
    names = {**{flag.lstrip("-").replace("-", "_"): p.name for p in params.values() for flag in getattr(p, "opts", ())
                if flag.startswith("--")}, **{name: name for name in params}}
    settings = read_yaml_settings(value, names)
    checks: dict[str, tuple[type, str]] = {}
    for dotted in SETTINGS_OF.get(ctx.info_name or "", ()):  # the first class that declares a key checks it
        module, _, name = dotted.partition(":")
        cls = getattr(importlib.import_module(module), name)
        for f in dataclasses.fields(cls):
            checks.setdefault(key_of(f), (cls, f.name))
    defaults = dict(ctx.default_map or {})
    for written, raw in settings.items():
        key = names[written]
        param = params[key]
        several = getattr(param, "multiple", False) or param.nargs == -1
        if isinstance(raw, (list, tuple)) and not several and param.nargs == 1:
            raw = ",".join(str(v) for v in raw)  # a list setting's text, as on the command line
        elif several and not isinstance(raw, (list, tuple)):
            raw = [raw]  # one value of a repeatable option or argument
        if key in checks:
            try:
                check_field(*checks[key], raw)
            except ConfigError as exc:  # said as the file's key, not as a flag
                raise ConfigError(f"{value}: key {written.replace('_', '-')!r}: " + str(exc).replace(f"`{key}` ", "", 1)) from None
        defaults[key] = raw  # the option's own type checks it as it would the flag's text
    ctx.default_map = defaults
    return value


ConfigFile = Annotated[Optional[Path], typer.Option(
    "--config", exists=True, dir_okay=False, is_eager=True, expose_value=False, callback=read_config_file,
    help="A YAML file of this command's settings (keys as the flags); flags given too override it.")]


# -- run folders that never overwrite -------------------------------------------------------------
def given(ctx: click.Context, name: str) -> bool:
    """Whether the user set ``name`` (flag, environment or ``--config`` file), not its default. Typer runs
    its own copy of click, so the source is compared by its name, not with ``click.core.ParameterSource``."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def next_free(path: Path) -> Path:
    """``path`` when nothing is there, else the first of ``runs/train2``, ``runs/train3``... (a file keeps
    its suffix: ``predictions2.csv``) that is free, as Ultralytics numbers its runs."""
    if not path.exists():
        return path
    n = 2
    while True:
        candidate = path.with_name(f"{path.stem}{n}{path.suffix}" if path.suffix else f"{path.name}{n}")
        if not candidate.exists():
            return candidate
        n += 1


def run_out(ctx: click.Context, out: Path, keep: bool = False, name: str = "out") -> Path:
    """Where a command writes: the ``--out`` the user gave, as given; the default, numbered past the
    runs already there unless ``keep`` (``--exist-ok``, ``--resume``)."""
    if keep or given(ctx, name):
        return out
    fresh = next_free(out)
    if fresh != out:
        console.print(f"{out} holds an earlier run: writing to {fresh} (--exist-ok writes into {out})")
    return fresh


ExistOk = Annotated[bool, typer.Option("--exist-ok", help="Write into the default output folder even if an earlier run is there (else the next free number: runs/train2).")]


def beside(source: Path, suffix: str) -> Path:
    """A stage's default output, beside its source: ``runs/a/best.pt`` -> ``runs/a/best<suffix>``; a
    precision marker of the source goes (``model.int8.onnx`` -> ``model<suffix>``)."""
    name = source.name[: -len(source.suffix)] if source.suffix else source.name
    for marker in (".fp32", ".fp16", ".int8", ".cpu-int8", ".cpu-vnni-int8", ".qat"):
        if name.endswith(marker) and len(name) > len(marker):
            name = name[: -len(marker)]
            break
    return source.with_name(name + suffix)


# -- one flag per concept: old spellings stay one release as hidden aliases that warn ---------------
def renamed(old: str, new: str) -> typer.models.OptionInfo:
    """A hidden option for ``old``, the earlier spelling of ``new``; using it warns once. Library
    messages that name its setting say ``new``."""
    RENAMED[old] = new

    def warn(value: object) -> object:
        if value is not None:
            warnings.warn(f"{old} is now {new}; the old spelling goes in the next release", EdgeoptWarning, stacklevel=2)
        return value

    return typer.Option(old, hidden=True, callback=warn)


def either(ctx: click.Context, new_name: str, *, value, old_value, old: str, new: str):
    """The value of a renamed option: the old spelling's when only it was given; both given is an error."""
    if old_value is None:
        return value
    if given(ctx, new_name):
        raise EdgeoptError(f"{old} is the old spelling of {new}: give {new} only")
    return old_value
