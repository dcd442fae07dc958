"""Edge tables of the training window: counted right, from training only, checked on loading."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from nextsong.errors import DataError
from nextsong.graph.edges import EDGE_TABLES, EdgesConfig, build_edges, load_edges
from nextsong.split import TRAIN, SplitConfig, make_split, split_events
from nextsong.store import read_json
from nextsong.world import load_world


def _rows(table: pa.Table, *columns: str) -> dict[tuple, tuple]:
    """{(first two columns): (the other `columns`)} of an edge table."""
    keys = list(zip(*(table.column(n).to_pylist() for n in table.column_names[:2]), strict=True))
    if not columns:
        return dict.fromkeys(keys, ())
    values = zip(*(table.column(name).to_pylist() for name in columns), strict=True)
    return dict(zip(keys, values, strict=True))


def test_edges_match_a_plain_count_of_the_training_events(tiny_graph_world: Path) -> None:
    world = load_world(tiny_graph_world)
    edges = load_edges(tiny_graph_world)
    train = split_events(world, make_split(world))[TRAIN]
    duration = dict(enumerate(world.songs.column("duration_ms").to_pylist()))
    genre = dict(enumerate(world.songs.column("genre_id").to_pylist()))

    plays, completed, skips, last = Counter(), Counter(), Counter(), {}
    follows, follows_unskipped = Counter(), Counter()
    genre_plays, hour_plays, hour_sessions = Counter(), Counter(), Counter()
    previous = None
    for row in train.iter_rows(named=True):
        pair = (row["user_id"], row["song_id"])
        plays[pair] += 1
        skips[pair] += row["skipped"]
        completed[pair] += not row["skipped"] and row["ms_played"] >= 0.9 * duration[pair[1]]
        last[pair] = max(last.get(pair, row["ts"]), row["ts"])
        genre_plays[row["user_id"], genre[row["song_id"]]] += 1
        hour_plays[row["user_id"], row["ts"].hour] += 1
        if row["position"] == 0:
            hour_sessions[row["user_id"], row["ts"].hour] += 1
        elif previous["session_id"] == row["session_id"]:  # rows are in session order
            step = (previous["song_id"], row["song_id"])
            follows[step] += 1
            follows_unskipped[step] += not (previous["skipped"] or row["skipped"])
        previous = row

    user_song = _rows(edges.tables["user_song"], "plays", "completed", "skips", "last_play_ts")
    assert user_song == {k: (plays[k], completed[k], skips[k], last[k]) for k in plays}
    assert sum(completed.values()) < sum(plays.values()) - sum(skips.values()) + 1
    song_song = _rows(edges.tables["song_song"], "transitions", "transitions_unskipped")
    assert song_song == {k: (follows[k], follows_unskipped[k]) for k in follows}
    assert _rows(edges.tables["user_genre"], "plays") == {k: (v,) for k, v in genre_plays.items()}
    user_hour = _rows(edges.tables["user_hour"], "plays", "sessions")
    assert user_hour == {k: (hour_plays[k], hour_sessions[k]) for k in hour_plays}
    assert edges.manifest["train"]["events"] == train.height


def test_catalog_edges_cover_every_song_and_artist(tiny_graph_world: Path) -> None:
    world = load_world(tiny_graph_world)
    tables = load_edges(tiny_graph_world).tables
    songs = world.songs
    assert tables["song_artist"].column("artist_id").equals(songs.column("artist_id"))
    assert tables["song_genre"].column("genre_id").equals(songs.column("genre_id"))
    artist_genre = tables["artist_genre"]
    primary = artist_genre.filter(artist_genre["primary"])
    assert _rows(primary) == {
        (a, g): () for a, g in enumerate(world.artists.column("genre_id").to_pylist())
    }
    by_songs = Counter(
        zip(
            songs.column("artist_id").to_pylist(), songs.column("genre_id").to_pylist(), strict=True
        )
    )
    assert {k: v for k, (v,) in _rows(artist_genre, "songs").items() if v} == by_songs


def test_edges_are_deterministic_and_record_their_sources(tiny_graph_world: Path, tmp_path) -> None:
    import shutil

    again = tmp_path / "again"
    shutil.copytree(tiny_graph_world, again)
    build_edges(again)
    for name in EDGE_TABLES:
        first = (tiny_graph_world / "edges" / f"{name}.parquet").read_bytes()
        assert (again / "edges" / f"{name}.parquet").read_bytes() == first, name

    manifest = read_json(tiny_graph_world / "edges" / "manifest.json")
    world_files = read_json(tiny_graph_world / "manifest.json")["files"]
    assert manifest["sources"]["events.parquet"] == world_files["events.parquet"]
    assert manifest["split"]["train_end"] == "2026-01-19T00:00:00+00:00"
    assert manifest["config"] == {"completed_share": 0.9}
    assert manifest["counts"] == {
        name: load_edges(again).tables[name].num_rows for name in EDGE_TABLES
    }


def test_edges_take_the_split_from_split_json(edit_world, run_cli) -> None:
    world = edit_world()
    assert run_cli("split", "--data", world, "--test-days", 3, "--validation-days", 4).code == 0
    result = run_cli("edges", "--data", world)
    assert result.code == 0, result.stderr
    manifest = read_json(world / "edges" / "manifest.json")
    assert manifest["split"]["train_end"] == "2026-01-26T00:00:00+00:00"
    assert manifest["train"]["events"] == read_json(world / "split.json")["counts"][TRAIN]["events"]
    assert f"{manifest['counts']['user_song']:,}" in result.stdout

    # Asking for another split afterwards makes these edges stale.
    assert run_cli("split", "--data", world).code == 0
    with pytest.raises(DataError, match=r"was built with split .* now asks for"):
        load_edges(world)


def test_edges_of_a_changed_world_are_detected(edit_world) -> None:
    world = edit_world()
    build_edges(world)
    edited = edit_world(lambda events: events.slice(0, events.num_rows - 1), name="edited")
    (world / "edges").rename(edited / "edges")
    with pytest.raises(DataError, match=r"events.parquet has changed since it was built"):
        load_edges(edited)


def _retype(events: pa.Table) -> pa.Table:
    index = events.schema.get_field_index("ms_played")
    return events.set_column(index, "ms_played", events["ms_played"].cast(pa.int64()))


def _all_late(events: pa.Table) -> pa.Table:
    late = pc.greater_equal(events["ts"], pa.scalar(1_769_000_000_000_000, events["ts"].type))
    return events.filter(late)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing songs", "songs.parquet is listed in the manifest but missing"),
        ("edited events", "events.parquet does not match its manifest checksum"),
        ("wrong type", "table 'events' column 'ms_played' has type int64, expected int32"),
        ("empty training", "the training window is empty"),
        ("no world", "no world at"),
    ],
)
def test_bad_worlds_are_one_line_errors(edit_world, run_cli, breakage: str, message: str) -> None:
    if breakage == "missing songs":
        world = edit_world()
        (world / "songs.parquet").unlink()
    elif breakage == "edited events":
        world = edit_world()
        events = world / "events.parquet"
        events.write_bytes(events.read_bytes()[:-100] + bytes(100))
    elif breakage == "wrong type":
        world = edit_world(_retype)
    elif breakage == "empty training":
        world = edit_world(_all_late)  # the sessions left start after 2026-01-21
    else:
        world = edit_world() / "nowhere"
    result = run_cli("edges", "--data", world)
    assert result.code == 2
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert not (world / "edges").exists()


def test_edges_config_is_validated() -> None:
    with pytest.raises(ValueError, match="completed_share must be in"):
        EdgesConfig(completed_share=1.5)
    assert SplitConfig().to_dict() == {"test_days": 7.0, "validation_days": 7.0}


def test_invalid_split_json_is_a_one_line_error(edit_world, run_cli) -> None:
    world = edit_world()
    (world / "split.json").write_text('{"kind": "split", "split": {"test_days": -1}}')
    result = run_cli("edges", "--data", world)
    assert result.code == 2
    assert f"{world / 'split.json'} holds invalid split settings" in result.stderr
    assert result.stderr.count("\n") == 1
