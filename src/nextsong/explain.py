"""Reasons behind a recommendation, computed from the training window, never invented.

Every reason is a fact about the training data that makes a song a plausible next song for this
listener, this session and this hour; a reason that does not hold is left out. Each has a `kind`,
a sentence (`text`) and a number (`value`) whose meaning depends on the kind:

- `follows`: value = the share of training plays directly after a song of the session that
  were this song (for the session song it followed most often); holds if it followed one at
  least once.
- `artist`: value = how many of this artist's songs the listener played in training; holds if
  at least one.
- `similar_users`: value = the share of the listener's nearest neighbours who played the song
  without skipping it; holds if at least `similar_min_listeners` of them did.
- `genre`: value = the share of the listener's completed training plays that are in the song's
  genre; holds if at least `genre_min_share`.
- `time_of_day`: value = 1 - |song energy - mean energy of the listener's unskipped plays in the
  hours around this one|; holds with enough plays then and a gap within `energy_tolerance`.

Neighbours are found by co-listening: the cosine similarity of the sets of songs two listeners
played without skipping (at least once) in training. `time_of_day` is left out where the catalog
has no energy signal (every song the same energy, as in imported worlds).

Where the numbers come from: the edge tables of `nextsong edges` (`user_song`, `song_song`,
`user_hour`) and, for the energy of what a listener plays at each hour, the training events
(sessions that start before the training cut-off, the same split). They are gathered once into
`DIR/explain/reasons.safetensors`, sorted arrays in CSR form, so a request reads only the rows it
needs through a memory map: the listener's row, the listener rows of the songs they liked (for
the neighbours) and of the candidates, the transition rows of the session's songs. The index is
rebuilt on first use after the world, its split or its edges change.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nextsong.errors import ConfigError, DataError
from nextsong.store import (
    read_json,
    read_manifest,
    sha256_file,
    staged_dir,
    write_json,
    write_manifest,
)

log = logging.getLogger(__name__)

EXPLAIN_KIND = "explain"
EXPLAIN_DIR = "explain"
ARRAYS_FILE = "reasons.safetensors"
INDEX_FILE = "index.json"
INDEX_VERSION = 1
HOURS = 24
# The order reasons are listed in; the first that holds is a recommendation's short reason.
REASON_KINDS = ("follows", "artist", "similar_users", "genre", "time_of_day")


@dataclass(frozen=True)
class ExplainConfig:
    """When a reason holds, and how neighbours are chosen.

    neighbours: how many most similar listeners `similar_users` asks (default 20).
    similar_min_listeners: how many of them must have played a song without skipping it for
        `similar_users` to hold (default 2: one listener is an anecdote).
    genre_min_share: the smallest share of completed plays in a genre that makes it a reason
        (default 0.10; an even spread over the 35 synthetic genres gives 0.03 each).
    hour_window: hours either side of the requested hour that count as "this hour" (default 1).
    hour_min_plays: unskipped plays in that window needed to say what a listener plays then
        (default 5).
    energy_tolerance: the largest gap between a song's energy and the listener's mean energy at
        that hour for `time_of_day` to hold (default 0.10, on the 0..1 energy scale).
    min_energy_spread: the catalog's energy standard deviation below which energies carry no
        signal and `time_of_day` is never given (default 0.02).
    """

    neighbours: int = 20
    similar_min_listeners: int = 2
    genre_min_share: float = 0.10
    hour_window: int = 1
    hour_min_plays: int = 5
    energy_tolerance: float = 0.10
    min_energy_spread: float = 0.02

    def __post_init__(self) -> None:
        if self.neighbours < 1:
            raise ConfigError(f"neighbours must be at least 1, got {self.neighbours}")
        if not 0 <= self.hour_window <= 11:
            raise ConfigError(f"hour_window must be in 0..11, got {self.hour_window}")
        if self.similar_min_listeners < 1:
            raise ConfigError(
                f"similar_min_listeners must be at least 1, got {self.similar_min_listeners}"
            )
        if self.hour_min_plays < 1:
            raise ConfigError(f"hour_min_plays must be at least 1, got {self.hour_min_plays}")
        for name in ("genre_min_share", "energy_tolerance", "min_energy_spread"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class Reason:
    """One fact behind a recommendation; `short` is its few-word form for tables."""

    kind: str
    text: str
    value: float
    short: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "value": self.value}


@dataclass(frozen=True)
class Catalog:
    """Song, artist and genre ids and names of a world: what reasons and listings print.

    Row i of each array is id i (ids are dense). An unknown genre (-1, imported worlds) is named
    "unknown genre".
    """

    title: np.ndarray  # (S,) object
    song_artist: np.ndarray  # (S,) int64
    song_genre: np.ndarray  # (S,) int64, -1 unknown
    energy: np.ndarray  # (S,) float32 in [0, 1]
    artist_name: np.ndarray  # (A,) object
    genre_name: np.ndarray  # (G,) object

    @property
    def n_songs(self) -> int:
        return len(self.title)

    def genre_of(self, song: int) -> str:
        genre = int(self.song_genre[song])
        return str(self.genre_name[genre]) if 0 <= genre < len(self.genre_name) else "unknown genre"

    def artist_of(self, song: int) -> str:
        return str(self.artist_name[self.song_artist[song]])

    @classmethod
    def load(cls, folder: Path | str) -> Catalog:
        """Reads only the catalog columns it needs from the world in `folder`."""
        from nextsong import schema
        from nextsong.store import read_table

        folder = Path(folder)
        songs = read_table(schema.table_path(folder, "songs"))
        artists = read_table(schema.table_path(folder, "artists"))
        genres = read_table(schema.table_path(folder, "genres"))
        for name, table, columns in (
            ("songs", songs, ("title", "artist_id", "genre_id", "energy")),
            ("artists", artists, ("name",)),
            ("genres", genres, ("name",)),
        ):
            missing = [column for column in columns if column not in table.column_names]
            if missing:
                raise DataError(f"{folder}: table {name} has no column {missing[0]!r}")
        return cls(
            title=np.asarray(songs["title"].to_pylist(), dtype=object),
            song_artist=songs["artist_id"].to_numpy().astype(np.int64),
            song_genre=songs["genre_id"].to_numpy().astype(np.int64),
            energy=songs["energy"].to_numpy().astype(np.float32),
            artist_name=np.asarray(artists["name"].to_pylist(), dtype=object),
            genre_name=np.asarray(genres["name"].to_pylist(), dtype=object),
        )


# -- the index on disk -------------------------------------------------------------------------
def build_index(folder: Path | str) -> Path:
    """Gathers the training arrays reasons read into `folder/explain/` (see the module
    docstring); returns that folder. Raises DataError if the edges are missing or stale."""
    import polars as pl

    from nextsong.graph.edges import EDGES_DIR, load_edges
    from nextsong.world import WORLD_KIND

    folder = Path(folder)
    edges = load_edges(folder)
    world_manifest = read_manifest(folder, WORLD_KIND, verify=False)
    n_users = _count(world_manifest, "users", folder)
    n_songs = edges.tables["song_artist"].num_rows  # every song has an artist (not a genre)
    user_song = pl.from_arrow(edges.tables["user_song"])  # sorted by user, song
    song_song = pl.from_arrow(edges.tables["song_song"])  # sorted by song, next song
    user_hour = pl.from_arrow(edges.tables["user_hour"])

    user = user_song["user_id"].to_numpy()
    song = user_song["song_id"].to_numpy()
    plays = user_song["plays"].to_numpy()
    unskipped = plays - user_song["skips"].to_numpy()
    liked = unskipped > 0
    # Listeners of each song who played it without skipping: (song, user) order, users ascending.
    by_song = np.argsort(song[liked], kind="stable")
    transitions = song_song["transitions"].to_numpy()
    source = song_song["song_id"].to_numpy()
    hour_plays = np.zeros((n_users, HOURS), dtype=np.int32)
    hour_plays[user_hour["user_id"].to_numpy(), user_hour["hour"].to_numpy()] = user_hour[
        "plays"
    ].to_numpy()
    energy_sum, energy_plays = _hour_energy(folder, edges.split, n_users)
    energy = Catalog.load(folder).energy
    arrays = {
        "user_song.indptr": _indptr(user, n_users),
        "user_song.song": song.astype(np.int32),
        "user_song.plays": plays.astype(np.int32),
        "user_song.completed": user_song["completed"].to_numpy().astype(np.int32),
        "user_song.unskipped": unskipped.astype(np.int32),
        "user.liked": np.bincount(user[liked], minlength=n_users).astype(np.int32),
        "song_listener.indptr": _indptr(song[liked], n_songs),
        "song_listener.user": user[liked][by_song].astype(np.int32),
        "song_song.indptr": _indptr(source, n_songs),
        "song_song.next": song_song["next_song_id"].to_numpy().astype(np.int32),
        "song_song.transitions": transitions.astype(np.int32),
        "song.out_transitions": np.bincount(source, transitions, n_songs).astype(np.int64),
        "user_hour.plays": hour_plays,
        "user_hour.energy_sum": energy_sum,
        "user_hour.energy_plays": energy_plays,
    }
    from safetensors.numpy import save_file

    path = folder / EXPLAIN_DIR
    with staged_dir(path, force=True) as stage:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(stage / ARRAYS_FILE))
        write_json(
            stage / INDEX_FILE,
            {
                "version": INDEX_VERSION,
                "n_users": n_users,
                "n_songs": n_songs,
                "energy_sd": float(np.std(energy)) if len(energy) else 0.0,
                "edges_manifest": sha256_file(folder / EDGES_DIR / "manifest.json"),
                "sources": edges.manifest["sources"],
                "split": edges.split,
            },
        )
        write_manifest(stage, EXPLAIN_KIND)
    log.info("explanation index of %s: %d listener-song rows", folder, len(song))
    return path


def _count(manifest: dict[str, Any], name: str, folder: Path) -> int:
    try:
        return int(manifest["counts"][name])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{folder}/manifest.json has no count of {name}") from None


def _indptr(rows: np.ndarray, n_rows: int) -> np.ndarray:
    """(n_rows + 1,) int64 CSR offsets of a table sorted by `rows`."""
    return np.r_[0, np.cumsum(np.bincount(rows, minlength=n_rows))].astype(np.int64)


def _hour_energy(
    folder: Path, split: dict[str, Any], n_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """(U, 24) float32 sum of the energies and (U, 24) int32 count of each listener's unskipped
    training plays per UTC hour, from the events of sessions starting before the cut-off."""
    from datetime import datetime

    import polars as pl

    from nextsong import schema

    train_end = datetime.fromisoformat(split["train_end"])
    events_path = schema.table_path(folder, "events")
    source = events_path / "*.parquet" if events_path.is_dir() else events_path
    events = pl.scan_parquet(source).select("user_id", "session_id", "song_id", "ts", "skipped")
    training = events.join(
        events.group_by("session_id")
        .agg(pl.col("ts").min().alias("start"))
        .filter(pl.col("start") < train_end)
        .select("session_id"),
        on="session_id",
        how="semi",
    )
    energy = pl.scan_parquet(schema.table_path(folder, "songs")).select("song_id", "energy")
    per_hour = (
        training.filter(~pl.col("skipped"))
        .join(energy, on="song_id", how="left")
        .group_by("user_id", pl.col("ts").dt.hour().alias("hour"))
        .agg(pl.col("energy").sum().alias("energy"), pl.len().alias("plays"))
        .collect()
    )
    users, hours = per_hour["user_id"].to_numpy(), per_hour["hour"].to_numpy()
    energy_sum = np.zeros((n_users, HOURS), dtype=np.float32)
    energy_plays = np.zeros((n_users, HOURS), dtype=np.int32)
    energy_sum[users, hours] = per_hour["energy"].to_numpy()
    energy_plays[users, hours] = per_hour["plays"].to_numpy()
    return energy_sum, energy_plays


def index_is_current(folder: Path | str) -> bool:
    """Whether `folder/explain/` was built from the world, split and edges now in `folder`
    (cheap: manifests and settings only, no table is read)."""
    from nextsong.graph.edges import EDGES_DIR
    from nextsong.split import check_split_settings
    from nextsong.world import WORLD_KIND, check_sources

    folder = Path(folder)
    path = folder / EXPLAIN_DIR
    try:
        read_manifest(path, EXPLAIN_KIND, verify=False)
        record = read_json(path / INDEX_FILE)
        if record.get("version") != INDEX_VERSION:
            return False
        if record.get("edges_manifest") != sha256_file(folder / EDGES_DIR / "manifest.json"):
            return False
        world = read_manifest(folder, WORLD_KIND, verify=False)
        check_sources(record.get("sources", {}), world, str(path))
        check_split_settings(record.get("split", {}), folder, str(path))
    except (DataError, OSError):
        return False
    return True


def open_index(folder: Path | str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The index arrays (memory-mapped, read-only) and its record; built first if missing or
    stale. Checksums are verified on opening."""
    folder = Path(folder)
    if not index_is_current(folder):
        log.info("building the explanation index of %s", folder)
        build_index(folder)
    path = folder / EXPLAIN_DIR
    read_manifest(path, EXPLAIN_KIND)
    return map_safetensors(path / ARRAYS_FILE), read_json(path / INDEX_FILE)


