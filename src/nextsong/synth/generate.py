"""Writes a synthetic world: the public tables, the hidden `truth/`, and the manifest.

Random streams are split by purpose with numpy's SeedSequence: one for the catalog, one per shard
of listeners, so a shard's bytes do not depend on how many processes produced the world. A world
with one shard holds one Parquet file per table; a sharded world (preset `large`) holds a folder
of parts for users, events and the per-listener truth, one part per shard, and each shard can be
generated on its own (`--shard i/N`) then merged (`--merge`), which writes the manifest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nextsong import __version__, schema
from nextsong.config import WorldConfig
from nextsong.errors import ConfigError, DataError
from nextsong.store import read_json, staged_dir, write_json, write_manifest, write_table
from nextsong.synth.catalog import FAMILIES, Catalog, build_catalog
from nextsong.synth.listeners import Listeners, build_listeners
from nextsong.synth.sessions import Events, Sessions, plan_sessions, simulate
from nextsong.world import WORLD_KIND

log = logging.getLogger(__name__)
SHARD_MARKERS = ".shards"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ShardSummary:
    shard: int
    users: int
    sessions: int
    events: int


def catalog_rng(config: WorldConfig) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([config.seed, 0]))


def shard_rng(config: WorldConfig, shard: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([config.seed, 1, shard]))


def generate_world(
    config: WorldConfig, out: Path, force: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Generates the whole world into `out` (written aside, then renamed); returns the manifest."""
    progress = progress or (lambda _message: None)
    with staged_dir(out, force=force) as stage:
        progress("catalog")
        catalog = build_catalog(config, catalog_rng(config))
        summaries = []
        for shard in range(config.n_shards):
            progress(f"listeners {shard + 1}/{config.n_shards}")
            summaries.append(_write_shard(config, catalog, stage, shard))
        progress("manifest")
        manifest = _finish(config, catalog, stage, summaries)
    return manifest


def generate_shard(config: WorldConfig, out: Path, shard: int) -> ShardSummary:
    """Generates one shard's parts into `out` (shared by all shards) and marks it done."""
    if not 0 <= shard < config.n_shards:
        raise ConfigError(f"shard {shard} is out of range 0..{config.n_shards - 1}")
    out.mkdir(parents=True, exist_ok=True)
    if (out / "manifest.json").exists():
        raise ConfigError(f"--out {out} already holds a finished world")
    summary = _write_shard(config, build_catalog(config, catalog_rng(config)), out, shard)
    write_json(
        out / SHARD_MARKERS / f"{shard:05d}.json",
        {"config": config.to_dict(), **summary.__dict__},
    )
    return summary


def merge_shards(config: WorldConfig, out: Path) -> dict[str, Any]:
    """Checks that every shard is done for this config, writes the catalog and the manifest."""
    summaries = []
    for shard in range(config.n_shards):
        marker = out / SHARD_MARKERS / f"{shard:05d}.json"
        if not marker.exists():
            raise DataError(f"shard {shard}/{config.n_shards} is not finished in {out}")
        record = read_json(marker)
        if record.get("config") != json.loads(json.dumps(config.to_dict())):
            raise DataError(f"shard {shard} in {out} was generated with other settings")
        summaries.append(ShardSummary(**{k: record[k] for k in ShardSummary.__annotations__}))
    return _finish(config, build_catalog(config, catalog_rng(config)), out, summaries)


def _write_shard(config: WorldConfig, catalog: Catalog, folder: Path, shard: int) -> ShardSummary:
    rng = shard_rng(config, shard)
    users = config.shard_users(shard)
    listeners = build_listeners(config, catalog, users, rng)
    sessions = plan_sessions(config, listeners, rng)
    events = simulate(config, catalog, listeners, sessions, rng)
    log.info("shard %d: %d users, %d events", shard, len(users), len(events.ts_us))

    def part(name: str) -> Path:
        if config.n_shards == 1:
            return folder / f"{name}.parquet"
        return folder / name / f"part-{shard:05d}.parquet"

    write_table(part("users"), _users_table(config, listeners))
    write_table(part("events"), _events_table(events))
    write_table(part("truth/listeners"), _listeners_truth(config, listeners))
    write_table(part("truth/favourites"), _favourites_truth(listeners))
    write_table(part("truth/sessions"), _sessions_truth(listeners, sessions))
    return ShardSummary(shard, len(users), len(sessions.session_id), len(events.ts_us))


def _finish(
    config: WorldConfig, catalog: Catalog, folder: Path, summaries: list[ShardSummary]
) -> dict[str, Any]:
    for name, table in _catalog_tables(catalog).items():
        write_table(folder / f"{name}.parquet", table)
    write_json(folder / "truth" / "params.json", config.to_dict())
    start = config.start_datetime
    end = datetime.fromtimestamp(config.end_us / 1e6, tz=UTC)
    return write_manifest(
        folder,
        WORLD_KIND,
        generator=f"nextsong {__version__}",
        preset=config.preset,
        seed=config.seed,
        period={"start": start.isoformat(), "end": end.isoformat()},
        counts={
            "genres": len(catalog.genre_names),
            "artists": catalog.n_artists,
            "songs": catalog.n_songs,
            "users": sum(s.users for s in summaries),
            "sessions": sum(s.sessions for s in summaries),
            "events": sum(s.events for s in summaries),
        },
        shards=config.n_shards,
    )


