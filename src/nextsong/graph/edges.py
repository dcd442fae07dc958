"""Edge tables of the training window: who played what, what follows what, and when.

Computed with Polars from the events of the sessions that start in the training period (the split
in `nextsong.split`, with the settings `nextsong split` saved) and from the catalog. Nothing here
reads validation or test events, nor `truth/`. The catalog edges (song -> artist, song -> genre,
artist -> genre) cover every song, including songs released after the training window, so a
model can still place a new release by its artist and genre.

Tables, one Parquet file each under `DIR/edges/`, sorted by their first two columns:

- `user_song`: plays, completed plays (not skipped and at least `completed_share` of the song's
  duration played), skips, and the time of the last play of each listener and song;
- `song_artist`, `song_genre`: the catalog;
- `artist_genre`: the artist's own genre (`primary`) and every genre its songs are in, with the
  number of its songs in each (`songs`, 0 for a primary genre none of its songs is in);
- `song_song`: how often `next_song_id` directly followed `song_id` in a session
  (`transitions`), and how often with neither of the two skipped (`transitions_unskipped`);
- `user_genre`: plays and skips of each listener per genre;
- `user_hour`: plays and session starts of each listener per UTC hour (0..23).

`manifest.json` records the split, the settings, the row counts and the checksums of the world
files the tables come from, so an edges folder older than its world is detected on loading.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from nextsong import schema
from nextsong.errors import ConfigError, DataError
from nextsong.split import (
    TRAIN,
    TemporalSplit,
    check_split_settings,
    make_split,
    period_events,
    read_split_config,
)
from nextsong.store import read_manifest, read_table, staged_dir, write_manifest, write_table
from nextsong.world import WORLD_KIND, World, check_sources, load_world, source_checksums

log = logging.getLogger(__name__)

EDGES_KIND = "edges"
EDGES_DIR = "edges"
SOURCE_TABLES = ("genres", "artists", "songs", "users", "events")

_I32 = pa.int32()
EDGE_TABLES: dict[str, pa.Schema] = {
    "user_song": pa.schema(
        [
            ("user_id", _I32),
            ("song_id", _I32),
            ("plays", _I32),
            ("completed", _I32),
            ("skips", _I32),
            ("last_play_ts", schema.TIMESTAMP),
        ]
    ),
    "song_artist": pa.schema([("song_id", _I32), ("artist_id", _I32)]),
    "song_genre": pa.schema([("song_id", _I32), ("genre_id", _I32)]),
    "artist_genre": pa.schema(
        [("artist_id", _I32), ("genre_id", _I32), ("songs", _I32), ("primary", pa.bool_())]
    ),
    "song_song": pa.schema(
        [
            ("song_id", _I32),
            ("next_song_id", _I32),
            ("transitions", _I32),
            ("transitions_unskipped", _I32),
        ]
    ),
    "user_genre": pa.schema(
        [("user_id", _I32), ("genre_id", _I32), ("plays", _I32), ("skips", _I32)]
    ),
    "user_hour": pa.schema(
        [("user_id", _I32), ("hour", pa.int8()), ("plays", _I32), ("sessions", _I32)]
    ),
}


@dataclass(frozen=True)
class EdgesConfig:
    """How plays are counted. `completed_share`: the share of a song's duration that must be
    played (without a skip) for the play to count as completed; real players stop a little early
    (crossfade), hence below 1."""

    completed_share: float = 0.9

    def __post_init__(self) -> None:
        share = self.completed_share
        if not isinstance(share, int | float) or not math.isfinite(share) or not 0 < share <= 1:
            raise ConfigError(f"completed_share must be in (0, 1], got {share!r}")


@dataclass(frozen=True)
class Edges:
    """The edge tables of a world's training window, checked against their manifest."""

    path: Path
    manifest: dict[str, Any]
    tables: dict[str, pa.Table]

    @property
    def split(self) -> dict[str, Any]:
        return self.manifest["split"]


def compute_edges(
    events: pl.LazyFrame,
    songs: pl.DataFrame,
    artists: pl.DataFrame,
    split: TemporalSplit,
    config: EdgesConfig | None = None,
) -> dict[str, pl.DataFrame]:
    """Every edge table (as in `EDGE_TABLES`) from the events of the training sessions.

    Raises DataError if no session starts in the training window.
    """
    config = config or EdgesConfig()
    catalog = songs.lazy().select("song_id", "artist_id", "genre_id", "duration_ms")
    # genre_id -1 is an unknown genre (a world imported without --genres): no genre edge.
    known_genre = pl.col("genre_id") >= 0
    train = period_events(events, split, TRAIN).join(
        catalog.select("song_id", "genre_id", "duration_ms"), on="song_id", how="left"
    )
    queries = {
        "user_song": _user_song(train, config),
        "song_artist": catalog.select("song_id", "artist_id"),
        "song_genre": catalog.select("song_id", "genre_id").filter(known_genre),
        "artist_genre": _artist_genre(catalog, artists.lazy()).filter(known_genre),
        "song_song": _song_song(train),
        "user_genre": _counts(
            train.filter(known_genre), "genre_id", plays=pl.len(), skips=pl.col("skipped").sum()
        ),
        "user_hour": _user_hour(train),
    }
    frames = pl.collect_all(queries.values())  # one pass: the shared training subplan once
    tables = {}
    for name, frame in zip(queries, frames, strict=True):
        columns = EDGE_TABLES[name].names
        tables[name] = frame.select(columns).sort(columns[:2]).cast(_polars_types(frame))
    if tables["user_song"].is_empty():
        raise DataError(
            f"no session starts before {split.train_end.isoformat()}: the training window is empty"
        )
    return tables


