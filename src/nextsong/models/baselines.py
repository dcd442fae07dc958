"""Count baselines: what a next-song model must beat before it is worth its training.

- `popular`: every listener gets the most played songs of the training window.
- `popular_recent`: the most played songs of the training window's last week (`days`), then the
  rest by all-time plays.
- `user_history`: the listener's own most played songs in training, then the most popular.
- `transitions`: first-order counts of song -> next song within training sessions, read at the
  song just played, then the most popular (a first-order Markov chain with back-off).

Every score is `back_off(evidence, prior)` (base.py): songs with evidence first, in its order,
the others by training popularity, so no two models differ only by how they break ties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from nextsong.errors import ConfigError
from nextsong.models.base import (
    Recommender,
    SessionBatch,
    TrainingData,
    back_off,
    popularity_prior,
)
from nextsong.models.registry import register

US_PER_DAY = 86_400_000_000


def csr_state(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A CSR matrix as three named arrays, for safetensors (shape goes into the metadata)."""
    return {
        f"{prefix}.indptr": matrix.indptr.astype(np.int64),
        f"{prefix}.indices": matrix.indices.astype(np.int32),
        f"{prefix}.data": matrix.data.astype(np.float32),
    }


def csr_from_state(arrays: dict[str, np.ndarray], prefix: str, shape: list[int]) -> sp.csr_matrix:
    return sp.csr_matrix(
        (arrays[f"{prefix}.data"], arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"]),
        shape=tuple(shape),
    )


def count_matrix(
    rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """(R, C) float32 CSR of summed weights, duplicates added, explicit zeros dropped."""
    matrix = sp.csr_matrix(
        (weights.astype(np.float32), (rows.astype(np.int64), cols.astype(np.int64))), shape=shape
    )
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix


def _check_weight(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value}")


class _PriorModel(Recommender):
    """A model whose score is the same (S,) vector for every session."""

    def _score(self, batch: SessionBatch) -> np.ndarray:
        return np.broadcast_to(self.scores, (len(batch), len(self.scores))).copy()

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"scores": self.scores}, {}

    def load_state(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        self.scores = arrays["scores"]


@register("popular", kind="baseline")
class Popular(_PriorModel):
    """Most played songs of the training window, the same list for everyone."""

    def _fit(self, data: TrainingData) -> None:
        self.scores = popularity_prior(data.play_counts)


@register("popular_recent", kind="baseline")
class PopularRecent(_PriorModel):
    """Most played songs of the last `days` of training, then the rest by all-time plays.

    Args:
        days: length of the recent window, ending at the end of training (default 7).
    """

    @dataclass(frozen=True)
    class Config:
        days: float = 7.0

        def __post_init__(self) -> None:
            if not self.days > 0:
                raise ConfigError(f"popular_recent days must be positive, got {self.days}")

    def _fit(self, data: TrainingData) -> None:
        since = data.train_end_us - round(self.config.days * US_PER_DAY)
        recent = data.train.filter(pl.col("ts").dt.epoch("us") >= since)["song_id"].to_numpy()
        counts = np.bincount(recent, minlength=data.n_songs).astype(np.float32)
        self.scores = back_off(counts[None, :], popularity_prior(data.play_counts))[0]


@register("user_history", kind="baseline")
class UserHistory(Recommender):
    """The listener's own most played songs in training, then the most popular songs.

    Args:
        skip_weight: how much a skipped play counts, against 1 for a play heard to the end
            (default 0.5: a skip still says the listener reached for the song).
    """

    @dataclass(frozen=True)
    class Config:
        skip_weight: float = 0.5

        def __post_init__(self) -> None:
            _check_weight("skip_weight", self.skip_weight)

    def _fit(self, data: TrainingData) -> None:
        train = data.train
        weights = np.where(train["skipped"].to_numpy(), self.config.skip_weight, 1.0)
        self.plays = count_matrix(
            train["user_id"].to_numpy(),
            train["song_id"].to_numpy(),
            weights,
            (data.n_users, data.n_songs),
        )  # (U, S)
        self.prior = popularity_prior(data.play_counts)

    def _score(self, batch: SessionBatch) -> np.ndarray:
        # Unknown users (not in training) read an empty row: pure popularity.
        users = batch.user_id
        known = (users >= 0) & (users < self.plays.shape[0])
        return back_off(self.plays[np.where(known, users, 0)].multiply(known[:, None]), self.prior)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {**csr_state("plays", self.plays), "prior": self.prior}, {
            "shape": list(self.plays.shape)
        }

    def load_state(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        self.plays = csr_from_state(arrays, "plays", metadata["shape"])
        self.prior = arrays["prior"]


@register("transitions", kind="baseline")
class Transitions(Recommender):
    """First-order transitions: how often each song followed the song just played in training
    sessions, then the most popular songs. At the start of a session: the most popular.

    Args:
        skip_weight: how much a transition *into* a skipped song counts, against 1 for one
            heard to the end (default 1.0, plain counts: 0.5 and 0 did no better on the default
            world's validation period).
    """

    @dataclass(frozen=True)
    class Config:
        skip_weight: float = 1.0

        def __post_init__(self) -> None:
            _check_weight("skip_weight", self.skip_weight)

    def _fit(self, data: TrainingData) -> None:
        pairs = data.train.select(
            pl.col("song_id").shift(1).over("session_id").alias("previous"),
            pl.col("song_id").alias("next"),
            pl.col("skipped"),
        ).drop_nulls("previous")
        weights = np.where(pairs["skipped"].to_numpy(), self.config.skip_weight, 1.0)
        self.counts = count_matrix(
            pairs["previous"].to_numpy(),
            pairs["next"].to_numpy(),
            weights,
            (data.n_songs, data.n_songs),
        )  # (S, S): row = previous song
        self.prior = popularity_prior(data.play_counts)

    def _score(self, batch: SessionBatch) -> np.ndarray:
        # At the start of a session (previous song -1) the row is empty: pure popularity.
        previous = batch.previous_song
        started = previous >= 0
        rows = self.counts[np.where(started, previous, 0)].multiply(started[:, None])
        return back_off(rows, self.prior)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {**csr_state("counts", self.counts), "prior": self.prior}, {
            "shape": list(self.counts.shape)
        }

    def load_state(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        self.counts = csr_from_state(arrays, "counts", metadata["shape"])
        self.prior = arrays["prior"]
