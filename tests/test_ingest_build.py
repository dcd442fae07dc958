"""Rules shared by every importer: sessions, duplicates, genres, determinism, the command."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from nextsong.errors import ConfigError, DataError
from nextsong.ingest import FORMATS, ImportConfig, import_world, read_plays
from nextsong.ingest.build import FORMAT_NAMES, build_tables, read_genres
from nextsong.ingest.common import BadRecord, PlayLog, parse_time

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
SPOTIFY = [FIXTURES / "spotify" / "alice", FIXTURES / "spotify" / "bob"]
MINUTE_US = 60 * 1_000_000
T0 = int(datetime(2024, 5, 1, 8, tzinfo=UTC).timestamp()) * 1_000_000


def _plays(*rows: tuple[Any, ...]) -> pl.DataFrame:
    """A PlayLog frame from (user, start minute, ms_played, artist, title) rows."""
    log = PlayLog()
    for user, minute, played, artist, title in rows:
        log.add(user, T0 + minute * MINUTE_US, played, None, None, None, artist, title)
    return log.frame()


def _files(world: Path) -> dict[str, bytes]:
    return {p.relative_to(world).as_posix(): p.read_bytes() for p in sorted(world.rglob("*"))}


def test_a_session_ends_only_when_nothing_has_played_for_the_gap() -> None:
    plays = _plays(
        ("u", 0, 60 * 60_000, "A", "long mix"),  # plays 08:00-09:00
        ("u", 10, 3 * 60_000, "B", "overlapping"),  # on another device, ends 08:13
        ("u", 65, 3 * 60_000, "C", "five minutes after the mix"),
        ("u", 100, 3 * 60_000, "D", "32 minutes after the last end"),
    )
    built = build_tables(plays, ImportConfig("spotify"))
    events = pl.from_arrow(built.tables["events"])
    assert events["session_id"].to_list() == [0, 0, 0, 1]
    assert events["position"].to_list() == [0, 1, 2, 0]
    loose = build_tables(plays, ImportConfig("spotify", session_gap_minutes=40))
    assert loose.sessions == 1


def test_session_ids_are_user_times_a_million_plus_rank() -> None:
    plays = _plays(("ann", 0, 1000, "A", "x"), ("ben", 0, 1000, "A", "x"), ("ben", 99, 1, "A", "y"))
    events = pl.from_arrow(build_tables(plays, ImportConfig("spotify")).tables["events"])
    assert events["session_id"].to_list() == [0, 1_000_000, 1_000_001]


def test_duplicates_keep_the_longest_play_and_are_counted() -> None:
    plays = _plays(("u", 0, 5_000, "A", "x"), ("u", 0, 200_000, "A", "X "), ("u", 5, 1, "A", "y"))
    built = build_tables(plays, ImportConfig("spotify"))
    events = pl.from_arrow(built.tables["events"])
    assert built.duplicates == 1
    assert events["ms_played"].to_list() == [200_000, 1]
    assert events["skipped"].to_list() == [False, True]


def test_names_are_compared_normalised() -> None:
    plays = _plays(("u", 0, 1, "Sigur Rós", "Hoppípolla"), ("u", 9, 1, "sigur  RÓS", "HOPPÍPOLLA"))
    built = build_tables(plays, ImportConfig("spotify"))
    assert built.tables["songs"].num_rows == 1
    assert built.tables["artists"].column("name").to_pylist() == ["Sigur Rós"]  # a tie: smallest


def test_genres_file_adds_genres_by_normalised_artist(tmp_path: Path) -> None:
    path = tmp_path / "genres.csv"
    path.write_text("massive attack,trip hop\nMassive Attack,rock\nSigur Rós,post-rock\n")
    genre_of = read_genres(path)
    plays = _plays(("u", 0, 1, "Massive Attack", "Angel"), ("u", 9, 1, "Portishead", "Roads"))
    built = build_tables(plays, ImportConfig("spotify"), genre_of)
    assert built.tables["genres"].to_pylist() == [{"genre_id": 0, "name": "trip hop"}]
    artists = built.tables["artists"].to_pylist()
    assert [(a["name"], a["genre_id"]) for a in artists] == [
        ("Massive Attack", 0),  # the first row for an artist wins
        ("Portishead", -1),  # not in the file
    ]
    assert built.tables["songs"].column("genre_id").to_pylist() == [0, -1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("artist,genre\nBjörk\n", "line 2: expected 'artist,genre'"),
        ("Björk,art pop,extra\n", "line 1: expected 'artist,genre'"),
        ("artist,genre\n", "lists no artist,genre rows"),
        (",rock\n", "line 1: expected 'artist,genre'"),
    ],
)
def test_a_bad_genres_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "genres.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_genres(path)


def test_same_input_gives_the_same_bytes_whatever_the_order(tmp_path: Path) -> None:
    import_world(SPOTIFY, tmp_path / "a", ImportConfig("spotify"))
    import_world(SPOTIFY, tmp_path / "b", ImportConfig("spotify"))
    import_world(SPOTIFY[::-1], tmp_path / "c", ImportConfig("spotify"))
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    tables = {
        name: data for name, data in _files(tmp_path / "a").items() if name != "manifest.json"
    }
    assert tables == {k: v for k, v in _files(tmp_path / "c").items() if k != "manifest.json"}


def test_never_a_partial_world(tmp_path: Path) -> None:
    out = tmp_path / "w"
    import_world(SPOTIFY, out, ImportConfig("spotify"))
    before = _files(out)
    broken = tmp_path / "broken" / "Streaming_History_Audio_2024.json"
    broken.parent.mkdir()
    broken.write_text('[{"ts": "2024-')
    with pytest.raises(DataError):
        import_world([broken.parent], out, ImportConfig("spotify"), force=True)
    assert _files(out) == before  # the old world is intact
    with pytest.raises(ConfigError, match="is not empty"):
        import_world(SPOTIFY, out, ImportConfig("spotify"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "w"]  # nothing staged left


@pytest.mark.parametrize(
    "options",
    [{"session_gap_minutes": 0}, {"session_gap_minutes": -5}, {"session_gap_minutes": 1e9}],
)
def test_bad_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="--session-gap"):
        ImportConfig("spotify", **options)


def test_unknown_format_and_missing_input_are_refused(tmp_path: Path) -> None:
    assert tuple(FORMATS) == FORMAT_NAMES  # every format ImportConfig accepts has a reader
    with pytest.raises(ConfigError, match="unknown format 'itunes'; valid formats: spotify"):
        ImportConfig("itunes")
    with pytest.raises(ConfigError, match="unknown format 'itunes'; valid formats: spotify"):
        read_plays("itunes", SPOTIFY)
    with pytest.raises(ConfigError, match="does not exist"):
        import_world([tmp_path / "nowhere"], tmp_path / "w", ImportConfig("spotify"))


@pytest.mark.parametrize(
    ("text", "expected", "zoned"),
    [
        ("1709539260", datetime(2024, 3, 4, 8, 1, tzinfo=UTC), True),
        ("2024-03-04T08:01:00.250Z", datetime(2024, 3, 4, 8, 1, 0, 250_000, tzinfo=UTC), True),
        ("2024-03-04 08:01", datetime(2024, 3, 4, 8, 1, tzinfo=UTC), False),
        ("4 March 2024 08:01:30", datetime(2024, 3, 4, 8, 1, 30, tzinfo=UTC), False),
    ],
)
def test_parse_time(text: str, expected: datetime, zoned: bool) -> None:
    moment, found_zone = parse_time(text, "ts")
    assert moment == int(expected.timestamp() * 1_000_000)
    assert found_zone is zoned


@pytest.mark.parametrize(
    "text", ["", "0", "31 Feb 2024 08:00", "2024-13-01", "4102444800", "tomorrow", "1e9"]
)
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(BadRecord, match=r"^ts "):
        parse_time(text, "ts")


def test_command_prints_counts_and_writes_the_world(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    genres = FIXTURES / "genres.csv"
    result = run_cli("import", "spotify", *SPOTIFY, "--out", tmp_path / "w", "--genres", genres)
    assert result.code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "2 listeners, 9 songs, 4 artists, 3 genres, 5 sessions, 15 plays" in text
    assert "from 25 records in 4 files" in text
    left_out = "3 podcast, 1 audiobook, 1 video, 1 private, 2 unidentified, 1 invalid, 1 duplicate"
    assert f"left out: {left_out}" in text
    assert "record 13: ms_played is -5" in text
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["import"]["config"]["genres_file"] == "genres.csv"


def test_command_bad_input_is_one_line_and_exit_2(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    bad = tmp_path / "in" / "Streaming_History_Audio_2024.json"
    bad.parent.mkdir()
    bad.write_text("[{]")
    result = run_cli("import", "spotify", bad.parent, "--out", tmp_path / "w")
    assert result.code == 2
    assert result.stderr.startswith(f"error: {bad} is not valid JSON")
    assert result.stderr.count("\n") == 1
    result = run_cli("import", "spotify", *SPOTIFY, "--out", tmp_path / "w", "--session-gap", "0")
    assert (result.code, result.stderr.split(":")[0]) == (2, "error")
