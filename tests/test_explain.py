"""Reasons: each value recomputed by hand from the training events or edge tables of a tiny world;
reasons that do not hold are left out; the index is memory-mapped and rebuilt when stale."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nextsong.errors import ConfigError
from nextsong.explain import (
    ARRAYS_FILE,
    EXPLAIN_DIR,
    Catalog,
    ExplainConfig,
    Explainer,
    index_is_current,
    map_safetensors,
)
from nextsong.split import TRAIN, make_split, split_events
from nextsong.world import load_world

USER = 0


@pytest.fixture(scope="module")
def world(tiny_graph_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny world with edges, so the index can be written into it."""
    path = tmp_path_factory.mktemp("explain") / "world"
    shutil.copytree(tiny_graph_world, path)
    return path


@pytest.fixture(scope="module")
def explainer(world: Path) -> Explainer:
    return Explainer.open(world)


@pytest.fixture(scope="module")
def train(world: Path) -> pl.DataFrame:
    """Training events with each song's artist, genre and energy."""
    loaded = load_world(world)
    songs = pl.from_arrow(loaded.songs).select("song_id", "artist_id", "genre_id", "energy")
    return split_events(loaded, make_split(loaded))[TRAIN].join(songs, on="song_id")


def _reason(explainer: Explainer, song: int, kind: str, session=(), hour=12):
    found = [r for r in explainer.explain(USER, list(session), hour, [song])[0] if r.kind == kind]
    return found[0] if found else None


def test_genre_is_the_share_of_completed_plays_in_the_genre(
    explainer: Explainer, world: Path, train: pl.DataFrame
) -> None:
    # By hand: completed plays are unskipped plays of at least 90% of the song.
    durations = pl.from_arrow(load_world(world).songs).select("song_id", "duration_ms")
    mine = train.filter(pl.col("user_id") == USER).join(durations, on="song_id")
    completed = mine.filter(
        ~pl.col("skipped") & (pl.col("ms_played") >= 0.9 * pl.col("duration_ms"))
    )
    shares = completed.group_by("genre_id").len().with_columns(pl.col("len") / completed.height)
    share = dict(zip(shares["genre_id"].to_list(), shares["len"].to_list(), strict=True))
    genre_of = explainer.catalog.song_genre
    top_genre = max(share, key=share.get)
    song = int(np.flatnonzero(genre_of == top_genre)[0])
    reason = _reason(explainer, song, "genre")
    assert reason is not None and reason.value == pytest.approx(share[top_genre], abs=1e-4)
    assert f"of {completed.height})" in reason.text

    # A genre the listener never completed a song of is no reason.
    absent = next(g for g in range(len(explainer.catalog.genre_name)) if g not in share)
    assert _reason(explainer, int(np.flatnonzero(genre_of == absent)[0]), "genre") is None


def test_artist_counts_the_listeners_songs_by_that_artist(
    explainer: Explainer, train: pl.DataFrame
) -> None:
    mine = train.filter(pl.col("user_id") == USER)
    per_artist = mine.group_by("artist_id").agg(pl.col("song_id").n_unique(), pl.len())
    row = per_artist.sort("song_id", descending=True).row(0, named=True)
    artist = row["artist_id"]
    song = int(np.flatnonzero(explainer.catalog.song_artist == artist)[-1])
    reason = _reason(explainer, song, "artist")
    assert reason is not None and reason.value == row["song_id"]
    assert f"({row['len']} play" in reason.text

    never = set(range(len(explainer.catalog.artist_name))) - set(per_artist["artist_id"])
    song = int(np.flatnonzero(explainer.catalog.song_artist == min(never))[0])
    assert _reason(explainer, song, "artist") is None


def test_follows_is_the_share_of_what_came_after_a_session_song(
    explainer: Explainer, train: pl.DataFrame
) -> None:
    # By hand: consecutive positions of a training session.
    pairs = train.sort("session_id", "position").select(
        "song_id",
        pl.col("song_id").shift(-1).alias("next"),
        (pl.col("session_id").shift(-1) == pl.col("session_id")).alias("same"),
    )
    pairs = pairs.filter(pl.col("same")).group_by("song_id", "next").len()
    previous = pairs.group_by("song_id").agg(pl.col("len").sum()).sort("len").row(-1)[0]
    after = pairs.filter(pl.col("song_id") == previous).sort(
        "len", "next", descending=[True, False]
    )
    song, times = after.row(0)[1], after.row(0)[2]
    reason = _reason(explainer, song, "follows", session=[previous])
    assert reason is not None
    assert reason.value == pytest.approx(times / after["len"].sum(), abs=1e-4)
    assert explainer.catalog.title[previous] in reason.text

    # A song that never came right after any song of the session is no reason.
    never = int(np.setdiff1d(np.arange(explainer.catalog.n_songs), after["next"].to_numpy())[0])
    assert _reason(explainer, never, "follows", session=[previous]) is None


