"""Trained runs on disk and which one is the best of each model name.

Layout under a world folder DIR:

    DIR/models/<run>/            one folder per training run, written by `Recommender.save`
                                 (model.json, model.safetensors, manifest.json, and whatever
                                 else the trainer adds, e.g. a log of epochs)
    DIR/models/best/<name>.json  {"model", "run", "metric", "value", "higher_is_better",
                                 "marked_at"}: the best run of that model name

Run folder names are `<name>-<UTC time>` (plus a counter if taken), so runs never overwrite each
other. `nextsong train` calls `mark_if_better` after each run; `nextsong evaluate` and
`recommend` call `best_runs` / `best_run`. One small file per name keeps concurrent trainings of
different models from racing on a shared file.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nextsong.errors import ConfigError, DataError
from nextsong.store import read_json, write_json

MODELS_DIR = "models"
BEST_DIR = "best"


def models_dir(data: Path | str) -> Path:
    return Path(data) / MODELS_DIR


def new_run_dir(data: Path | str, name: str, now: datetime | None = None) -> Path:
    """A fresh, not yet existing run folder for model `name` (the caller creates it)."""
    if not name or "/" in name or name.startswith(".") or name == BEST_DIR:
        raise ConfigError(f"model name {name!r} cannot name a run folder")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    base = models_dir(data) / f"{name}-{stamp}"
    candidate, counter = base, 1
    while candidate.exists():
        counter += 1
        candidate = base.with_name(f"{base.name}-{counter}")
    return candidate


def _best_file(data: Path | str, name: str) -> Path:
    return models_dir(data) / BEST_DIR / f"{name}.json"


def read_best(data: Path | str, name: str) -> dict[str, Any] | None:
    """The best-run record of a model name, or None when no run of it is marked."""
    path = _best_file(data, name)
    if not path.exists():
        return None
    record = read_json(path)
    if not isinstance(record, dict) or not {"model", "run", "metric", "value"} <= set(record):
        raise DataError(f"{path} is not a best-run record (model, run, metric, value)")
    return record


def mark_if_better(
    data: Path | str,
    name: str,
    run: Path | str,
    metric: str,
    value: float,
    higher_is_better: bool = True,
) -> bool:
    """Marks `run` as the best of `name` if no run is marked, the marked run is gone, it was
    judged by another metric, or `value` beats it. Returns whether `run` is now the best."""
    run = Path(run)
    if run.parent.resolve() != models_dir(data).resolve():
        raise ConfigError(f"run {run} must be a folder directly in {models_dir(data)}")
    if not math.isfinite(value):
        raise ConfigError(f"{metric} of run {run.name} must be a finite number, got {value}")
    current = read_best(data, name)
    if current is not None and current["metric"] == metric:
        still_there = (models_dir(data) / current["run"]).is_dir()
        best = current["value"]
        better = value > best if higher_is_better else value < best
        if still_there and not better:
            return False
    write_json(
        _best_file(data, name),
        {
            "model": name,
            "run": run.name,
            "metric": metric,
            "value": value,
            "higher_is_better": higher_is_better,
            "marked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    return True


def best_run(data: Path | str, name: str) -> Path | None:
    """The folder of the best run of `name`, or None if there is none."""
    record = read_best(data, name)
    if record is None:
        return None
    folder = models_dir(data) / record["run"]
    if not folder.is_dir():
        raise DataError(
            f"{_best_file(data, name)} marks run {record['run']!r}, which is not in "
            f"{models_dir(data)}: train {name} again"
        )
    return folder


def best_runs(data: Path | str) -> dict[str, Path]:
    """{model name: best run folder} for every name with a marked run, sorted by name."""
    folder = models_dir(data) / BEST_DIR
    if not folder.is_dir():
        return {}
    runs = {}
    for path in sorted(folder.glob("*.json")):
        run = best_run(data, path.stem)
        if run is not None:
            runs[path.stem] = run
    return runs
