"""`nextsong train`: artifacts, determinism, resume after kill -9, and two DDP processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nextsong.models import registry, runs
from nextsong.models.base import MODEL_FILE, MODEL_KIND, WEIGHTS_FILE, read_weights
from nextsong.store import MANIFEST, read_json, read_manifest
from nextsong.train import CHECKPOINT_STATE, checkpoint_dir

# A few seconds per run on the tiny world: small network, a slice of the targets per epoch.
SMALL = [
    "--set", "dim=16", "--set", "examples_per_epoch=4096", "--set", "batch_size=256",
    "--set", "validation_sessions=100", "--set", "graph_layers=1", "--device", "cpu",
]  # fmt: skip
RUN_FILES = {
    MODEL_FILE,
    WEIGHTS_FILE,
    MANIFEST,
    "config.json",
    "metrics.json",
    "training_curve.png",
}
VOLATILE = {"seconds", "elapsed_seconds", "peak_memory_mb"}


@pytest.fixture
def world(tiny_graph_world: Path, tmp_path: Path):
    """Returns `copy(name)`: a fresh copy of the tiny world with its graph, to train in."""

    def copy(name: str = "world") -> Path:
        return Path(shutil.copytree(tiny_graph_world, tmp_path / name))

    return copy


def _command(*args: object) -> list[str]:
    return [sys.executable, "-m", "nextsong", "train", *map(str, args)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _history(run: Path) -> list[dict]:
    history = read_json(run / "metrics.json")["history"]
    return [{k: v for k, v in epoch.items() if k not in VOLATILE} for epoch in history]


def _same_weights(first: Path, second: Path) -> bool:
    a, b = read_weights(first), read_weights(second)
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_train_writes_a_complete_run_and_marks_it_best(run_cli, world) -> None:
    data = world()
    result = run_cli("train", "--data", data, "--model", "gru4rec", "--epochs", "2", *SMALL)
    assert result.code == 0, result.stderr
    assert "epoch  1" in result.stdout and "validation HR@20" in result.stdout
    run = runs.best_run(data, "gru4rec")
    assert run is not None and str(run) in result.stdout.replace("\n", "")
    assert {p.name for p in run.iterdir()} == RUN_FILES
    read_manifest(run, MODEL_KIND)  # every file checksummed
    metrics = read_json(run / "metrics.json")
    assert [e["epoch"] for e in metrics["history"]] == [1, 2]
    assert metrics["best_validation_HR@20"] == max(
        e["validation HR@20"] for e in metrics["history"]
    )
    assert read_json(run / "config.json")["config"]["dim"] == 16
    assert (run / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert registry.load_model(run).name == "gru4rec"
    assert not checkpoint_dir(data, "gru4rec").exists(), "checkpoints go once the run is saved"


def test_same_seed_same_weights_other_seed_other_weights(run_cli, world) -> None:
    paths = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        data = world(name)
        result = run_cli("train", "--data", data, "--epochs", "1", "--seed", seed, *SMALL)
        assert result.code == 0, result.stderr
        paths.append(runs.best_run(data, "nextsong"))
    assert _same_weights(paths[0], paths[1])
    assert _history(paths[0]) == _history(paths[1])
    assert not _same_weights(paths[0], paths[2])


@pytest.mark.slow
def test_resume_after_kill_ends_as_an_uninterrupted_run(run_cli, world) -> None:
    arguments = ["--epochs", "4", "--patience", "4", *SMALL]
    whole = world("whole")
    assert run_cli("train", "--data", whole, *arguments).code == 0

    killed = world("killed")
    state = checkpoint_dir(killed, "nextsong") / CHECKPOINT_STATE
    process = subprocess.Popen(
        _command("--data", killed, *arguments),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "killed during training"
    assert read_json(state)["loop"]["epoch"] < 4
    assert runs.best_run(killed, "nextsong") is None, "no run saved before the kill"

    result = run_cli("train", "--data", killed, "--resume", *arguments)
    assert result.code == 0, result.stderr
    resumed, uninterrupted = runs.best_run(killed, "nextsong"), runs.best_run(whole, "nextsong")
    assert _history(resumed) == _history(uninterrupted)
    assert _same_weights(resumed, uninterrupted)


@pytest.mark.slow
def test_two_ddp_processes_match_each_other_and_one_process(run_cli, world) -> None:
    arguments = ["--epochs", "2", "--patience", "2", *SMALL]
    single = world("single")
    assert run_cli("train", "--data", single, *arguments).code == 0

    double = world("double")
    torchrun = Path(sys.executable).with_name("torchrun")
    finished = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "nextsong", "train",
         "--data", str(double), *arguments],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    run = runs.best_run(double, "nextsong")
    metrics = read_json(run / "metrics.json")
    assert metrics["processes"] == 2
    assert len(set(metrics["weights_sha256"])) == 1, "both ranks end with the same weights"
    alone = read_json(runs.best_run(single, "nextsong") / "metrics.json")
    for key in ("best_validation_HR@20", "best_validation_MRR@20"):
        assert abs(metrics[key] - alone[key]) < 0.03, (key, metrics[key], alone[key])


def test_bad_input_is_a_one_line_error(run_cli, world) -> None:
    data = world()
    result = run_cli("train", "--data", data, "--model", "popular")
    assert result.code == 2 and "not trained here" in result.stderr
    result = run_cli("train", "--data", data, "--set", "dim=wide")
    assert result.code == 2 and "dim must be of type int" in result.stderr
    result = run_cli("train", "--data", data, "--set", "width=3")
    assert result.code == 2 and "KEY one of" in result.stderr
    result = run_cli("train", "--data", data, "--device", "tpu")
    assert result.code == 2 and "--device must be one of" in result.stderr


def test_history_leaves_out_the_session_being_predicted() -> None:
    """A training example's history candidates lose the plays of its own session from the
    target on (what a test session's history never holds), and only those."""
    from nextsong.train import Examples

    examples = Examples(
        event_song=np.array([5, 7, 5, 9, 7, 2]),  # session A: rows 0-3, session B: rows 4-5
        event_skipped=np.zeros(6, dtype=bool),
        row=np.array([1, 4]),
        start=np.array([0, 4]),
        end=np.array([4, 6]),
        user=np.array([0, 0]),
        now_us=np.array([0, 0]),
        play_counts=np.zeros(10, dtype=np.int64),
    )
    candidates = np.array([[5, 7, 9, 2, -1], [7, 2, 5, 9, -1]])
    counts = examples.plays_from_target_on(np.array([0, 1]), candidates)
    np.testing.assert_array_equal(counts, [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
