"""The graph: built from training only, saved and loaded identical, tied to its world."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from nextsong import schema
from nextsong.config import world_config
from nextsong.errors import DataError
from nextsong.graph.build import FEATURES, RELATIONS, build_graph
from nextsong.graph.edges import EDGE_TABLES, build_edges, load_edges
from nextsong.graph.io import load_graph, save_graph
from nextsong.split import TEST, TRAIN, make_split, split_events
from nextsong.synth.generate import generate_world
from nextsong.world import load_world

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


def _assert_same_graph(one, other) -> None:
    assert one.node_types == other.node_types
    assert one.edge_types == other.edge_types
    for (key, store), (other_key, other_store) in zip(
        one.node_items() + one.edge_items(), other.node_items() + other.edge_items(), strict=True
    ):
        assert key == other_key and set(store.keys()) == set(other_store.keys()), key
        for name in store:
            if torch.is_tensor(store[name]):
                assert store[name].dtype == other_store[name].dtype, (key, name)
                assert torch.equal(store[name], other_store[name]), (key, name)
            else:
                assert store[name] == other_store[name], (key, name)


def _plant(world_path: Path, when: datetime) -> tuple[pa.Table, tuple[int, int, int]]:
    """Two plays in a new session of listener 0 at `when`: a song the listener never played in
    training, then another. Returns the new events table and (user, first song, second song)."""
    world = load_world(world_path)
    events = world.events
    train = split_events(world, make_split(world))[TRAIN]
    user = 0
    played = set(train.filter(train["user_id"] == user)["song_id"].to_list())
    popular = train["song_id"].value_counts(sort=True)["song_id"].to_list()
    first, second = [song for song in popular if song not in played][:2]
    start = int(when.timestamp() * 1_000_000)
    planted = pa.table(
        {
            "user_id": pa.array([user, user], pa.int32()),
            "session_id": pa.array([user * 1_000_000 + 999_999] * 2, pa.int64()),
            "position": pa.array([0, 1], pa.int32()),
            "song_id": pa.array([first, second], pa.int32()),
            "ts": pa.array([start, start + 200_000_000], schema.TIMESTAMP),
            "ms_played": pa.array([180_000, 180_000], pa.int32()),
            "skipped": pa.array([False, False]),
        },
        schema=schema.EVENTS,
    )
    table = pa.concat_tables([events, planted]).sort_by(
        [("user_id", "ascending"), ("session_id", "ascending"), ("position", "ascending")]
    )
    return table, (user, first, second)


def _build(path: Path):
    build_edges(path)
    graph, _ = build_graph(path)
    return load_edges(path), graph


def test_an_event_after_the_training_cutoff_changes_nothing(tiny_graph_world, edit_world) -> None:
    split = make_split(load_world(tiny_graph_world))
    original_edges, original_graph = load_edges(tiny_graph_world), load_graph(tiny_graph_world)[0]

    after = split.train_end + timedelta(hours=1)  # a validation session
    planted_after, (user, first, second) = _plant(tiny_graph_world, after)
    edges, graph = _build(edit_world(lambda _events: planted_after, name="after"))
    for name in EDGE_TABLES:
        assert edges.tables[name].equals(original_edges.tables[name]), name
    _assert_same_graph(graph, original_graph)

    # The control: the same two plays a day before the cut-off are counted everywhere.
    before = split.train_end - timedelta(days=1)
    planted_before, _ = _plant(tiny_graph_world, before)
    edges, graph = _build(edit_world(lambda _events: planted_before, name="before"))
    listened = graph["user", "listened", "song"].edge_index
    assert ((listened[0] == user) & (listened[1] == first)).any()
    follows = graph["song", "followed_by", "song"].edge_index
    old_follows = original_graph["song", "followed_by", "song"].edge_index
    pair = ((follows[0] == first) & (follows[1] == second)).sum()
    old_pair = ((old_follows[0] == first) & (old_follows[1] == second)).sum()
    assert pair == 1 or pair == old_pair  # a new edge, or a heavier one
    song_plays = FEATURES["song"].index("log_plays")
    assert graph["song"].x[first, song_plays] > original_graph["song"].x[first, song_plays]
    user_plays = FEATURES["user"].index("log_plays")
    assert graph["user"].x[user, user_plays] > original_graph["user"].x[user, user_plays]


def test_a_song_released_in_the_test_period_is_placed_but_never_played(tiny_graph_world) -> None:
    world = load_world(tiny_graph_world)
    split = make_split(world)
    graph, _ = load_graph(tiny_graph_world)
    release = world.songs.column("release_ts").to_pylist()
    new = [song for song, moment in enumerate(release) if moment >= split.validation_end]
    assert new, "the tiny world has releases during its test period"
    test_songs = set(split_events(world, split)[TEST]["song_id"].to_list())
    assert test_songs & set(new)  # listeners do play them, in the test period

    artists = world.songs.column("artist_id").to_pylist()
    genres = world.songs.column("genre_id").to_pylist()
    by = graph["song", "by", "artist"].edge_index
    within = graph["song", "in", "genre"].edge_index
    listened = graph["song", "rev_listened", "user"].edge_index
    follows = graph["song", "followed_by", "song"].edge_index
    features = dict(zip(FEATURES["song"], graph["song"].x.T, strict=True))
    for song in new:
        assert by[1][by[0] == song].tolist() == [artists[song]]
        assert within[1][within[0] == song].tolist() == [genres[song]]
        assert not (listened[0] == song).any()
        assert not ((follows[0] == song) | (follows[1] == song)).any()
        for name in ("log_plays", "log_listeners", "log_age_days", "skip_share"):
            assert features[name][song] == 0, name


def test_saved_graph_loads_back_identical(tiny_graph_world) -> None:
    built, metadata = build_graph(tiny_graph_world)
    loaded, loaded_metadata = load_graph(tiny_graph_world)
    _assert_same_graph(built, loaded)
    assert loaded_metadata == metadata
    assert len(loaded.edge_types) == 2 * len(RELATIONS)  # every relation and its reverse
    rev = loaded["song", "rev_followed_by", "song"].edge_index
    assert torch.equal(rev, loaded["song", "followed_by", "song"].edge_index.flip(0))


def test_features_come_from_training_counts(tiny_graph_world) -> None:
    world = load_world(tiny_graph_world)
    train = split_events(world, make_split(world))[TRAIN]
    graph, metadata = load_graph(tiny_graph_world)
    for info in metadata["node_types"]:
        x = graph[info["node_type"]].x
        assert x.shape == (info["count"], len(FEATURES[info["node_type"]]))
        assert torch.isfinite(x).all()

    song_plays = torch.expm1(graph["song"].x[:, FEATURES["song"].index("log_plays")])
    counts = np.bincount(train["song_id"].to_numpy(), minlength=world.songs.num_rows)
    assert np.allclose(song_plays.numpy(), counts, rtol=1e-5)
    user = graph["user"].x
    hours = user[:, FEATURES["user"].index("hour_00_share") :]
    active = user[:, FEATURES["user"].index("log_plays")] > 0
    assert torch.allclose(hours[active].sum(1), torch.ones(int(active.sum())))
    assert (hours[~active] == 0).all()
    assert int(active.sum()) == train["user_id"].n_unique()


def test_a_graph_from_another_world_is_refused(tiny_graph_world, tmp_path, run_cli) -> None:
    other = tmp_path / "other"
    generate_world(world_config("tiny", seed=8), other)
    for artifact in ("edges", "graph"):
        shutil.copytree(tiny_graph_world / artifact, other / artifact)
    with pytest.raises(
        DataError, match=r"graph in .* does not match its world: \w+.parquet has changed"
    ):
        load_graph(other)
    result = run_cli("graph", "--data", other)
    assert result.code == 2
    assert "edges in" in result.stderr and "rebuild it" in result.stderr
    assert result.stderr.count("\n") == 1


def test_graph_command_prints_a_summary_and_draws_a_listener(
    tiny_graph_world, edit_world, run_cli
) -> None:
    world = edit_world()
    shutil.copytree(tiny_graph_world / "edges", world / "edges")
    result = run_cli("graph", "--data", world, "--draw-user", 0)
    assert result.code == 0, result.stderr
    listened = load_graph(world)[0]["user", "listened", "song"].edge_index.shape[1]
    assert "user -listened-> song" in result.stdout and f"{listened:,}" in result.stdout
    picture = world / "graph" / "user_0.png"
    assert str(picture) in result.stdout.replace("\n", "")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 20_000
    # Rebuilding gives the same bytes.
    tensors = (world / "graph" / "tensors.safetensors").read_bytes()
    assert tensors == (tiny_graph_world / "graph" / "tensors.safetensors").read_bytes()

    result = run_cli("graph", "--data", world, "--draw-user", 300)
    assert result.code == 2 and "--draw-user 300: valid listeners are 0..299" in result.stderr


def test_graph_without_edges_says_what_to_run(edit_world, run_cli) -> None:
    world = edit_world()
    result = run_cli("graph", "--data", world)
    assert result.code == 2
    assert f"no edges in {world}: run `nextsong edges --data {world}` first" in result.stderr


def test_graph_library_stays_unsaved_until_asked(tiny_graph_world, tmp_path) -> None:
    """save_graph writes where it is told, replacing an older graph only when complete."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_graph_world, copy)
    graph, metadata = build_graph(copy)
    (copy / "graph" / "stale.txt").write_text("left from an older graph")
    save_graph(graph, metadata, copy)
    assert not (copy / "graph" / "stale.txt").exists()
    _assert_same_graph(load_graph(copy)[0], graph)
