"""The recommender contract every model follows, baselines, the oracle and trained models alike.

A recommender is fitted once on the training window (`TrainingData`: the training events and the
catalog tables), then scores the whole catalog for a batch of sessions-so-far (`SessionBatch`).
`recommend` turns scores into top-k lists without the songs already played in the session.
`save` writes a folder with `model.json` (name, config, metadata), `model.safetensors` and a
manifest with checksums; `load_model` (in `registry`) reads it back. Nothing is ever pickled.

Subclasses implement four methods: `_fit`, `_score`, `state` and `load_state`. The public `fit`
and `score` check what goes in and what comes out, so every model fails the same way on bad
input. Song ids index the catalog directly (row i of `songs` is song_id i), so a score matrix's
column j is song j. `tests/test_recommender_contract.py` runs the same behaviour checks on every
registered model.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from nextsong.errors import ConfigError, DataError, NextsongError
from nextsong.store import read_json, read_manifest, staged_dir, write_json, write_manifest

log = logging.getLogger(__name__)

MODEL_KIND = "model"
MODEL_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"  # the name ARCHITECTURE.md gives run folders
US_PER_HOUR = 3_600_000_000


@dataclass(frozen=True)
class SessionBatch:
    """B sessions-so-far, each waiting for its next song.

    The songs of each session so far are right-aligned in a (B, L) matrix and padded on the left
    with -1, so `songs[:, -1]` is the song just played. L may be 0 (every session asks for its
    first song).
    """

    user_id: np.ndarray  # (B,) int64; a user unseen in training is allowed (cold start)
    session_id: np.ndarray  # (B,) int64
    songs: np.ndarray  # (B, L) int64 song ids, -1 before the session's first song
    skipped: np.ndarray  # (B, L) bool, whether each of those songs was skipped; False at padding
    now_us: np.ndarray  # (B,) int64, when the next song starts: microseconds since epoch, UTC

    def __post_init__(self) -> None:
        b = len(self.user_id)
        for name in ("user_id", "session_id", "now_us"):
            if getattr(self, name).shape != (b,):
                raise ConfigError(
                    f"SessionBatch.{name} must have shape ({b},), got {getattr(self, name).shape}"
                )
        for name in ("songs", "skipped"):
            shape = getattr(self, name).shape
            if len(shape) != 2 or shape[0] != b:
                raise ConfigError(f"SessionBatch.{name} must have shape ({b}, L), got {shape}")
        if self.songs.shape != self.skipped.shape:
            raise ConfigError(
                f"SessionBatch.songs {self.songs.shape} and skipped {self.skipped.shape} differ"
            )

    def __len__(self) -> int:
        return len(self.user_id)

    @property
    def length(self) -> np.ndarray:
        """(B,) songs played so far: the 0-based position of the song to predict."""
        return (self.songs >= 0).sum(axis=1)

    @property
    def previous_song(self) -> np.ndarray:
        """(B,) the song just played, -1 at the start of a session."""
        if self.songs.shape[1] == 0:
            return np.full(len(self), -1, dtype=np.int64)
        return self.songs[:, -1]

    @property
    def previous_skipped(self) -> np.ndarray:
        if self.skipped.shape[1] == 0:
            return np.zeros(len(self), dtype=bool)
        return self.skipped[:, -1]

    @property
    def hour(self) -> np.ndarray:
        """(B,) UTC hour of day (0..23) at which the next song starts."""
        return (self.now_us // US_PER_HOUR) % 24

    def rows(self, index: np.ndarray | slice) -> SessionBatch:
        """A sub-batch of the same padded width."""
        return SessionBatch(
            user_id=self.user_id[index],
            session_id=self.session_id[index],
            songs=self.songs[index],
            skipped=self.skipped[index],
            now_us=self.now_us[index],
        )

    @classmethod
    def from_sessions(
        cls,
        user_id: list[int] | np.ndarray,
        sessions: list[list[int]],
        now_us: list[int] | np.ndarray,
        skipped: list[list[bool]] | None = None,
        session_id: list[int] | np.ndarray | None = None,
    ) -> SessionBatch:
        """Builds a batch from plain lists (the CLI, the API, tests); session ids default to -1."""
        b = len(sessions)
        width = max((len(s) for s in sessions), default=0)
        songs = np.full((b, width), -1, dtype=np.int64)
        flags = np.zeros((b, width), dtype=bool)
        for row, session in enumerate(sessions):
            if session:
                songs[row, width - len(session) :] = session
                if skipped is not None:
                    flags[row, width - len(session) :] = skipped[row]
        return cls(
            user_id=np.asarray(user_id, dtype=np.int64),
            session_id=np.full(b, -1, np.int64)
            if session_id is None
            else np.asarray(session_id, np.int64),
            songs=songs,
            skipped=flags,
            now_us=np.asarray(now_us, dtype=np.int64),
        )


@dataclass(frozen=True)
class TrainingData:
    """What a model may learn from: the training window's events and the catalog.

    `validation` is there for early stopping only; nothing of the test period is here.
    """

    world_path: Path
    n_users: int
    songs: pl.DataFrame  # the catalog: song_id, title, artist_id, genre_id, duration_ms, ...
    artists: pl.DataFrame
    genres: pl.DataFrame
    train: pl.DataFrame  # events of sessions starting before train_end, contract order
    validation: pl.DataFrame  # events of the validation period, contract order
    train_end_us: int

    @property
    def n_songs(self) -> int:
        return self.songs.height

    @classmethod
    def from_world(cls, world: Any, parts: dict[str, pl.DataFrame], split: Any) -> TrainingData:
        """From a loaded `World`, its `split_events` parts and its `TemporalSplit`."""
        return cls(
            world_path=Path(world.path),
            n_users=world.users.num_rows,
            songs=pl.from_arrow(world.songs),
            artists=pl.from_arrow(world.artists),
            genres=pl.from_arrow(world.genres),
            train=parts["train"],
            validation=parts["validation"],
            train_end_us=split.train_end_us,
        )

    @cached_property
    def play_counts(self) -> np.ndarray:
        """(S,) training plays of each song."""
        return np.bincount(self.train["song_id"].to_numpy(), minlength=self.n_songs)

    @cached_property
    def session_songs(self) -> Any:
        """(N, S) float32 CSR, 1 where training session n played song s (sorted indices).

        Sessions are numbered by start time (then session id), so a larger row is a more recent
        session. Computed once and shared by every model that needs it.
        """
        import scipy.sparse as sp

        session = self.train["session_id"].to_numpy()
        starts = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])  # contract order
        start_us = self.train["ts"].dt.epoch("us").to_numpy()[starts]
        order = np.lexsort((session[starts], start_us))  # oldest session first
        index = np.empty(len(starts), dtype=np.int64)
        index[order] = np.arange(len(starts))
        row = np.repeat(index, np.diff(np.r_[starts, len(session)]))
        matrix = sp.csr_matrix(
            (np.ones(len(row), dtype=np.float32), (row, self.train["song_id"].to_numpy())),
            shape=(len(starts), self.n_songs),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix


def popularity_prior(play_counts: np.ndarray) -> np.ndarray:
    """(S,) play counts squashed into [0, 1): the back-off order of every baseline."""
    counts = np.asarray(play_counts, dtype=np.float64)
    return (counts / (counts.max() + 1.0)).astype(np.float32)


def back_off(evidence: Any, prior: np.ndarray) -> np.ndarray:
    """(B, S) float32 scores where songs with evidence (> 0) come first, in evidence order, and
    the others follow in the order of `prior` (S,) in [0, 1): evidence + 1 where evidence > 0,
    else the prior. `evidence` is non-negative, a dense (B, S) array or a scipy sparse matrix
    (then only its stored entries are touched: much faster for a few songs per row)."""
    import scipy.sparse as sp

    scores = np.empty(evidence.shape, dtype=np.float32)
    scores[:] = prior[None, :]
    flat = scores.reshape(-1)  # flat indices scatter several times faster than (row, col) pairs
    n_songs = evidence.shape[1]
    if sp.issparse(evidence):
        evidence = sp.csr_matrix(evidence)
        starts = np.arange(evidence.shape[0], dtype=np.int64) * n_songs
        where = np.repeat(starts, np.diff(evidence.indptr)) + evidence.indices
        positive = evidence.data > 0
        flat[where[positive]] = evidence.data[positive] + 1.0
    else:
        where = np.flatnonzero(evidence > 0)
        flat[where] = evidence.reshape(-1)[where] + 1.0
    return scores


class Recommender(abc.ABC):
    """Base of every model: see the module docstring for the contract.

    Subclasses declare `Config`, a frozen dataclass of their hyperparameters with defaults; the
    registry sets `name` (the registered name, e.g. `vsknn`) on each instance it creates.
    """

    @dataclass(frozen=True)
    class Config:
        pass

    # The registered name; set by `registry.create` (one class may serve several names).
    name: str = "unnamed"

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        if config is None:
            config = self._make_config(overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.n_songs: int | None = None

    @classmethod
    def _make_config(cls, values: dict[str, Any]) -> Any:
        known = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no setting {', '.join(unknown)}; valid settings: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
        return cls.Config(**values)

    # -- the contract ------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> Recommender:
        """Learns from the training window; returns self."""
        self.n_songs = data.n_songs
        self._fit(data)
        return self

    def score(self, batch: SessionBatch) -> np.ndarray:
        """(B, n_songs) float scores of every catalog song as the next song; higher is better,
        -inf for a song the model rules out. The caller owns (and may modify) the array."""
        n_songs = self._check_fitted()
        if len(batch) and batch.songs.size and int(batch.songs.max()) >= n_songs:
            raise ConfigError(
                f"song id {int(batch.songs.max())} is not in the catalog (0..{n_songs - 1})"
            )
        scores = self._score(batch)
        if scores.shape != (len(batch), n_songs) or scores.dtype.kind != "f":
            raise NextsongError(
                f"model {self.name} returned scores of shape {scores.shape} and dtype "
                f"{scores.dtype}; the contract is float ({len(batch)}, {n_songs})"
            )
        return scores

    def recommend(self, batch: SessionBatch, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) song ids, best first, and their (B, k) scores, never a song already played in
        the session nor one scored -inf (a row may then hold fewer: padded with id -1)."""
        n_songs = self._check_fitted()
        if not 1 <= k <= n_songs:
            raise ConfigError(f"k must be in 1..{n_songs} (the catalog size), got {k}")
        scores = exclude_session_songs(self.score(batch), batch.songs)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        top = np.where(np.isneginf(top_scores), -1, top)
        return top, top_scores

    @abc.abstractmethod
    def _fit(self, data: TrainingData) -> None: ...

    @abc.abstractmethod
    def _score(self, batch: SessionBatch) -> np.ndarray: ...

    @abc.abstractmethod
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """What `save` writes: named arrays (to safetensors) and JSON-able metadata."""

    @abc.abstractmethod
    def load_state(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        """Restores a fitted model from what `state` returned."""

    # -- persistence -------------------------------------------------------------------------
    def save(self, folder: Path | str, force: bool = False, **record: Any) -> Path:
        """Writes the fitted model into `folder` (built aside, renamed when complete).

        `record` adds JSON-able facts to `model.json` (the run's metrics, the data it saw).
        """
        from safetensors.numpy import save_file

        self._check_fitted()
        arrays, metadata = self.state()
        arrays = {name: np.ascontiguousarray(_to_numpy(value)) for name, value in arrays.items()}
        folder = Path(folder)
        with staged_dir(folder, force=force) as stage:
            save_file(arrays, str(stage / WEIGHTS_FILE))
            write_json(
                stage / MODEL_FILE,
                {
                    "model": self.name,
                    "class": f"{type(self).__module__}.{type(self).__qualname__}",
                    "config": dataclasses.asdict(self.config),
                    "n_songs": self.n_songs,
                    "metadata": metadata,
                    **record,
                },
            )
            write_manifest(stage, MODEL_KIND, model=self.name)
        return folder

    def _check_fitted(self) -> int:
        if self.n_songs is None:
            raise NextsongError(f"model {self.name} is not fitted: call fit() or load it first")
        return self.n_songs


def read_model_record(folder: Path | str) -> dict[str, Any]:
    """The checked `model.json` of a saved model folder."""
    folder = Path(folder)
    read_manifest(folder, MODEL_KIND)
    record = read_json(folder / MODEL_FILE)
    for key in ("model", "config", "n_songs", "metadata"):
        if key not in record:
            raise DataError(f"{folder / MODEL_FILE} has no {key!r}: not a nextsong model")
    return record


def read_weights(folder: Path | str) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(folder) / WEIGHTS_FILE
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise DataError(f"{path} is not a readable safetensors file: {error}") from None


def exclude_session_songs(scores: np.ndarray, songs: np.ndarray) -> np.ndarray:
    """Sets the scores of the songs already in each session (B, L; -1 padding) to -inf, in place;
    returns `scores`. The one place this rule lives: `recommend` and the evaluation use it."""
    rows, cols = np.nonzero(songs >= 0)
    scores.reshape(-1)[rows * scores.shape[1] + songs[rows, cols]] = -np.inf
    return scores


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    raise ConfigError(f"state arrays must be numpy arrays or torch tensors, got {type(value)}")
