"""``edgeopt search``: an Optuna study over backbone x input size x pruning x distillation x lr.

Each trial builds a (pretrained) backbone at a sampled input size, prunes it to a sampled
fraction of its MACs with Torch-Pruning, trains it with ``edgeopt train``'s loop (distilled from
``--teacher`` at a sampled temperature and weight), exports it to ONNX and times it with ONNX
Runtime on this machine's CPU. Its artifacts stay in ``OUT/STUDY/trial-NNNN/``.

Objectives: ``pareto`` maximises validation macro-F1 and minimises MACs (a Pareto front);
``score`` minimises the competition's MAC score against a baseline (``score.score_macs``). MACs,
not latency, are the objective because they are the same on every worker of a study that runs on
many machines; latency is recorded for every trial and plotted.

Storage is a SQLite file by default; ``postgresql://...`` lets several machines work on one study
at once (Optuna's RDB storage). Trials send heartbeats: one whose worker was killed is failed once
its heartbeat is stale and retried with the same parameters in its own folder, where training
resumes from ``last.pt``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeopt.artifacts import atomic_dir, atomic_path, atomic_write_json
from edgeopt.train.distill import KDConfig
from edgeopt.errors import ConfigError, EdgeoptError, MissingDependencyError
from edgeopt.quant.int8_path import Int8PathConfig
from edgeopt.bench.score import BASELINE_F1, BASELINE_MODEL

OBJECTIVES = ("pareto", "score")
SETTINGS_ATTR = "edgeopt_search"
DEFAULT_BACKBONES = ("tf_efficientnet_lite0", "mobilenet_v2")


class StorageError(EdgeoptError):
    """The study's storage cannot be opened."""


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What a trial samples. A one-element choice (or an equal range) is fixed."""

    backbones: tuple[str, ...] = DEFAULT_BACKBONES
    sizes: tuple[int, ...] = (48, 64, 80, 96)
    max_prune: float = 0.5  # largest fraction of MACs removed by pruning; 0: no pruning
    lr: tuple[float, float] = (3e-4, 3e-3)
    kd_temperature: tuple[float, float] = (1.0, 8.0)
    kd_alpha: tuple[float, float] = (0.0, 0.9)

    def __post_init__(self) -> None:
        if not self.backbones:
            raise ConfigError("`backbones` is empty: name at least one model, e.g. tf_efficientnet_lite0")
        if not self.sizes or any(not 16 <= s <= 1024 for s in self.sizes):
            raise ConfigError(f"`sizes` {list(self.sizes)}: give input sizes in 16..1024, e.g. 48,64,96")
        if not 0.0 <= self.max_prune < 0.95:
            raise ConfigError(f"`max_prune` {self.max_prune} is out of range: use 0 (no pruning) up to 0.9")
        for flag, (lo, hi), floor, ceil in (("`lr`", self.lr, 1e-6, 1.0), ("`kd_temperature`", self.kd_temperature, 0.1, 100.0),
                                            ("`kd_alpha`", self.kd_alpha, 0.0, 1.0)):
            if not floor <= lo <= hi <= ceil:
                raise ConfigError(f"{flag} {lo}..{hi} is not a range within {floor}..{ceil}: give LOW,HIGH")


# a final run from a soft-label bank: where longer schedules stopped paying for their cost on TrashNet
# (benchmarks/README.md, the soft-label bank sessions)
BANK_FINAL_EPOCHS = 100


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    data: Path
    out: Path = Path("runs/search")
    study: str = "edgeopt"
    storage: str | None = None  # default: sqlite:///OUT/search.db
    trials: int = 20  # finished trials the study should hold (all workers together)
    timeout: float | None = None  # seconds this worker searches before it stops
    space: SearchSpace = SearchSpace()
    objective: str = "pareto"
    # where the soft targets come from (teachers online, or a soft-label bank: then no teacher runs);
    # each trial's temperature and weight are sampled from the space, the config's are not used
    kd: KDConfig = dataclasses.field(default_factory=KDConfig)
    epochs: int = 12
    batch_size: int = 64
    val_split: float = 0.2
    schedule: str = "cosine"
    # >0: train the chosen point again on all of --data for this many epochs; None: BANK_FINAL_EPOCHS
    # from a soft-label bank (an epoch costs the student alone), else 0 (no final run)
    final_epochs: int | None = None
    int8: Int8PathConfig | None = None  # the final run holds out a slice and picks PTQ or QAT by the drop measured on it
    pretrained: bool = True
    baseline: str = BASELINE_MODEL
    baseline_f1: float = BASELINE_F1
    max_macs: int | None = None  # the chosen point: best val F1 within this budget
    latency_runs: int = 50
    heartbeat: int = 60  # seconds; a trial without a heartbeat for 2x this is failed and retried
    seed: int | None = None  # the sampler's; give each worker of a study its own
    device: str = "auto"
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.final_epochs is None:
            object.__setattr__(self, "final_epochs", BANK_FINAL_EPOCHS if self.kd.soft_labels is not None else 0)
        if self.int8 is not None and not self.final_epochs:
            raise ConfigError("`int8_max_drop` judges the final run's INT8: give `final_epochs` too")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"`objective` {self.objective!r} is unknown: use pareto or score")
        if self.trials < 1 or self.epochs < 1 or self.final_epochs < 0:
            raise ConfigError(f"`trials` {self.trials} / `epochs` {self.epochs} / `final_epochs` {self.final_epochs}: "
                              "trials and epochs must be >= 1, final epochs >= 0")
        if not 0.0 < self.val_split < 0.9:
            raise ConfigError(f"`val_split` {self.val_split}: a search selects on validation images; use 0.1..0.5")
        from edgeopt.train.loop import SCHEDULES  # checked here, not once per trial

        if self.schedule not in SCHEDULES:
            raise ConfigError(f"`schedule` {self.schedule!r} is unknown: use one of {', '.join(SCHEDULES)}")
        if not 1 <= self.batch_size <= 65_536:
            raise ConfigError(f"`batch_size` {self.batch_size} is out of range: use 1..65536")
        if self.heartbeat < 1 or self.latency_runs < 1:
            raise ConfigError(f"`heartbeat` {self.heartbeat} / `latency_runs` {self.latency_runs}: both must be >= 1")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"`timeout` {self.timeout} must be positive (seconds)")
        if not self.study or any(c in self.study for c in "/\\") or self.study.startswith("."):
            raise ConfigError(f"`study` {self.study!r}: use a plain name (it is also a folder under `out`)")

    @property
    def study_dir(self) -> Path:
        return Path(self.out) / self.study

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(Path(self.out) / 'search.db').resolve()}"


@dataclasses.dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    val_macro_f1: float
    macs: int
    params_count: int
    latency_ms: float | None
    score: float
    host: str
    artifacts: str
    worker: str = ""
    pareto: bool = False


@dataclasses.dataclass
class SearchResult:
    study: str
    storage: str  # password masked
    trials: list[TrialRecord]
    failed: int
    chosen: TrialRecord | None
    chosen_dir: Path | None
    report: Path
    plot: Path | None
    baseline: dict[str, Any]
    final: dict[str, Any] | None = None


def mask_url(url: str) -> str:
    """The storage URL with its password replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL sqlalchemy can parse: mask whatever sits between ':' and '@'
        import re

        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


