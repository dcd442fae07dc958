"""The oracle: exact next-song probabilities of a synthetic world, recomputed from `truth/`.

It reads only what the generator wrote (the public tables, `truth/` and its parameters) and
evaluates, for a batch of moments in sessions, the mixture described in `sessions.py` in closed
form over the whole catalog: each component's base law restricted to the songs allowed at that
moment (released, not the current song) and renormalised; components with no allowed song get
weight zero. It shares no sampling code with the generator, so agreement between the two (the
goodness-of-fit test) checks both. Ranking songs by these probabilities is the best any model can
do on average: its HR@K and MRR@K are the ceiling of the evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from nextsong.config import COMPONENTS, WorldConfig
from nextsong.errors import DataError
from nextsong.schema import table_path
from nextsong.store import read_json, read_table
from nextsong.synth.listeners import preferred_energy

_BATCH = 256  # rows per dense (batch, n_songs) block


class Oracle:
    def __init__(
        self,
        config: WorldConfig,
        songs: pl.DataFrame,
        song_truth: pl.DataFrame,
        follows: pl.DataFrame,
        listeners: pl.DataFrame,
        favourites: pl.DataFrame,
        sessions: pl.DataFrame,
    ):
        self.config = config
        self.n_songs = songs.height
        self.song_artist = songs["artist_id"].to_numpy().astype(np.int64)
        self.song_genre = songs["genre_id"].to_numpy().astype(np.int64)
        self.song_energy = songs["energy"].to_numpy().astype(np.float64)
        self.song_release_us = songs["release_ts"].dt.epoch("us").to_numpy()
        popularity = song_truth["popularity"].to_numpy()
        self.n_artists = int(self.song_artist.max()) + 1
        self.n_genres = int(self.song_genre.max()) + 1

        # Songs of each artist, CSR style: artist_songs[artist_first[a]:artist_first[a + 1]].
        self.artist_songs = np.argsort(self.song_artist, kind="stable")
        self.artist_first = np.concatenate(
            [[0], np.cumsum(np.bincount(self.song_artist, minlength=self.n_artists))]
        )
        # Within-artist law (same_artist and favourites): popularity over the artist's total.
        artist_total = np.bincount(self.song_artist, popularity, minlength=self.n_artists)
        self.within_artist = popularity / artist_total[self.song_artist]
        # Taste law per kind: popularity**bias over the genre's total, times the genre's taste.
        within_genre = []
        for kind in config.kinds:
            weight = popularity**kind.popularity_bias
            total = np.bincount(self.song_genre, weight, minlength=self.n_genres)
            within_genre.append(weight / total[self.song_genre])
        self.within_genre = np.stack(within_genre)  # (kinds, S)

        m = config.behaviour.follow_candidates
        follows = follows.sort("song_id", "rank")
        if follows.height != self.n_songs * m:
            raise DataError(f"truth/follows has {follows.height} rows, expected {self.n_songs * m}")
        self.follow_next = follows["next_song_id"].to_numpy().reshape(self.n_songs, m)
        self.follow_weight = follows["weight"].to_numpy().reshape(self.n_songs, m)

        kind_index = {kind.name: i for i, kind in enumerate(config.kinds)}
        listeners = listeners.sort("user_id")
        self.user_ids = listeners["user_id"].to_numpy()
        self.kind = np.array([kind_index[k] for k in listeners["kind"].to_list()])
        self.taste = np.stack(listeners["taste"].to_numpy())
        self.energy_base = listeners["energy_base"].to_numpy()
        self.energy_amplitude = listeners["energy_amplitude"].to_numpy()
        self.energy_peak_hour = listeners["energy_peak_hour"].to_numpy()
        favourites = favourites.sort("user_id", "artist_id")
        favourite_user = favourites["user_id"].to_numpy()
        self.favourite_artist = favourites["artist_id"].to_numpy()
        self.favourite_offsets = np.searchsorted(
            favourite_user, np.append(self.user_ids, self.user_ids[-1] + 1)
        )
        sessions = sessions.sort("session_id")
        self.session_ids = sessions["session_id"].to_numpy()
        self.session_hour = sessions["hour"].to_numpy().astype(np.float64)
        self.session_mood = sessions["mood"].to_numpy()

    @classmethod
    def load(cls, world: Path | str) -> Oracle:
        """Reads a synthetic world's truth; an imported world has none (DataError)."""
        world = Path(world)
        truth = world / "truth"
        if not truth.is_dir():
            raise DataError(f"{world} has no truth/: the oracle needs a synthetic world")

        def read(path: Path) -> pl.DataFrame:
            return pl.from_arrow(read_table(path))  # one file, or a folder of shard parts

        return cls(
            WorldConfig.from_dict(read_json(truth / "params.json")),
            read(table_path(world, "songs")),
            read(table_path(truth, "songs")),
            read(table_path(truth, "follows")),
            read(table_path(truth, "listeners")),
            read(table_path(truth, "favourites")),
            read(table_path(truth, "sessions")),
        )

    # -- public API ------------------------------------------------------------------------
    def next_song_probabilities(
        self,
        user_id: Sequence[int] | np.ndarray,
        session_id: Sequence[int] | np.ndarray,
        previous_song: Sequence[int] | np.ndarray,
        previous_skipped: Sequence[bool] | np.ndarray,
        now_us: Sequence[int] | np.ndarray,
    ) -> np.ndarray:
        """(B, n_songs) probability of each song being the one that starts at `now_us`.

        `previous_song` is -1 for the first song of a session. Rows sum to 1.
        """
        user_id, session_id = np.asarray(user_id), np.asarray(session_id)
        previous_song, now_us = np.asarray(previous_song), np.asarray(now_us)
        previous_skipped = np.asarray(previous_skipped, dtype=bool)
        out = np.empty((len(user_id), self.n_songs))
        for lo in range(0, len(user_id), _BATCH):
            rows = slice(lo, lo + _BATCH)
            out[rows] = self._batch(
                user_id[rows], session_id[rows], previous_song[rows],
                previous_skipped[rows], now_us[rows],
            )  # fmt: skip
        return out

    def _batch(
        self,
        user_id: np.ndarray,
        session_id: np.ndarray,
        previous_song: np.ndarray,
        previous_skipped: np.ndarray,
        now_us: np.ndarray,
    ) -> np.ndarray:
        """The mixture for one batch. taste and explore are dense over the catalog; same_artist,
        follows and favourites touch few songs and are added sparsely, as (row, song, value)."""
        behaviour = self.config.behaviour
        listener = self._rows(self.user_ids, user_id, "user_id")
        session = self._rows(self.session_ids, session_id, "session_id")
        kind = self.kind[listener]
        first = previous_song < 0
        current = np.where(first, 0, previous_song)
        batch = np.arange(len(listener))

        allowed = self.song_release_us[None, :] <= now_us[:, None]  # (B, S)
        allowed[batch, current] &= first  # never the current song again

        target = np.clip(
            preferred_energy(
                self.energy_base[listener],
                self.energy_amplitude[listener],
                self.energy_peak_hour[listener],
                self.session_hour[session],
            )
            + self.session_mood[session],
            0.0,
            1.0,
        )
        fit_width, floor = behaviour.energy_fit_width, behaviour.energy_fit_floor
        taste = np.exp(-((self.song_energy[None, :] - target[:, None]) ** 2) / (2 * fit_width**2))
        taste = floor + (1 - floor) * taste  # (B, S) energy fit
        taste *= self.taste[listener][:, self.song_genre]
        taste *= self.within_genre[kind]
        taste *= allowed
        explore = allowed.astype(np.float64)

        # Sparse components: each a list of (row, song, base weight), restricted to allowed.
        rows, songs, values = self._artist_entries(
            batch[~first], self.song_artist[current[~first]], np.ones((~first).sum())
        )
        same_artist = (rows, songs, values)
        follow_rows = np.repeat(batch[~first], self.follow_next.shape[1])
        follows = (
            follow_rows,
            self.follow_next[current[~first]].ravel(),
            self.follow_weight[current[~first]].ravel(),
        )
        lo, hi = self.favourite_offsets[listener], self.favourite_offsets[listener + 1]
        owner = np.repeat(batch, hi - lo)
        slots = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])
        # A favourite artist uniformly, then one of its songs by popularity.
        favourites = self._artist_entries(
            owner, self.favourite_artist[slots], 1.0 / (hi - lo)[owner]
        )

        sparse = []
        masses = np.zeros((5, len(batch)))
        for index, (r, c, v) in ((0, same_artist), (1, follows), (3, favourites)):
            v = v * allowed[r, c]
            masses[index] = np.bincount(r, v, minlength=len(batch))
            sparse.append((index, r, c, v))
        masses[2] = taste.sum(axis=1)
        masses[4] = explore.sum(axis=1)

        weights = np.array([k.mixture for k in self.config.kinds])[kind]
        weights[first] = 0.0
        weights[np.ix_(first, [2, 3, 4])] = behaviour.first_song_mixture
        damped = [COMPONENTS.index(name) for name in behaviour.skip_damped]
        weights[np.ix_(previous_skipped & ~first, damped)] *= behaviour.skip_damping
        weights *= masses.T > 0
        weights /= weights.sum(axis=1, keepdims=True)
        # Each component normalised by its mass, scaled by its weight, summed.
        scale = weights / np.where(masses.T > 0, masses.T, 1.0)  # (B, 5)
        out = taste * scale[:, 2:3] + explore * scale[:, 4:5]
        for index, r, c, v in sparse:
            np.add.at(out, (r, c), v * scale[r, index])
        return out

    def _artist_entries(
        self, rows: np.ndarray, artists: np.ndarray, weight: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, song, weight * popularity share within artist) for every song of each artist."""
        lo, hi = self.artist_first[artists], self.artist_first[artists + 1]
        count = hi - lo
        slot = (
            np.arange(count.sum())
            - np.repeat(np.cumsum(count) - count, count)
            + np.repeat(lo, count)
        )
        songs = self.artist_songs[slot]
        return np.repeat(rows, count), songs, np.repeat(weight, count) * self.within_artist[songs]

    @staticmethod
    def _rows(ids: np.ndarray, wanted: np.ndarray, name: str) -> np.ndarray:
        rows = np.searchsorted(ids, wanted)
        rows = np.minimum(rows, len(ids) - 1)
        missing = ids[rows] != wanted
        if missing.any():
            raise DataError(f"{name} {wanted[missing][0]} is not in this world's truth")
        return rows


def session_context(events: pl.DataFrame) -> pl.DataFrame:
    """For each event, what came before it in its session: previous song and skip (-1, False at
    position 0). `events` must be whole sessions in contract order."""
    return events.with_columns(
        pl.col("song_id").shift(1).over("session_id").fill_null(-1).alias("previous_song"),
        pl.col("skipped").shift(1).over("session_id").fill_null(False).alias("previous_skipped"),
    )


def ceiling_metrics(
    oracle: Oracle, events: pl.DataFrame, ks: Sequence[int] = (5, 10, 20)
) -> dict[str, float]:
    """HR@K, MRR@K and NDCG@K of ranking by the true probabilities, for every event of
    `events` at position >= 1 (whole sessions in contract order, so each event's predecessor is
    there). Ranks are computed over the whole catalog by the project's metric functions."""
    from nextsong.metrics import ranking_metrics, target_ranks

    context = session_context(events).filter(pl.col("position") >= 1)
    ranks = []
    for lo in range(0, context.height, _BATCH):
        batch = context.slice(lo, _BATCH)
        probability = oracle.next_song_probabilities(
            batch["user_id"].to_numpy(),
            batch["session_id"].to_numpy(),
            batch["previous_song"].to_numpy(),
            batch["previous_skipped"].to_numpy(),
            batch["ts"].dt.epoch("us").to_numpy(),
        )
        ranks.append(target_ranks(probability, batch["song_id"].to_numpy(), cutoff=max(ks)))
    metrics = ranking_metrics(np.concatenate(ranks) if ranks else np.array([]), ks)
    return {**metrics, "targets": float(context.height)}