_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def map_safetensors(path: Path | str) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a read-only numpy memory map: opening reads only
    the header, and a lookup reads only the pages it touches."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
        base = 8 + size
        arrays = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = np.dtype(_DTYPES[info["dtype"]])
            shape = tuple(info["shape"])
            start, end = info["data_offsets"]
            if end - start != dtype.itemsize * math.prod(shape):
                raise ValueError(f"tensor {name} has {end - start} bytes for shape {shape}")
            if end == start:
                arrays[name] = np.zeros(shape, dtype=dtype)
            else:
                arrays[name] = np.memmap(path, dtype, mode="r", offset=base + start, shape=shape)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path} is not a readable safetensors file: {error}") from None
    return arrays


# -- reasons -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    """One listener's training row (what the reasons of every candidate share)."""

    songs: np.ndarray  # (M,) songs played in training, ascending
    plays: np.ndarray  # (M,)
    completed: np.ndarray  # (M,)
    unskipped: np.ndarray  # (M,) plays without a skip


class Explainer:
    """Reasons for (listener, session, hour, candidate songs), from the index of `open_index`.

    Open once (`Explainer.open(DIR)`), then call `explain` per request: it reads the listener's
    row, the neighbours' and candidates' rows and the session songs' transition rows, nothing
    else.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        record: dict[str, Any],
        catalog: Catalog,
        config: ExplainConfig | None = None,
    ) -> None:
        self.arrays = arrays
        self.record = record
        self.catalog = catalog
        self.config = config or ExplainConfig()
        self.n_users = int(record["n_users"])
        self.time_signal = float(record["energy_sd"]) >= self.config.min_energy_spread
        if record["n_songs"] != catalog.n_songs:
            raise DataError(
                f"the explanation index has {record['n_songs']} songs, the catalog "
                f"{catalog.n_songs}: rebuild it (delete the explain folder)"
            )

    @classmethod
    def open(
        cls, folder: Path | str, catalog: Catalog | None = None, config: ExplainConfig | None = None
    ) -> Explainer:
        arrays, record = open_index(folder)
        return cls(arrays, record, catalog or Catalog.load(folder), config)

    def explain(
        self, user: int, session: list[int], hour: int, songs: list[int]
    ) -> list[list[Reason]]:
        """For each of `songs`, the reasons that hold, in `REASON_KINDS` order."""
        profile = self.profile(user)
        neighbours = self.neighbours(user, profile)
        hour_fit = self._hour_energy(user, hour)
        follows = self.follows(session, songs)
        out = []
        for index, song in enumerate(songs):
            found = [
                self._follows_reason(song, *follows[index]),
                self._artist_reason(song, profile),
                self._similar_reason(song, neighbours),
                self._genre_reason(song, profile),
                self._time_reason(song, hour, hour_fit),
            ]
            out.append([reason for reason in found if reason is not None])
        return out

    # -- lookups -------------------------------------------------------------------------------
    def profile(self, user: int) -> Profile:
        if not 0 <= user < self.n_users:
            raise ConfigError(f"user {user} is not in this world (valid: 0..{self.n_users - 1})")
        a = self.arrays
        start, end = (int(x) for x in a["user_song.indptr"][user : user + 2])
        return Profile(
            songs=np.asarray(a["user_song.song"][start:end], dtype=np.int64),
            plays=np.asarray(a["user_song.plays"][start:end]),
            completed=np.asarray(a["user_song.completed"][start:end]),
            unskipped=np.asarray(a["user_song.unskipped"][start:end]),
        )

    def listeners(self, song: int) -> np.ndarray:
        """Ascending listeners who played `song` without skipping it in training."""
        indptr = self.arrays["song_listener.indptr"]
        return np.asarray(self.arrays["song_listener.user"][indptr[song] : indptr[song + 1]])

    def neighbours(self, user: int, profile: Profile | None = None) -> np.ndarray:
        """Up to `config.neighbours` listeners most similar to `user`, most similar first: cosine
        similarity of the sets of songs played without skipping (ties: more songs in common,
        then the smaller id); only listeners with a song in common."""
        profile = profile or self.profile(user)
        liked = profile.songs[profile.unskipped > 0]
        if len(liked) == 0:
            return np.zeros(0, dtype=np.int64)
        indptr = self.arrays["song_listener.indptr"]
        starts, ends = indptr[liked], indptr[liked + 1]
        others = np.asarray(self.arrays["song_listener.user"][_ranges(starts, ends)])
        candidates, common = np.unique(others, return_counts=True)
        keep = candidates != user
        candidates, common = candidates[keep], common[keep]
        if len(candidates) == 0:
            return np.zeros(0, dtype=np.int64)
        sizes = np.asarray(self.arrays["user.liked"][candidates], dtype=np.float64)
        similarity = common / np.sqrt(sizes * len(liked))
        order = np.lexsort((candidates, -common, -similarity))[: self.config.neighbours]
        return candidates[order].astype(np.int64)

    def follows(self, session: list[int], songs: list[int]) -> list[tuple[int, int, float]]:
        """For each candidate: (session song it followed most often, how often, that count's
        share of every transition out of the session song); (-1, 0, 0.0) if it never did. Ties
        go to the more recent session song."""
        a = self.arrays
        candidates = np.asarray(songs, dtype=np.int64)
        best = np.full(len(candidates), -1, dtype=np.int64)
        count = np.zeros(len(candidates), dtype=np.int64)
        for previous in dict.fromkeys(reversed(session)):  # most recent first, once each
            start, end = (int(x) for x in a["song_song.indptr"][previous : previous + 2])
            following = np.asarray(a["song_song.next"][start:end])
            found = _members(candidates, following)
            at = np.searchsorted(following, candidates[found])
            times = np.zeros(len(candidates), dtype=np.int64)
            times[found] = np.asarray(a["song_song.transitions"][start:end])[at]
            better = times > count
            best[better], count[better] = previous, times[better]
        totals = np.asarray(a["song.out_transitions"])[np.maximum(best, 0)]
        return [
            (int(b), int(c), float(c / t) if c else 0.0)
            for b, c, t in zip(best, count, totals, strict=True)
        ]

    def _hour_energy(self, user: int, hour: int) -> tuple[float, int, float] | None:
        """(mean energy, unskipped plays, share of all plays) of the listener around `hour`, or
        None when the world has no energy signal or the listener too few plays then."""
        if not self.time_signal:
            return None
        a = self.arrays
        window = [
            (hour + shift) % HOURS
            for shift in range(-self.config.hour_window, 1 + self.config.hour_window)
        ]
        window = sorted(set(window))
        plays = int(np.asarray(a["user_hour.energy_plays"][user])[window].sum())
        if plays < self.config.hour_min_plays:
            return None
        energy = float(np.asarray(a["user_hour.energy_sum"][user], dtype=np.float64)[window].sum())
        all_plays = np.asarray(a["user_hour.plays"][user])
        share = float(all_plays[window].sum() / max(int(all_plays.sum()), 1))
        return energy / plays, plays, share

    # -- one reason each -----------------------------------------------------------------------
    def _follows_reason(self, song: int, previous: int, times: int, share: float) -> Reason | None:
        if times < 1:
            return None
        title = self.catalog.title[previous]
        return Reason(
            "follows",
            f"Came right after “{title}” {_times(times)} in training sessions "
            f"({share:.0%} of what was played after it)",
            round(share, 4),
            f"follows “{title}”",
        )

    def _artist_reason(self, song: int, profile: Profile) -> Reason | None:
        artist = self.catalog.song_artist[song]
        mine = self.catalog.song_artist[profile.songs] == artist
        n = int(mine.sum())
        if n < 1:
            return None
        name = self.catalog.artist_of(song)
        plays = int(profile.plays[mine].sum())
        songs = "song" if n == 1 else "songs"
        return Reason(
            "artist",
            f"You played {n} {songs} by {name} in training ({_plural(plays, 'play')})",
            float(n),
            f"you played {n} {songs} by {name}",
        )

    def _similar_reason(self, song: int, neighbours: np.ndarray) -> Reason | None:
        if len(neighbours) == 0:
            return None
        hits = int(_members(neighbours, self.listeners(song)).sum())
        if hits < self.config.similar_min_listeners:
            return None
        share = hits / len(neighbours)
        return Reason(
            "similar_users",
            f"{hits} of the {len(neighbours)} listeners most like you played it without "
            f"skipping ({share:.0%})",
            round(share, 4),
            f"{hits}/{len(neighbours)} similar listeners",
        )

    def _genre_reason(self, song: int, profile: Profile) -> Reason | None:
        genre = self.catalog.song_genre[song]
        if genre < 0:
            return None
        total = int(profile.completed.sum())
        if total < 1:
            return None
        mine = self.catalog.song_genre[profile.songs] == genre
        completed = int(profile.completed[mine].sum())
        share = completed / total
        if share < self.config.genre_min_share:
            return None
        name = self.catalog.genre_of(song)
        return Reason(
            "genre",
            f"{share:.0%} of your completed plays in training are {name} ({completed} of {total})",
            round(share, 4),
            f"{share:.0%} of your plays are {name}",
        )

    def _time_reason(
        self, song: int, hour: int, fit: tuple[float, int, float] | None
    ) -> Reason | None:
        if fit is None:
            return None
        mean, plays, share = fit
        energy = float(self.catalog.energy[song])
        gap = abs(energy - mean)
        if gap > self.config.energy_tolerance:
            return None
        return Reason(
            "time_of_day",
            f"Its energy {energy:.2f} fits what you play around {hour}h: mean energy "
            f"{mean:.2f} over {plays} unskipped plays ({share:.0%} of your listening)",
            round(1.0 - gap, 4),
            f"fits your {hour}h energy",
        )


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, end) for each pair, without a Python loop."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return np.arange(total, dtype=np.int64) + offsets


def _members(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """(len(values),) bool: whether each value is in the ascending array `sorted_set`."""
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _times(n: int) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"