def _driver_url(url: str) -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg (3) where that is what is installed."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
        if importlib.util.find_spec("psycopg") is None:
            raise MissingDependencyError("a postgresql:// storage needs a driver: pip install 'edgeopt[postgres]'")
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def open_storage(config: SearchConfig) -> Any:
    """Optuna's RDB storage with heartbeats and retry of trials whose worker died; one line when unreachable."""
    import optuna
    from optuna.storages import RDBStorage, RetryFailedTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = config.storage_url
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        try:
            return RDBStorage(_driver_url(url), heartbeat_interval=config.heartbeat, grace_period=2 * config.heartbeat,
                              failed_trial_callback=RetryFailedTrialCallback(max_retry=2),
                              engine_kwargs={"pool_pre_ping": True})
        except EdgeoptError:
            raise
        except Exception as exc:  # noqa: BLE001 - drivers raise their own types; the message says what happened
            attempt += 1
            if attempt <= 3 and _schema_race(exc):  # workers starting together on an empty database
                time.sleep(0.5 * attempt)
                continue
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise StorageError(f"cannot open the search storage {mask_url(url)}: {first}; check the URL, "
                               "that the server runs and that this machine may connect to it") from None


def _schema_race(exc: Exception) -> bool:
    """Another worker created the same tables or types a moment earlier (the schema exists now)."""
    try:
        from sqlalchemy.exc import IntegrityError, ProgrammingError
    except ImportError:
        return False
    return isinstance(exc, (IntegrityError, ProgrammingError)) or "already exists" in str(exc)