def test_similar_users_matches_a_brute_force_cosine(
    explainer: Explainer, train: pl.DataFrame
) -> None:
    # By hand: a dense listener x song matrix of songs played at least once without a skip.
    liked = (
        train.group_by("user_id", "song_id")
        .agg(pl.len(), pl.col("skipped").sum())
        .filter(pl.col("len") > pl.col("skipped"))
    )
    n_users, n_songs = explainer.n_users, explainer.catalog.n_songs
    matrix = np.zeros((n_users, n_songs))
    matrix[liked["user_id"].to_numpy(), liked["song_id"].to_numpy()] = 1
    sizes = matrix.sum(axis=1)
    common = matrix @ matrix[USER]
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(common > 0, common / np.sqrt(sizes * sizes[USER]), 0)
    cosine[USER] = 0
    order = np.lexsort((np.arange(n_users), -common, -cosine))
    expected = [u for u in order if cosine[u] > 0][: explainer.config.neighbours]
    assert explainer.neighbours(USER).tolist() == expected

    hits = matrix[expected].sum(axis=0)  # (S,) neighbours who liked each song
    song = int(np.argmax(hits))
    reason = _reason(explainer, song, "similar_users")
    assert reason is not None and reason.value == pytest.approx(hits[song] / len(expected))
    lonely = int(np.flatnonzero(hits == 0)[0])
    assert _reason(explainer, lonely, "similar_users") is None


def test_time_of_day_compares_energy_with_the_listeners_plays_at_that_hour(
    explainer: Explainer, train: pl.DataFrame
) -> None:
    unskipped = train.filter((pl.col("user_id") == USER) & ~pl.col("skipped"))
    hours = unskipped["ts"].dt.hour().to_numpy()
    hour = int(np.bincount(hours, minlength=24).argmax())
    window = {(hour - 1) % 24, hour, (hour + 1) % 24}
    energies = unskipped["energy"].to_numpy()[np.isin(hours, list(window))]
    mean = float(energies.mean())
    energy = explainer.catalog.energy
    close = int(np.argmin(np.abs(energy - mean)))
    reason = _reason(explainer, close, "time_of_day", hour=hour)
    assert reason is not None
    assert reason.value == pytest.approx(1 - abs(float(energy[close]) - mean), abs=1e-4)
    assert f"over {len(energies)} unskipped plays" in reason.text
    far = int(np.argmax(np.abs(energy - mean)))
    assert _reason(explainer, far, "time_of_day", hour=hour) is None


def test_no_time_of_day_without_an_energy_signal(explainer: Explainer) -> None:
    flat = Explainer(explainer.arrays, {**explainer.record, "energy_sd": 0.0}, explainer.catalog)
    songs = list(range(200))
    hour = int(np.argmax(explainer.arrays["user_hour.energy_plays"][USER]))  # their busiest hour
    kinds = [r.kind for rs in explainer.explain(USER, [], hour, songs) for r in rs]
    assert "time_of_day" in kinds
    assert "time_of_day" not in [r.kind for rs in flat.explain(USER, [], hour, songs) for r in rs]


def test_reasons_come_in_a_fixed_order_with_json_fields(explainer: Explainer) -> None:
    order = ["follows", "artist", "similar_users", "genre", "time_of_day"]
    for reasons in explainer.explain(USER, [1, 2, 3], 20, list(range(300))):
        kinds = [reason.kind for reason in reasons]
        assert kinds == sorted(kinds, key=order.index)
        for reason in reasons:
            assert set(reason.to_json()) == {"kind", "text", "value"}
            assert isinstance(reason.value, float) and reason.text


def test_the_index_is_memory_mapped_and_rebuilt_when_stale(
    world: Path, explainer: Explainer
) -> None:
    from safetensors.numpy import load_file

    path = world / EXPLAIN_DIR / ARRAYS_FILE
    mapped, loaded = map_safetensors(path), load_file(str(path))
    assert set(mapped) == set(loaded)
    for name, array in loaded.items():
        assert isinstance(mapped[name], np.memmap) or array.size == 0
        np.testing.assert_array_equal(mapped[name], array)
    assert index_is_current(world)
    edges_manifest = world / "edges" / "manifest.json"
    original = edges_manifest.read_text()
    try:
        edges_manifest.write_text(original.replace('"kind"', '"note": "edited",\n  "kind"', 1))
        assert not index_is_current(world)
    finally:
        edges_manifest.write_text(original)
    assert index_is_current(world)


def test_catalog_and_config_checks(world: Path) -> None:
    catalog = Catalog.load(world)
    assert catalog.n_songs == load_world(world).songs.num_rows
    with pytest.raises(ConfigError, match="neighbours"):
        ExplainConfig(neighbours=0)
    with pytest.raises(ConfigError, match="genre_min_share"):
        dataclasses.replace(ExplainConfig(), genre_min_share=1.5)
