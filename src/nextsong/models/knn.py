"""Session nearest neighbours: SKNN and V-SKNN, after Ludewig and Jannach.

Follows "Evaluation of session-based recommendation algorithms" (Ludewig and Jannach, User
Modeling and User-Adapted Interaction 28, 2018) and the neighbourhood models of their session-rec
framework, rewritten as sparse matrix operations over a whole batch of sessions at once.

For a session so far s:
1. Candidates: the `sample_size` most recent training sessions that share at least one song with
   s ("recent" sampling).
2. Similarity of s to each candidate n. SKNN: cosine of the two sets of songs,
   |s ∩ n| / sqrt(|s| |n|). V-SKNN: the sum, over shared songs, of the song's weight in s, which
   decays with its distance d from the end of s (d = 1 for the song just played; `weighting`
   "div" gives 1/d, "linear" max(0, 1 - 0.1 (d - 1)), "same" 1).
3. The `k` most similar candidates are the neighbours. Song i scores the sum over neighbours
   containing it of their similarity; V-SKNN multiplies each neighbour's vote by 1/d* (`decay`
   "div"), d* being the distance from the end of s of the most recent song of s that the
   neighbour holds, and each song's total by 1 + `idf_weighting` * idf(i).
4. Songs no neighbour holds follow by training popularity (`base.back_off`).

Speed: training sessions are numbered by start time, so "most recent" is "largest index"; each
song keeps only its `sample_size` most recent sessions, which provably contains every candidate
of step 1 and gives their exact overlaps (a session among the most recent of the union of the
songs' lists is among the most recent of each list it belongs to). One sparse product
(B, S) x (S, N) gives candidates and similarities, a top-k over at most `sample_size` candidates
per row picks neighbours, and a second product (B, N) x (N, S) gives the scores.

Args (Config): k (100) neighbours; sample_size (500) candidates; similarity ("cosine" or
"vec"); weighting ("same", "div", "linear") of the songs of s by distance from its end; decay
("none" or "div") of a neighbour's vote by where it matches s; idf_weighting (0.0);
skip_weight (1.0): weight of a skipped song of s, against 1 for one heard to the end (1.0 is the
original algorithm, which knows nothing of skips). `sample_size` is the argument people confuse
with `k`: candidates are sampled by recency before similarity is computed; `k` of them vote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from nextsong.errors import ConfigError
from nextsong.models.base import (
    Recommender,
    SessionBatch,
    TrainingData,
    back_off,
    popularity_prior,
)
from nextsong.models.baselines import csr_from_state, csr_state
from nextsong.models.registry import register

SIMILARITIES = ("cosine", "vec")
WEIGHTINGS = ("same", "div", "linear")
DECAYS = ("none", "div")


def position_weights(distance: np.ndarray, weighting: str) -> np.ndarray:
    """Weight of a song of the session at `distance` >= 1 from its end (1 = just played)."""
    distance = distance.astype(np.float32)
    if weighting == "same":
        return np.ones_like(distance)
    if weighting == "div":
        return 1.0 / distance
    if weighting == "linear":
        return np.maximum(0.0, 1.0 - 0.1 * (distance - 1.0))
    raise ConfigError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def keep_last_per_row(matrix: sp.csr_matrix, limit: int) -> sp.csr_matrix:
    """The last `limit` stored entries of each row of a CSR matrix with sorted indices."""
    counts = np.diff(matrix.indptr)
    position = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], counts)
    keep = position >= np.repeat(counts - limit, counts)
    kept = np.concatenate([[0], np.cumsum(np.minimum(counts, limit))])
    return sp.csr_matrix((matrix.data[keep], matrix.indices[keep], kept), shape=matrix.shape)


# V-SKNN's idf_weighting of 1 was chosen on the validation period of the default world (MRR@20
# 0.073 -> 0.084 over 0); nothing was tuned on test.
@register(
    "vsknn", kind="baseline", similarity="vec", weighting="div", decay="div", idf_weighting=1.0
)
@register("sknn", kind="baseline", similarity="cosine", weighting="same", decay="none")
class SessionKNN(Recommender):
    """SKNN and V-SKNN (see the module docstring for what they compute and their arguments)."""

    @dataclass(frozen=True)
    class Config:
        k: int = 100
        sample_size: int = 500
        similarity: str = "cosine"
        weighting: str = "same"
        decay: str = "none"
        idf_weighting: float = 0.0
        skip_weight: float = 1.0

        def __post_init__(self) -> None:
            if self.k < 1 or self.sample_size < self.k:
                raise ConfigError(
                    f"need 1 <= k <= sample_size, got k={self.k}, sample_size={self.sample_size}"
                )
            for name, valid in (
                ("similarity", SIMILARITIES),
                ("weighting", WEIGHTINGS),
                ("decay", DECAYS),
            ):
                if getattr(self, name) not in valid:
                    raise ConfigError(
                        f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}"
                    )
            if self.idf_weighting < 0:
                raise ConfigError(f"idf_weighting must be >= 0, got {self.idf_weighting}")
            if not 0 <= self.skip_weight <= 1:
                raise ConfigError(f"skip_weight must be in [0, 1], got {self.skip_weight}")

    # -- fit -------------------------------------------------------------------------------
    def _fit(self, data: TrainingData) -> None:
        self.sessions = data.session_songs  # (N, S) binary, rows oldest first; shared
        n_sessions = self.sessions.shape[0]
        by_song = self.sessions.T.tocsr()
        by_song.sort_indices()  # (S, N): each song's sessions, oldest first
        self.recent = keep_last_per_row(by_song, self.config.sample_size)
        frequency = np.diff(by_song.indptr)
        self.idf = np.log(n_sessions / np.maximum(frequency, 1)).astype(np.float32)
        self.prior = popularity_prior(data.play_counts)
        self._index()

    def _index(self) -> None:
        """Lookups derived from the fitted matrices (rebuilt on load, never saved)."""
        self.session_size = np.diff(self.sessions.indptr).astype(np.float32)
        self.recent_by_session = self.recent.T.tocsr()  # (N, S): the truncated lists, by session

    # -- score -----------------------------------------------------------------------------
    def _score(self, batch: SessionBatch) -> np.ndarray:
        config = self.config
        b = len(batch)
        query, latest = self._query(batch)  # (B, S) CSR weights; (B, W) songs by distance

        # Candidates and similarities in one product, computed transposed,
        # (N, S) x (S, B) -> (N, B), so that one conversion to CSC, read back as its transpose,
        # gives (B, N) with each row's sessions sorted by index (oldest first), in linear time.
        overlap = (self.recent_by_session @ query.T.tocsr()).tocsc().T
        overlap = keep_last_per_row(overlap, config.sample_size)
        pair_row = np.repeat(np.arange(b), np.diff(overlap.indptr))
        pair_session = overlap.indices
        similarity = overlap.data.astype(np.float32)
        if config.similarity == "cosine":
            size = np.diff(query.indptr).astype(np.float32)  # distinct songs of each query
            similarity = similarity / np.sqrt(size[pair_row] * self.session_size[pair_session])

        # The k most similar candidates of each row; among equal similarities the most recent
        # session wins, so a row's neighbours never depend on the rest of the batch. Rows are
        # laid out most recent first in a (B, <= sample_size) matrix and sorted stably.
        counts = np.diff(overlap.indptr)
        slot = np.repeat(overlap.indptr[1:] - 1, counts) - np.arange(overlap.nnz)
        width = max(int(counts.max(initial=0)), 1)
        padded = np.zeros((b, width), dtype=np.float32)
        padded[pair_row, slot] = similarity
        sessions = np.zeros((b, width), dtype=np.int64)
        sessions[pair_row, slot] = pair_session
        best = np.argsort(-padded, axis=1, kind="stable")[:, : config.k]  # (B, k)
        vote = np.take_along_axis(padded, best, axis=1)
        session = np.take_along_axis(sessions, best, axis=1)
        row = np.repeat(np.arange(b), best.shape[1]).reshape(best.shape)
        found = vote > 0
        row, session, vote = row[found], session[found], vote[found]

        if config.decay == "div":
            vote = vote / self._match_distance(row, session, latest)
        neighbours = sp.csr_matrix((vote, (row, session)), shape=(b, self.sessions.shape[0]))
        evidence = (neighbours @ self.sessions).tocsr()  # (B, S) sparse
        if config.idf_weighting > 0:
            evidence.data *= 1.0 + config.idf_weighting * self.idf[evidence.indices]
        return back_off(evidence, self.prior)

    def _query(self, batch: SessionBatch) -> tuple[sp.csr_matrix, np.ndarray]:
        """(B, S) weight of each song of each session so far, by its distance from the session's
        end (1 = just played); a repeated song counts at its latest play. Also (B, W) the songs
        by distance, -1 where a play is not its song's latest (see `_match_distance`)."""
        n_songs = self.sessions.shape[1]
        width = batch.songs.shape[1]
        rows, cols = np.nonzero(batch.songs >= 0)
        songs = batch.songs[rows, cols]
        distance = width - cols  # (P,) 1 for the last column
        # Latest play of each (row, song): sort by distance, keep the first of each pair.
        order = np.lexsort((distance, songs, rows))
        rows, songs, distance, cols = rows[order], songs[order], distance[order], cols[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (songs[1:] != songs[:-1])
        rows, songs, distance, cols = rows[first], songs[first], distance[first], cols[first]
        weight = position_weights(distance, self.config.weighting)
        skipped = batch.skipped[rows, cols]
        weight = np.where(skipped, weight * self.config.skip_weight, weight)
        query = sp.csr_matrix((weight, (rows, songs)), shape=(len(batch), n_songs))
        latest = np.full((len(batch), width), -1, dtype=np.int64)
        latest[rows, distance - 1] = songs
        return query, latest

    def _match_distance(
        self, row: np.ndarray, session: np.ndarray, latest: np.ndarray
    ) -> np.ndarray:
        """(P,) for each (query row, neighbour session) pair, the distance from the end of the
        query of the most recent query song the neighbour holds (>= 1).

        `latest` (B, W) holds each query's songs by distance (column j = distance j + 1, -1 where
        that play is not the song's latest). Distances are tried from the end: most pairs match
        at once, the rest narrow down quickly.
        """
        found = np.full(len(row), np.inf, dtype=np.float32)
        pending = np.arange(len(row))
        for column in range(latest.shape[1]):
            if not len(pending):
                break
            song = latest[row[pending], column]
            hit = (song >= 0) & self._holds(session[pending], song)
            found[pending[hit]] = column + 1
            pending = pending[~hit]
        # Every neighbour shares a song with its query; the fallback only guards the contract.
        return np.where(np.isfinite(found), found, 1.0)

    def _holds(self, session: np.ndarray, song: np.ndarray) -> np.ndarray:
        """(P,) whether each training session holds each song: a binary search of every pair
        at once within its session's sorted songs (a few vectorised steps)."""
        indices, indptr = self.sessions.indices, self.sessions.indptr
        low, high = indptr[session].astype(np.int64), indptr[session + 1].astype(np.int64)
        end = high.copy()
        while True:
            open_ = low < high
            if not open_.any():
                break
            middle = (low + high) // 2
            right = open_ & (indices[np.minimum(middle, len(indices) - 1)] < song)
            low = np.where(right, middle + 1, low)
            high = np.where(open_ & ~right, middle, high)
        return (low < end) & (indices[np.minimum(low, len(indices) - 1)] == song)

    # -- persistence -----------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {
            **csr_state("sessions", self.sessions),
            **csr_state("recent", self.recent),
            "idf": self.idf,
            "prior": self.prior,
        }
        return arrays, {"sessions": list(self.sessions.shape), "recent": list(self.recent.shape)}

    def load_state(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        self.sessions = csr_from_state(arrays, "sessions", metadata["sessions"])
        self.recent = csr_from_state(arrays, "recent", metadata["recent"])
        self.idf = arrays["idf"]
        self.prior = arrays["prior"]
        self._index()