# -- tables ------------------------------------------------------------------------------------
def _ts(values_us: np.ndarray) -> pa.Array:
    return pa.array(values_us.astype(np.int64), type=schema.TIMESTAMP)


def _vectors(matrix: np.ndarray) -> pa.Array:
    flat = pa.array(matrix.astype(np.float64).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])


def _catalog_tables(catalog: Catalog) -> dict[str, pa.Table]:
    n_genres, n_artists, n_songs = len(catalog.genre_names), catalog.n_artists, catalog.n_songs
    m = catalog.follow_next.shape[1]
    return {
        "genres": pa.table(
            [pa.array(np.arange(n_genres), pa.int32()), pa.array(catalog.genre_names)],
            schema=schema.GENRES,
        ),
        "artists": pa.table(
            [
                pa.array(np.arange(n_artists), pa.int32()),
                pa.array(catalog.artist_names),
                pa.array(catalog.artist_genre, pa.int32()),
            ],
            schema=schema.ARTISTS,
        ),
        "songs": pa.table(
            [
                pa.array(np.arange(n_songs), pa.int32()),
                pa.array(catalog.song_titles),
                pa.array(catalog.song_artist, pa.int32()),
                pa.array(catalog.song_genre, pa.int32()),
                pa.array(catalog.song_duration_ms, pa.int32()),
                pa.array(catalog.song_energy, pa.float32()),
                _ts(catalog.song_release_us),
            ],
            schema=schema.SONGS,
        ),
        "truth/genres": pa.table(
            {
                "genre_id": pa.array(np.arange(n_genres), pa.int32()),
                "family": pa.array([FAMILIES[f] for f in catalog.genre_family]),
                "base_energy": pa.array(catalog.genre_energy),
                "latent": _vectors(catalog.genre_latent),
            }
        ),
        "truth/artists": pa.table(
            {
                "artist_id": pa.array(np.arange(n_artists), pa.int32()),
                "popularity": pa.array(catalog.artist_popularity),
            }
        ),
        "truth/songs": pa.table(
            {
                "song_id": pa.array(np.arange(n_songs), pa.int32()),
                "popularity": pa.array(catalog.song_popularity),
                "latent": _vectors(catalog.song_latent),
            }
        ),
        "truth/follows": pa.table(
            {
                "song_id": pa.array(np.repeat(np.arange(n_songs), m), pa.int32()),
                "rank": pa.array(np.tile(np.arange(m), n_songs), pa.int16()),
                "next_song_id": pa.array(catalog.follow_next.ravel(), pa.int32()),
                "weight": pa.array(catalog.follow_weight.ravel()),
            }
        ),
    }


def _users_table(config: WorldConfig, listeners: Listeners) -> pa.Table:
    ids = listeners.user_ids
    # Sign-up dates before the period: what a real service knows about an account.
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 2, int(ids[0])]))
    signup = config.start_us - rng.integers(1, 5 * 365, len(ids)) * 86_400 * 1_000_000
    return pa.table(
        [pa.array(ids, pa.int32()), pa.array([f"listener{i:07d}" for i in ids]), _ts(signup)],
        schema=schema.USERS,
    )


def _events_table(events: Events) -> pa.Table:
    return pa.table(
        [
            pa.array(events.user_id, pa.int32()),
            pa.array(events.session_id, pa.int64()),
            pa.array(events.position, pa.int32()),
            pa.array(events.song_id, pa.int32()),
            _ts(events.ts_us),
            pa.array(events.ms_played, pa.int32()),
            pa.array(events.skipped, pa.bool_()),
        ],
        schema=schema.EVENTS,
    )


def _listeners_truth(config: WorldConfig, listeners: Listeners) -> pa.Table:
    kind_names = np.array([kind.name for kind in config.kinds])
    return pa.table(
        {
            "user_id": pa.array(listeners.user_ids, pa.int32()),
            "kind": pa.array(kind_names[listeners.kind]),
            "activity": pa.array(listeners.activity),
            "taste": _vectors(listeners.taste),
            "rhythm": _vectors(listeners.rhythm),
            "energy_base": pa.array(listeners.energy_base),
            "energy_amplitude": pa.array(listeners.energy_amplitude),
            "energy_peak_hour": pa.array(listeners.energy_peak_hour),
        }
    )


def _favourites_truth(listeners: Listeners) -> pa.Table:
    counts = np.diff(listeners.favourite_offsets)
    return pa.table(
        {
            "user_id": pa.array(np.repeat(listeners.user_ids, counts), pa.int32()),
            "artist_id": pa.array(listeners.favourite_artists, pa.int32()),
        }
    )


def _sessions_truth(listeners: Listeners, sessions: Sessions) -> pa.Table:
    return pa.table(
        {
            "session_id": pa.array(sessions.session_id, pa.int64()),
            "user_id": pa.array(listeners.user_ids[sessions.listener], pa.int32()),
            "start_ts": _ts(sessions.start_us),
            "hour": pa.array(sessions.hour, pa.int8()),
            "mood": pa.array(sessions.mood),
            "target_energy": pa.array(sessions.target_energy),
        }
    )
