"""Figures that describe a synthetic world: how much listening, how it is spread, and whether
the planted patterns show (skips by listener kind, calmer mornings, concentrated tastes,
popularity concentration). `nextsong generate` prints them; they read `truth/` for the listener
kinds, so they are for describing a world, never for a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from nextsong.schema import table_path


def world_statistics(world: Path) -> dict[str, Any]:
    world = Path(world)
    events = pl.scan_parquet(_parquet(table_path(world, "events")))
    songs = pl.scan_parquet(world / "songs.parquet").select("song_id", "energy", "genre_id")
    kinds = pl.scan_parquet(_parquet(table_path(world / "truth", "listeners"))).select(
        "user_id", "kind"
    )
    plays = events.join(songs, on="song_id").with_columns(pl.col("ts").dt.hour().alias("hour"))

    totals = plays.select(
        pl.len().alias("events"),
        pl.col("session_id").n_unique().alias("sessions"),
        pl.col("skipped").mean().alias("skip_rate"),
        pl.col("energy").filter(pl.col("hour").is_between(6, 9)).mean().alias("energy_6_10h"),
        pl.col("energy").filter(pl.col("hour").is_between(18, 22)).mean().alias("energy_18_23h"),
    ).collect()
    by_kind = (
        plays.join(kinds, on="user_id")
        .group_by("kind")
        .agg(pl.col("skipped").mean().alias("skip_rate"), pl.len().alias("events"))
        .sort("kind")
        .collect()
    )
    top_genres = (
        plays.group_by("user_id", "genre_id")
        .len()
        .sort("user_id", "len", descending=[False, True])
        .group_by("user_id")
        .agg((pl.col("len").head(3).sum() / pl.col("len").sum()).alias("share"))
        .select(pl.col("share").mean())
        .collect()
        .item()
    )
    song_plays = plays.group_by("song_id").len().sort("len", descending=True).collect()
    n_songs = pl.scan_parquet(world / "songs.parquet").select(pl.len()).collect().item()
    top_share = song_plays.head(max(1, n_songs // 100))["len"].sum() / totals["events"][0]
    return {
        **totals.row(0, named=True),
        "skip_rate_by_kind": {
            row["kind"]: row["skip_rate"] for row in by_kind.iter_rows(named=True)
        },
        "events_by_kind": {row["kind"]: row["events"] for row in by_kind.iter_rows(named=True)},
        "top3_genre_share": top_genres,
        "top1pct_songs_play_share": top_share,
    }


def _parquet(path: Path) -> Path | str:
    """A table file, or the glob of its parts when it was written in shards."""
    return path if path.is_file() else str(path / "*.parquet")
