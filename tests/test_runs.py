"""Trained runs on disk: unique folders and the best run of each model name."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from nextsong.errors import ConfigError, DataError
from nextsong.models import runs

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def make_run(data: Path, name: str) -> Path:
    run = runs.new_run_dir(data, name, now=NOW)
    run.mkdir(parents=True)
    return run


def test_run_folders_never_collide(tmp_path: Path) -> None:
    first = make_run(tmp_path, "gru4rec")
    second = make_run(tmp_path, "gru4rec")
    assert first.name == "gru4rec-20261201T120000Z"
    assert second.name == "gru4rec-20261201T120000Z-2"
    with pytest.raises(ConfigError):
        runs.new_run_dir(tmp_path, "best")


def test_the_best_run_is_kept_until_beaten(tmp_path: Path) -> None:
    assert runs.best_runs(tmp_path) == {}
    a, b, c = (make_run(tmp_path, "sasrec") for _ in range(3))
    assert runs.mark_if_better(tmp_path, "sasrec", a, "validation MRR@20", 0.10)
    assert not runs.mark_if_better(tmp_path, "sasrec", b, "validation MRR@20", 0.09)
    assert runs.best_run(tmp_path, "sasrec") == a
    assert runs.mark_if_better(tmp_path, "sasrec", c, "validation MRR@20", 0.11)
    assert runs.best_runs(tmp_path) == {"sasrec": c}
    # Lower is better for a loss; another metric replaces the record.
    assert runs.mark_if_better(tmp_path, "sasrec", b, "validation loss", 2.0, False)
    assert not runs.mark_if_better(tmp_path, "sasrec", a, "validation loss", 2.5, False)
    assert runs.read_best(tmp_path, "sasrec")["run"] == b.name


def test_a_vanished_best_run_is_replaced_or_reported(tmp_path: Path) -> None:
    gone, kept = make_run(tmp_path, "nextsong"), make_run(tmp_path, "nextsong")
    runs.mark_if_better(tmp_path, "nextsong", gone, "validation HR@20", 0.5)
    gone.rmdir()
    with pytest.raises(DataError, match="train nextsong again"):
        runs.best_run(tmp_path, "nextsong")
    assert runs.mark_if_better(tmp_path, "nextsong", kept, "validation HR@20", 0.1)
    assert runs.best_run(tmp_path, "nextsong") == kept


def test_runs_must_live_in_the_models_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(ConfigError, match="directly in"):
        runs.mark_if_better(tmp_path, "gru4rec", elsewhere, "validation HR@20", 0.2)
    with pytest.raises(ConfigError, match="finite"):
        runs.mark_if_better(tmp_path, "gru4rec", make_run(tmp_path, "gru4rec"), "x", float("nan"))
