"""The record of each ``optimize`` step: what it was given, what it made, and whether it finished.

A step's inputs are the settings it reads (its row of ``STEP_SETTINGS``: it is handed only those) plus
the content digests of the data and artifacts it starts from. ``OUT/steps/NAME.started.json`` is
written before a step runs and ``OUT/steps/NAME.json`` when it has finished:

- finished with the same inputs, its outputs still there: skipped;
- started with the same inputs and interrupted: resumed where it stopped (training from ``last.pt``,
  the bank's chunks, the search's study);
- anything else (new inputs, or a record of other inputs): its folders are cleared and it starts
  from scratch, so no step ever resumes or reuses the work of other inputs.

Once a step runs, every later step runs too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edgeopt.artifacts import atomic_write_json

# the settings each step reads; a step is handed a view of the config that holds these only
STEP_SETTINGS: dict[str, tuple[str, ...]] = {
    "split": ("test_fraction",),
    "teacher": ("teacher", "teacher_model", "teacher_size", "teacher_epochs", "teacher_label_smoothing", "teacher_mixup",
                "pretrained", "batch_size", "seed"),
    "bank": ("views", "batch_size", "seed"),
    "search": ("backbones", "sizes", "max_prune", "trials", "epochs", "final_epochs", "bn_recalibrate", "assistant_size",
               "assistant_for", "assistant_init", "assistant_epochs", "max_macs", "pretrained",
               "max_f1_drop", "int8_holdout", "adaround", "qat_epochs", "baseline", "baseline_f1", "batch_size", "seed"),
    "deploy": ("max_f1_drop", "target"),
    "bench": ("baseline", "baseline_f1"),
}
# settings that are no step's input: where things go and run (``data``/``test`` enter as content digests)
NOT_INPUTS = ("data", "out", "test", "device")


class SettingsView:
    """The config as one step sees it: reading a setting outside its row is a bug (the row would no
    longer say what the step depends on)."""

    def __init__(self, config: Any, step: str, also: Iterable[str] = ("device",)) -> None:
        self._config, self._step, self._names = config, step, set(STEP_SETTINGS[step]) | set(also)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._names:
            raise AttributeError(f"step {self._step!r} reads `{name}`, which is not in its STEP_SETTINGS row")
        return getattr(self._config, name)


class Steps:
    """Runs each step once per set of inputs; see the module docstring."""

    def __init__(self, out: Path, config: Any, log: Callable[[str], None]) -> None:
        self.dir, self.config, self.log = out / "steps", config, log
        self.later_stale = False  # a step ran: every later step runs as well

    def inputs(self, name: str, **digests: Any) -> dict[str, Any]:
        from edgeopt.optimize.config import as_json

        settings = {k: as_json(getattr(self.config, k)) for k in STEP_SETTINGS[name]}
        return json.loads(json.dumps({"settings": settings, **digests}))

    def run(self, name: str, inputs: dict[str, Any], clear: Iterable[Path],
            body: Callable[[SettingsView, bool], tuple[dict[str, Any], list[str]]]) -> dict[str, Any]:
        """``body(settings, resume) -> (outputs, files)``; skipped, resumed or run from scratch as the
        records say. ``clear``: the folders and files the step writes, removed before a fresh start."""
        done, started = self.dir / f"{name}.json", self.dir / f"{name}.started.json"
        record = _read(done)
        if (not self.later_stale and record and record.get("inputs") == inputs
                and all(Path(p).exists() for p in record.get("files", []))):
            self.log(f"{name}: done in an earlier run, inputs unchanged: skipped")
            return record["outputs"]
        self.later_stale = True
        resume = (_read(started) or {}).get("inputs") == inputs
        if resume:
            self.log(f"{name}: resuming the interrupted run with the same inputs")
        else:
            if record is not None or started.exists():
                self.log(f"{name}: inputs changed since the last run: starting it from scratch")
            for path in clear:
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
            done.unlink(missing_ok=True)
            atomic_write_json(started, {"inputs": inputs})
        outputs, files = body(SettingsView(self.config, name), resume)
        atomic_write_json(done, {"inputs": inputs, "outputs": outputs, "files": files})
        started.unlink(missing_ok=True)
        return outputs


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