def study_settings(config: SearchConfig, classes: list[str]) -> dict[str, Any]:
    """What every worker of one study must agree on (not where it writes, nor how long it runs)."""
    from edgeopt.artifacts import sha256_file

    return {
        **{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config.space).items()},
        "objective": config.objective, "classes": classes, "epochs": config.epochs, "batch_size": config.batch_size,
        "val_split": config.val_split, "schedule": config.schedule, "pretrained": config.pretrained,
        **({"teacher_sha256": sha256_file(config.kd.teachers[0]) if config.kd.teachers else None} if len(config.kd.teachers) < 2
           else {"teachers_sha256": [sha256_file(t) for t in config.kd.teachers]}),
        **({"soft_labels_sha256": sha256_file(config.kd.soft_labels)} if config.kd.soft_labels else {}),
        "baseline": config.baseline, "baseline_f1": config.baseline_f1,
    }


def load_or_create_study(config: SearchConfig, storage: Any, settings: dict[str, Any]) -> Any:
    """The named study; a study of that name made with other settings is a one-line error."""
    import optuna

    directions = ["maximize", "minimize"] if config.objective == "pareto" else ["minimize"]
    sampler = optuna.samplers.TPESampler(seed=config.seed, constant_liar=True, multivariate=True,
                                         n_startup_trials=min(10, max(2, config.trials // 3)))
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    if config.study in existing:
        study = optuna.load_study(study_name=config.study, storage=storage, sampler=sampler)
        theirs = study.user_attrs.get(SETTINGS_ATTR)
        if theirs is not None and theirs != settings:
            differ = sorted(k for k in set(settings) | set(theirs) if settings.get(k) != theirs.get(k))
            shown = ", ".join(f"{k} {theirs.get(k)!r} (now {settings.get(k)!r})" for k in differ[:3])
            raise ConfigError(f"study {config.study!r} in {mask_url(config.storage_url)} was made with other search "
                              f"settings: {shown}; rerun with those settings or pick a new `study` name")
    else:
        study = optuna.create_study(study_name=config.study, storage=storage, sampler=sampler,
                                    directions=directions, load_if_exists=True)
    if study.user_attrs.get(SETTINGS_ATTR) is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
    return study


def baseline_macs(name: str, num_classes: int) -> tuple[int, int]:
    """(MACs, input size) of the named baseline at the size its model config gives."""
    from edgeopt.models import count_complexity, create_model
    from edgeopt.models.registry import default_input_size

    size = default_input_size(name)
    model, _ = create_model(name, num_classes)
    return count_complexity(model, size).macs, size


@functools.lru_cache(maxsize=None)
def point_macs(backbone: str, size: int, num_classes: int) -> int:
    """MACs of ``backbone`` at ``size`` px, unpruned (built without weights: only its shape counts)."""
    from edgeopt.models import count_complexity, create_model

    model, _ = create_model(backbone, num_classes)
    return count_complexity(model, size).macs


def fitting_space(space: SearchSpace, max_macs: int | None, num_classes: int) -> SearchSpace:
    """``space`` less the backbones and sizes that cannot fit ``max_macs`` even pruned by ``max_prune``:
    a trial that cannot be chosen is not worth training. Nothing fitting is a one-line error."""
    if max_macs is None:
        return space
    least = {(b, s): point_macs(b, s, num_classes) * (1 - space.max_prune) for b in space.backbones for s in space.sizes}
    fits = [point for point, macs in least.items() if macs <= max_macs]
    if not fits:
        (b, s), macs = min(least.items(), key=lambda kv: kv[1])
        pruned = f" pruned by {space.max_prune:.0%}" if space.max_prune else ""
        raise ConfigError(f"`max_macs` {max_macs / 1e6:g}M: no backbone fits at any size; the smallest point, {b} at {s} px"
                          f"{pruned}, costs {macs / 1e6:.1f}M MACs: raise `max_macs`, add smaller `sizes` or allow pruning "
                          "(`max_prune`)")
    return dataclasses.replace(space, backbones=tuple(b for b in space.backbones if any(p[0] == b for p in fits)),
                               sizes=tuple(s for s in space.sizes if any(p[1] == s for p in fits)))


def suggest(trial: Any, space: SearchSpace, has_teacher: bool) -> dict[str, Any]:
    params: dict[str, Any] = {
        "backbone": trial.suggest_categorical("backbone", list(space.backbones)),
        "img_size": trial.suggest_categorical("img_size", list(space.sizes)),
        "prune": trial.suggest_float("prune", 0.0, space.max_prune, step=0.05) if space.max_prune > 0 else 0.0,
        "lr": trial.suggest_float("lr", *space.lr, log=True) if space.lr[0] < space.lr[1] else space.lr[0],
    }
    if has_teacher:
        t, a = space.kd_temperature, space.kd_alpha
        params["kd_temperature"] = trial.suggest_float("kd_temperature", *t) if t[0] < t[1] else t[0]
        params["kd_alpha"] = trial.suggest_float("kd_alpha", *a) if a[0] < a[1] else a[0]
    return params


def _trial_dir(config: SearchConfig, trial: Any) -> Path:
    """A retried trial works in the folder of the trial it retries (and resumes its training)."""
    from optuna.storages import RetryFailedTrialCallback

    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    history = RetryFailedTrialCallback.retry_history(frozen)
    return config.study_dir / f"trial-{(history[0] if history else trial.number):04d}"


def train_point(config: SearchConfig, params: dict[str, Any], classes: list[str], folder: Path, *, epochs: int,
                val_split: float, data: Path | None = None, callbacks: Any = None) -> Any:
    """Build the point's backbone, prune it to its fraction of MACs, train it (distilled) in ``folder``
    (``callbacks``: ``train_classifier``'s progress hooks).

    The pruned start is kept as ``init.pt`` and training resumes from ``last.pt`` when the folder
    has them (a retried trial, an interrupted final run).
    """
    from edgeopt.models.checkpoint import save_checkpoint
    from edgeopt.models import count_complexity, create_model
    from edgeopt.models.registry import preset_for_model
    from edgeopt.compress.prune import prune_to_macs
    from edgeopt.train.loop import TrainConfig, train_classifier

    size = params["img_size"]
    init = folder / "init.pt"
    folder.mkdir(parents=True, exist_ok=True)
    if not init.exists():
        model, arch = create_model(params["backbone"], len(classes), pretrained=config.pretrained)
        macs = count_complexity(model, size).macs
        if params["prune"] > 0:
            prune_to_macs(model, arch, size, int(macs * (1 - params["prune"])), num_classes=len(classes))
            arch["pruned"] = {"fraction_of_macs": params["prune"], "macs_before": macs, "importance": "l2"}
        save_checkpoint(init, model, arch, classes, preset_for_model(params["backbone"], size))
    return train_classifier(TrainConfig(
        model=params["backbone"], data=data or config.data, out=folder, init_checkpoint=init, img_size=size,
        epochs=epochs, batch_size=config.batch_size, lr=params["lr"], pretrained=config.pretrained, schedule=config.schedule,
        # a point without KD params has no soft targets: alpha 0 (the temperature is then unused)
        kd=dataclasses.replace(config.kd, temperature=params.get("kd_temperature", config.kd.temperature),
                               alpha=params.get("kd_alpha", 0.0)),
        val_split=val_split, device=config.device, workers=config.workers, resume=(folder / "last.pt").exists(),
        warn_view_repeats=False), callbacks)


def run_trial(config: SearchConfig, trial: Any, classes: list[str], baseline: dict[str, Any],
              log: Callable[[str], None], callbacks: Any = None) -> tuple[float, ...]:
    """One trial: build, prune, train (distilled), export, time; returns the objective values."""
    import optuna

    from edgeopt.bench.score import score_macs

    params = suggest(trial, config.space, config.kd.enabled)
    folder = _trial_dir(config, trial)
    trial.set_user_attr("point", params)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("artifacts", str(folder.resolve()))
    resume = (folder / "last.pt").exists()
    if resume:
        trial.set_user_attr("resumed", True)
    log(f"trial {trial.number}: {_describe(params)}{' (resuming)' if resume else ''}")
    if config.max_macs is not None:  # a point of a backbone that fits at other sizes only: never trained
        macs = point_macs(params["backbone"], params["img_size"], len(classes)) * (1 - params["prune"])
        if macs > config.max_macs:
            reason = f"{macs / 1e6:.1f}M MACs is over `max_macs` {config.max_macs / 1e6:g}M: not trained"
            trial.set_user_attr("error", reason)
            log(f"trial {trial.number}: skipped: {reason}")
            raise optuna.TrialPruned(reason)
    try:
        train = train_point(config, params, classes, folder, epochs=config.epochs, val_split=config.val_split,
                            callbacks=callbacks)
        onnx_path, latency = _export_and_time(train.best_checkpoint, folder, config)
    except EdgeoptError as exc:  # a point of the space this backbone cannot take (e.g. below its pruning floor)
        trial.set_user_attr("error", str(exc))
        log(f"trial {trial.number}: skipped: {exc}")
        raise optuna.TrialPruned(str(exc)) from None
    f1 = float(train.best_macro_f1)
    score = score_macs(train.macs, baseline["macs"], f1, config.baseline_f1)
    trial.set_user_attr("macs", train.macs)
    trial.set_user_attr("params_count", train.params)
    trial.set_user_attr("val_macro_f1", f1)
    trial.set_user_attr("latency_ms", latency)
    trial.set_user_attr("score", score)
    trial.set_user_attr("onnx", str(onnx_path))
    log(f"trial {trial.number}: val macro-F1 {f1:.4f}, {train.macs / 1e6:.1f}M MACs, {latency:.2f} ms, score {score:.4f}")
    return (f1, float(train.macs)) if config.objective == "pareto" else (score,)


def refit(config: SearchConfig, chosen: TrialRecord, classes: list[str], log: Callable[[str], None],
          callbacks: Any = None) -> dict[str, Any]:
    """Train the chosen point again on all of ``--data`` for ``final_epochs`` (no selection) and export it.

    With ``config.int8``, a slice of ``--data`` is held out of that run first, and INT8 is made by
    PTQ or QAT, whichever loses less macro-F1 on that slice (``edgeopt.quant.int8_path``)."""
    from edgeopt.quant.int8_path import choose_int8, split_for_judging

    folder = config.study_dir / f"final-trial-{chosen.number:04d}"
    data, judge = config.data, None
    if config.int8 is not None:
        data, judge = split_for_judging(config.data, config.study_dir / "final-split", config.int8.holdout)
    log(f"final run of trial {chosen.number} on {'all of ' if judge is None else ''}{data}, {config.final_epochs} epochs -> {folder}")
    _say_view_repeats(config, config.final_epochs, log)
    train = train_point(config, chosen.params, classes, folder, epochs=config.final_epochs, val_split=0.0, data=data,
                        callbacks=callbacks)
    onnx_path, latency = _export_and_time(train.best_checkpoint, folder, config)
    record = {"trial": chosen.number, "checkpoint": str(train.best_checkpoint), "onnx": str(onnx_path), "macs": train.macs,
              "epochs": config.final_epochs, "latency_ms": latency, "trained_on": str(data),
              "selection": "none: trained on all of `data` for a fixed number of epochs; score it on a test split"}
    if judge is not None:
        record["selection"] = (f"none: trained on `data` less a {config.int8.holdout:.0%} slice held out to judge INT8, for a "
                               "fixed number of epochs; score it on a test split")
        record["int8"] = choose_int8(train.best_checkpoint, onnx_path, data, judge, folder, config.int8, log, device=config.device)
    return record


def _say_view_repeats(config: SearchConfig, epochs: int, log: Callable[[str], None]) -> None:
    """One line, where a run from the bank has more epochs than it has views (trials and the final run
    train with the view-repeat warning off: a search chooses its schedules itself)."""
    if config.kd.soft_labels is None:
        return
    from edgeopt.train.soft_labels import read_bank

    views = read_bank(config.kd.soft_labels).num_views
    if epochs > views:
        log(f"the bank holds {views} views per image: over {epochs} epochs each is seen about {epochs / views:.0f} times "
            f"(a bank with more `views` gives more distinct ones)")


def _describe(params: dict[str, Any]) -> str:
    text = f"{params['backbone']} @{params['img_size']} px, prune {params['prune']:.2f}, lr {params['lr']:.2g}"
    if "kd_alpha" in params:
        text += f", KD T={params['kd_temperature']:.1f} a={params['kd_alpha']:.2f}"
    return text


def _export_and_time(checkpoint: Path, folder: Path, config: SearchConfig) -> tuple[Path, float]:
    """ONNX export (parity-checked on the data) and its batch-1 p50 latency on this CPU (ms)."""
    from edgeopt.bench.timing import onnx_cpu_latency_ms
    from edgeopt.convert import convert

    onnx_path = convert(checkpoint, "onnx", folder / "model.onnx", data=config.data).path
    return onnx_path, onnx_cpu_latency_ms(onnx_path, runs=config.latency_runs, warmup=min(10, config.latency_runs))


def run_search(config: SearchConfig, log: Callable[[str], None] = print, *, report_only: bool = False,
               callbacks: Any = None) -> SearchResult:
    """Run (or join, or resume) the study until it holds ``trials`` finished trials; report and export.
    ``callbacks``: ``train_classifier``'s progress hooks, for every trial and the final run.

    ``report_only``: run no trial (nor the final run); report the study as it stands, e.g. on the
    machine that gathers a study other workers are running.
    """
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError("edgeopt search needs Optuna: pip install optuna") from None
    from optuna.trial import TrialState

    from edgeopt.data.folder import scan_folder

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # retry/heartbeat APIs
    scan = scan_folder(config.data)
    classes = scan.classes
    for teacher in config.kd.teachers:
        if not teacher.is_file():
            raise ConfigError(f"`teacher` {teacher}: no such checkpoint; train one with edgeopt train")
    if config.kd.soft_labels is not None:  # checked once, not once per trial
        from edgeopt.data.folder import split_scan
        from edgeopt.train.soft_labels import read_bank

        read_bank(config.kd.soft_labels).rows_for(split_scan(scan, config.val_split, seed=0)[0])  # train_point's split
        _say_view_repeats(config, config.epochs, log)
    _check_backbones(config, len(classes))
    space = fitting_space(config.space, config.max_macs, len(classes))
    if space != config.space:
        left_out = sorted(set(config.space.backbones) - set(space.backbones)) + sorted(set(config.space.sizes) - set(space.sizes))
        log(f"left out of the search, over `max_macs` {config.max_macs / 1e6:g}M at any setting: {', '.join(map(str, left_out))}")
        config = dataclasses.replace(config, space=space)
    storage = open_storage(config)
    study = load_or_create_study(config, storage, study_settings(config, classes))
    b_macs, b_size = baseline_macs(config.baseline, len(classes))
    baseline = {"name": config.baseline, "macs": b_macs, "img_size": b_size, "f1": config.baseline_f1}
    config.study_dir.mkdir(parents=True, exist_ok=True)
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    if done < config.trials and not report_only:
        log(f"study {config.study!r} in {mask_url(config.storage_url)}: {done} of {config.trials} trials finished")
        stop = optuna.study.MaxTrialsCallback(config.trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
        study.optimize(lambda trial: run_trial(config, trial, classes, baseline, log, callbacks), n_trials=config.trials - done,
                       timeout=config.timeout, callbacks=[stop], gc_after_trial=True)
    final = None
    if config.final_epochs and not report_only:
        chosen = choose(_records(study)[0], config.max_macs)
        final = refit(config, chosen, classes, log, callbacks) if chosen is not None else None
    return report(config, study, baseline, mask_url(config.storage_url), final=final)


def _check_backbones(config: SearchConfig, num_classes: int) -> None:
    """Every backbone builds (with its pretrained weights): a bad name fails before any trial runs."""
    from edgeopt.models import create_model

    for name in config.space.backbones:
        create_model(name, num_classes, pretrained=config.pretrained)


def pareto_front(records: list[TrialRecord], cost: Callable[[TrialRecord], float] = lambda r: r.macs) -> list[TrialRecord]:
    """Trials no other trial beats on both val macro-F1 (higher) and ``cost`` (lower; MACs by default)."""
    def dominated(r: TrialRecord) -> bool:
        return any(o.val_macro_f1 >= r.val_macro_f1 and cost(o) <= cost(r) and
                   (o.val_macro_f1 > r.val_macro_f1 or cost(o) < cost(r)) for o in records)

    return sorted((r for r in records if not dominated(r)), key=cost)


def choose(records: list[TrialRecord], max_macs: int | None) -> TrialRecord | None:
    """Best val macro-F1 within ``max_macs``; without a budget, the best competition score."""
    if max_macs is not None:
        within = [r for r in records if r.macs <= max_macs]
        return max(within, key=lambda r: (r.val_macro_f1, -r.macs)) if within else None
    return min(records, key=lambda r: r.score) if records else None


def _records(study: Any) -> tuple[list[TrialRecord], int]:
    from optuna.trial import TrialState

    records, failed = [], 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.FAIL:
            failed += 1
        if t.state != TrialState.COMPLETE:
            continue
        a = t.user_attrs
        # the point as trained: what the sampler drew plus what the space fixed (a one-value range,
        # --max-prune 0), which optuna's own params leave out
        records.append(TrialRecord(t.number, {**a.get("point", {}), **t.params}, a["val_macro_f1"], a["macs"], a["params_count"],
                                   a.get("latency_ms"), a["score"], a.get("host", ""), a.get("artifacts", ""),
                                   a.get("worker", "")))
    return records, failed


def report(config: SearchConfig, study: Any, baseline: dict[str, Any], storage: str,
           final: dict[str, Any] | None = None) -> SearchResult:
    """Pareto table data, ``pareto.json``, ``pareto.png`` and the chosen trial exported to ``chosen/``
    (with the record of its final run, when there was one)."""
    from edgeopt.bench.machine import machine_info

    records, failed = _records(study)
    front = pareto_front(records)
    for r in front:
        r.pareto = True
    chosen = choose(records, config.max_macs)
    chosen_dir = _export_chosen(chosen, config.study_dir / "chosen") if chosen else None
    plot = plot_pareto(records, config.study_dir / "pareto.png") if records else None
    path = atomic_write_json(config.study_dir / "pareto.json", {
        "study": config.study, "storage": storage, "objective": config.objective,
        "split": f"validation ({config.val_split:.0%} of {config.data}, stratified, seed 0): it selected each "
                 "trial's checkpoint and the chosen point; report test figures from images outside `data`",
        "baseline": baseline, "max_macs": config.max_macs, "failed_trials": failed,
        "trials": [dataclasses.asdict(r) for r in sorted(records, key=lambda r: r.number)],
        "pareto": [r.number for r in front], "chosen": chosen.number if chosen else None,
        "chosen_dir": str(chosen_dir) if chosen_dir else None, "final": final, "machine": machine_info(),
    })
    return SearchResult(config.study, storage, records, failed, chosen, chosen_dir, path, plot, baseline, final)


def _export_chosen(chosen: TrialRecord, dest: Path) -> Path | None:
    """Copy the chosen trial's checkpoint and ONNX (with manifests) into ``dest``, replacing it atomically."""
    source = Path(chosen.artifacts)
    files = [n for n in ("best.pt", "best.pt.json", "model.onnx", "model.onnx.json", "metrics.json") if (source / n).is_file()]
    if "best.pt" not in files:  # the trial ran on another worker: its artifacts are there
        return None
    with atomic_dir(dest) as tmp:
        for name in files:
            shutil.copy2(source / name, tmp / name)
        (tmp / "trial.json").write_text(json.dumps(dataclasses.asdict(chosen), indent=2) + "\n", encoding="utf-8")
    return dest


def plot_pareto(records: list[TrialRecord], path: Path, f1_label: str = "val macro-F1", log_x: bool = False,
                f1_floor: float | None = None) -> Path:
    """Macro-F1 against MACs and against CPU latency, each panel's own Pareto front joined; ``log_x``
    spreads models of very different sizes, ``f1_floor`` leaves points below it out of view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    timed = [r for r in records if r.latency_ms is not None]
    panels = ((axes[0], records, lambda r: r.macs / 1e6, "MACs (M)"),
              (axes[1], timed, lambda r: r.latency_ms, "ONNX Runtime CPU batch-1 p50 (ms)"))
    for ax, rows, x, label in panels:
        ax.scatter([x(r) for r in rows], [r.val_macro_f1 for r in rows], c="lightgray", edgecolors="gray", label="trial")
        front = pareto_front(rows, cost=x)
        ax.plot([x(r) for r in front], [r.val_macro_f1 for r in front], "o-", color="tab:red", label="Pareto front")
        for r in front:
            ax.annotate(f"#{r.number}", (x(r), r.val_macro_f1), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(label)
        if log_x and rows:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    if f1_floor is not None:
        axes[0].set_ylim(bottom=f1_floor)
    axes[0].set_ylabel(f1_label)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
