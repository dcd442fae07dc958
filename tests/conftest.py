"""Shared fixtures: tiny generated worlds, made once per test session."""

from __future__ import annotations

import os

# One thread per process: the machine has two cores and tests may run beside other work.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from nextsong.config import world_config  # noqa: E402
from nextsong.synth.generate import generate_world  # noqa: E402


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic world (preset `tiny`, seed 7). Read-only: copy it before changing it."""
    path = tmp_path_factory.mktemp("worlds") / "tiny"
    generate_world(world_config("tiny", seed=7), path)
    return path
