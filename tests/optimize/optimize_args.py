"""What the optimize tests share (imported by them; not a test module): the smallest settings that still run every step."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "models" / "tiny_cnn.yaml")


def tiny_args(data: Path, out: Path, trials: int = 1, **flags: str) -> list[str]:
    """``optimize`` flags for a run of seconds: a tiny YAML teacher and student, one trial, the tiny
    model as the bench baseline too; ``flags`` (``final_epochs="3"``) replace or add flags."""
    settings = {"data": str(data), "out": str(out), "teacher-model": TINY, "teacher-size": "40", "teacher-epochs": "2",
                "views": "2", "assistant-epochs": "1", "backbones": TINY, "sizes": "32", "trials": str(trials), "epochs": "1", "final-epochs": "2",
                "max-f1-drop": "0.3", "target": "cpu", "batch-size": "16", "device": "cpu", "baseline": TINY}
    settings.update({k.replace("_", "-"): v for k, v in flags.items()})
    args = [a for k, v in settings.items() for a in (f"--{k}", v)]
    return [*args, "--scratch", "--no-adaround"]