def build_edges(folder: Path | str, config: EdgesConfig | None = None) -> Edges:
    """Computes the edge tables of the world in `folder` and writes them to `folder/edges/`,
    with the split settings `nextsong split` saved in `folder` (the defaults if none)."""
    folder = Path(folder)
    config = config or EdgesConfig()
    world = load_world(folder)
    split = make_split(world, read_split_config(folder))
    frames = compute_edges(
        pl.from_arrow(world.events).lazy(),
        pl.from_arrow(world.songs),
        pl.from_arrow(world.artists),
        split,
        config,
    )
    tables = {
        name: frames[name].to_arrow().cast(table_schema)
        for name, table_schema in EDGE_TABLES.items()
    }
    with staged_dir(folder / EDGES_DIR, force=True) as stage:
        for name, table in tables.items():
            write_table(stage / f"{name}.parquet", table)
        manifest = write_manifest(
            stage,
            EDGES_KIND,
            split=split.to_dict(),
            config=dataclasses.asdict(config),
            sources=source_checksums(world.manifest, SOURCE_TABLES),
            counts={name: table.num_rows for name, table in tables.items()},
            train=_train_counts(frames),
        )
    log.info("edges of %s: %s", folder, manifest["counts"])
    return Edges(path=folder / EDGES_DIR, manifest=manifest, tables=tables)


def load_edges(folder: Path | str, world: World | None = None) -> Edges:
    """Opens `folder/edges/`, checking its files, its tables, and that it matches its world
    (the world's current files and the split settings saved in `folder`)."""
    folder = Path(folder)
    path = folder / EDGES_DIR
    if not path.is_dir():
        raise DataError(f"no edges in {folder}: run `nextsong edges --data {folder}` first")
    manifest = read_manifest(path, EDGES_KIND)
    world_manifest = world.manifest if world else read_manifest(folder, WORLD_KIND, verify=False)
    check_sources(manifest.get("sources", {}), world_manifest, f"the edges in {path}")
    check_split_settings(manifest.get("split", {}), folder, f"the edges in {path}")
    tables = {
        name: schema.check_table(read_table(path / f"{name}.parquet"), table_schema, name)
        for name, table_schema in EDGE_TABLES.items()
    }
    return Edges(path=path, manifest=manifest, tables=tables)


# -- queries -----------------------------------------------------------------------------------
def _user_song(train: pl.LazyFrame, config: EdgesConfig) -> pl.LazyFrame:
    completed = ~pl.col("skipped") & (
        pl.col("ms_played") >= config.completed_share * pl.col("duration_ms")
    )
    return _counts(
        train,
        "song_id",
        plays=pl.len(),
        completed=completed.sum(),
        skips=pl.col("skipped").sum(),
        last_play_ts=pl.col("ts").max(),
    )


def _artist_genre(catalog: pl.LazyFrame, artists: pl.LazyFrame) -> pl.LazyFrame:
    by_songs = catalog.group_by("artist_id", "genre_id").agg(pl.len().alias("songs"))
    primary = artists.select("artist_id", "genre_id", pl.lit(True).alias("primary"))
    return by_songs.join(
        primary, on=["artist_id", "genre_id"], how="full", coalesce=True
    ).with_columns(pl.col("songs").fill_null(0), pl.col("primary").fill_null(False))


def _song_song(train: pl.LazyFrame) -> pl.LazyFrame:
    """Pairs of consecutive positions of a session; events are sorted to find them."""
    ordered = train.select("session_id", "position", "song_id", "skipped").sort(
        "session_id", "position"
    )
    following = (pl.col("session_id").shift(-1) == pl.col("session_id")) & (
        pl.col("position").shift(-1) == pl.col("position") + 1
    )
    pairs = ordered.select(
        "song_id",
        pl.col("song_id").shift(-1).alias("next_song_id"),
        (~pl.col("skipped") & ~pl.col("skipped").shift(-1)).alias("unskipped"),
        following.alias("following"),
    ).filter(pl.col("following"))
    return pairs.group_by("song_id", "next_song_id").agg(
        pl.len().alias("transitions"), pl.col("unskipped").sum().alias("transitions_unskipped")
    )


def _user_hour(train: pl.LazyFrame) -> pl.LazyFrame:
    plays = train.group_by("user_id", pl.col("ts").dt.hour().alias("hour")).agg(
        pl.len().alias("plays")
    )
    starts = (
        train.group_by("session_id")
        .agg(pl.col("user_id").first(), pl.col("ts").min().dt.hour().alias("hour"))
        .group_by("user_id", "hour")
        .agg(pl.len().alias("sessions"))
    )
    return plays.join(starts, on=["user_id", "hour"], how="full", coalesce=True).with_columns(
        pl.col("plays").fill_null(0), pl.col("sessions").fill_null(0)
    )


def _counts(train: pl.LazyFrame, key: str, **aggregations: pl.Expr) -> pl.LazyFrame:
    """Per (user, key) aggregates of the training events."""
    return train.group_by("user_id", key).agg(
        expression.alias(name) for name, expression in aggregations.items()
    )


def _polars_types(frame: pl.DataFrame) -> dict[str, pl.DataType]:
    """Counts come out of Polars as UInt32: the tables store them as Int32."""
    unsigned = (pl.UInt32, pl.UInt64, pl.Int64)
    return {name: pl.Int32 for name, dtype in frame.schema.items() if dtype in unsigned}


def _train_counts(frames: dict[str, pl.DataFrame]) -> dict[str, int]:
    user_song, user_hour = frames["user_song"], frames["user_hour"]
    return {
        "events": int(user_song["plays"].sum()),
        "sessions": int(user_hour["sessions"].sum()),
        "users": user_song["user_id"].n_unique(),
        "songs": user_song["song_id"].n_unique(),
    }
