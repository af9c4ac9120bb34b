"""Where a study lives: Optuna's RDB storage (SQLite, or PostgreSQL for several machines), its retries, and the settings every worker must agree on."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from edgeopt.errors import ConfigError, EdgeoptError, MissingDependencyError
from edgeopt.search.config import SearchConfig


SETTINGS_ATTR = "edgeopt_search"


class StorageError(EdgeoptError):
    """The study's storage cannot be opened."""


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
