"""The synthetic world: its contract, determinism, planted patterns, shards and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nextsong.config import world_config
from nextsong.errors import ConfigError
from nextsong.schema import SONGS, USERS
from nextsong.store import read_json
from nextsong.synth.generate import generate_shard, generate_world, merge_shards
from nextsong.world import load_world


def _files(world: Path) -> dict[str, bytes]:
    return {
        path.relative_to(world).as_posix(): path.read_bytes()
        for path in sorted(world.rglob("*"))
        if path.is_file()
    }


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nextsong", *args], capture_output=True, text=True, check=False
    )


def test_world_matches_the_contract(tiny_world: Path) -> None:
    world = load_world(tiny_world)  # checks manifest, checksums, schemas and dense ids
    counts = world.manifest["counts"]
    assert counts["genres"] == world.genres.num_rows == 35
    assert counts["events"] == world.events.num_rows
    assert world.songs.schema.names == SONGS.names
    assert world.users.schema.names == USERS.names  # nothing hidden among the public tables
    for name in ("listeners", "favourites", "sessions", "follows", "songs", "genres"):
        assert (tiny_world / "truth" / f"{name}.parquet").exists()

    events = pl.from_arrow(world.events)
    assert events.equals(events.sort("user_id", "session_id", "position"))
    positions = events.group_by("session_id").agg(pl.col("position").sort())
    assert all(p.to_list() == list(range(len(p))) for p in positions["position"].head(200))
    repeats = events.filter(
        pl.col("song_id") == pl.col("song_id").shift(1).over("session_id")
    ).height
    assert repeats == 0


def test_plays_respect_durations_skips_and_releases(tiny_world: Path) -> None:
    world = load_world(tiny_world)
    events = pl.from_arrow(world.events).join(pl.from_arrow(world.songs), on="song_id")
    assert (events["ms_played"] <= events["duration_ms"]).all()
    completed = events.filter(~pl.col("skipped"))
    assert (completed["ms_played"] == completed["duration_ms"]).all()
    assert events.filter(pl.col("skipped"))["ms_played"].max() < 40_000
    assert (events["ts"] >= events["release_ts"]).all()  # nobody plays an unreleased song
    new_songs = pl.from_arrow(world.songs).filter(pl.col("release_ts") > world.period_start)
    assert new_songs.height > 0  # some songs are released during the period
    assert 0.05 < events["skipped"].mean() < 0.5


def test_same_seed_same_bytes_other_seed_other_world(tiny_world: Path, tmp_path: Path) -> None:
    generate_world(world_config("tiny", seed=7), tmp_path / "again")
    assert _files(tmp_path / "again") == _files(tiny_world)
    generate_world(world_config("tiny", seed=8), tmp_path / "other")
    other = _files(tmp_path / "other")
    assert other["events.parquet"] != _files(tiny_world)["events.parquet"]


def test_planted_patterns_are_in_the_data(tiny_world: Path) -> None:
    """Mornings calmer than evenings; plays concentrated on each listener's top genres."""
    world = load_world(tiny_world)
    events = (
        pl.from_arrow(world.events)
        .join(pl.from_arrow(world.songs).select("song_id", "energy", "genre_id"), on="song_id")
        .with_columns(pl.col("ts").dt.hour().alias("hour"))
    )
    morning = events.filter(pl.col("hour").is_between(6, 10))["energy"].mean()
    evening = events.filter(pl.col("hour").is_between(18, 23))["energy"].mean()
    assert morning < evening - 0.02

    top_three = (
        events.group_by("user_id", "genre_id")
        .len()
        .sort("user_id", "len", descending=[False, True])
        .group_by("user_id")
        .agg((pl.col("len").head(3).sum() / pl.col("len").sum()).alias("share"))
    )
    assert top_three["share"].mean() > 0.6  # 3 of 35 genres would be 0.09 without taste

    # A -> B habits: the most frequent pair is far above what independent draws would give.
    pairs = events.with_columns(pl.col("song_id").shift(-1).over("session_id").alias("next"))
    pair_counts = pairs.drop_nulls("next").group_by("song_id", "next").len()
    top = pair_counts.sort("len", descending=True).row(0, named=True)
    plays = events.group_by("song_id").len()
    share_a = plays.filter(pl.col("song_id") == top["song_id"])["len"][0] / events.height
    share_b = plays.filter(pl.col("song_id") == top["next"])["len"][0] / events.height
    assert top["len"] > 20 * share_a * share_b * events.height


def test_shards_generated_apart_equal_the_whole(tmp_path: Path) -> None:
    config = world_config("tiny", n_users=90, n_shards=3)
    generate_world(config, tmp_path / "whole")
    for shard in (2, 0, 1):  # any order, as separate machines would finish
        generate_shard(config, tmp_path / "apart", shard)
    with pytest.raises(ConfigError, match="out of range"):
        generate_shard(config, tmp_path / "apart", 3)
    merge_shards(config, tmp_path / "apart")
    whole, apart = _files(tmp_path / "whole"), _files(tmp_path / "apart")
    apart = {name: data for name, data in apart.items() if not name.startswith(".shards")}
    assert whole == apart
    assert sorted(p.name for p in (tmp_path / "whole" / "events").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert (
        load_world(tmp_path / "whole").events.num_rows
        == read_json(tmp_path / "whole" / "manifest.json")["counts"]["events"]
    )


def test_interrupted_generation_leaves_no_world(tmp_path: Path, monkeypatch) -> None:
    from nextsong.synth import generate as synth

    def fail(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "_finish", fail)
    with pytest.raises(KeyboardInterrupt):
        generate_world(world_config("tiny", n_users=20), tmp_path / "world")
    assert not (tmp_path / "world").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "huge"], "unknown preset 'huge'; valid presets: tiny, small, default, large"),
        (["--preset", "tiny", "--users", "0"], "n_users must be a positive integer, got 0"),
        (["--preset", "tiny", "--songs", "-5"], "n_songs must be a positive integer, got -5"),
        (["--preset", "tiny", "--shard", "5/3"], "--shard 5/3: i must be in 0..N-1"),
        (
            ["--preset", "tiny", "--shard", "0/4"],
            "--shard 0/4: preset 'tiny' has 1 shards, so N must be 1",
        ),
    ],
)
def test_bad_options_give_one_line_and_exit_2(tmp_path: Path, args, message) -> None:
    result = _run("generate", "--out", str(tmp_path / "w"), *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {message}"]
    assert not (tmp_path / "w").exists()


def test_non_empty_out_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "w"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = _run("generate", "--preset", "tiny", "--users", "20", "--out", str(out))
    assert result.returncode == 2
    assert "is not empty; pass --force" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"  # nothing lost

    result = _run("generate", "--preset", "tiny", "--users", "20", "--out", str(out), "--force")
    assert result.returncode == 0, result.stderr
    assert not (out / "keep.txt").exists()
    assert load_world(out).users.num_rows == 20


def test_unwritable_out_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = _run("generate", "--preset", "tiny", "--out", str(blocker / "w"))
    assert result.returncode == 2
    assert "not writable" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_generated_energy_and_durations_are_plausible(tiny_world: Path) -> None:
    songs = pl.read_parquet(tiny_world / "songs.parquet")
    assert songs["energy"].is_between(0, 1).all()
    median_minutes = songs["duration_ms"].median() / 60_000
    assert 3.0 < median_minutes < 4.0
    assert np.unique(songs["title"].to_numpy()).size > songs.height * 0.3
