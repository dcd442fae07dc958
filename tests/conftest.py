"""Shared fixtures: tiny generated worlds, made once per test session."""

from __future__ import annotations

import os

# One thread per process: the machine has two cores and tests may run beside other work.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from nextsong.config import world_config
from nextsong.store import MANIFEST, read_json, read_table, write_manifest, write_table
from nextsong.synth.generate import generate_world


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic world (preset `tiny`, seed 7). Read-only: copy it before changing it."""
    path = tmp_path_factory.mktemp("worlds") / "tiny"
    generate_world(world_config("tiny", seed=7), path)
    return path


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """Runs `nextsong ARGS...` in this process, as the console script does (exit code included)."""
    from nextsong.cli import main

    def run(*args: object) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["nextsong", *map(str, args)])
        with pytest.raises(SystemExit) as exited:
            main()
        captured = capsys.readouterr()
        return CliResult(exited.value.code or 0, captured.out, captured.err)

    return run


@pytest.fixture
def edit_world(tiny_world: Path, tmp_path: Path) -> Callable[..., Path]:
    """Returns `edit(change=None, name="world")`: a copy of the tiny world in tmp_path whose
    events table is replaced by `change(events)` (a pyarrow Table) and whose manifest is rewritten
    to match, as if the world had been produced that way."""

    def edit(change: Callable[[pa.Table], pa.Table] | None = None, name: str = "world") -> Path:
        path = tmp_path / name
        shutil.copytree(tiny_world, path)
        if change is not None:
            manifest = read_json(path / MANIFEST)
            write_table(path / "events.parquet", change(read_table(path / "events.parquet")))
            fields = {k: v for k, v in manifest.items() if k not in ("schema_version", "kind")}
            fields.pop("files")
            write_manifest(path, manifest["kind"], **fields)
        return path

    return edit


@pytest.fixture(scope="session")
def tiny_graph_world(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny world with its edges (`edges/`) and graph (`graph/`) built with the
    default split. Read-only: copy it before changing it."""
    from nextsong.graph.build import build_graph
    from nextsong.graph.edges import build_edges
    from nextsong.graph.io import save_graph

    path = tmp_path_factory.mktemp("worlds") / "tiny_graph"
    shutil.copytree(tiny_world, path)
    build_edges(path)
    save_graph(*build_graph(path), path)
    return path
