"""Last.fm scrobble CSVs as a world: with and without a header, time formats, bad rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from nextsong.errors import ConfigError, DataError
from nextsong.ingest import ImportConfig, import_world, read_plays
from nextsong.world import load_world

FIXTURES = Path(__file__).parent / "fixtures" / "ingest" / "lastfm"
ERIN, FRANK = FIXTURES / "erin", FIXTURES / "frank"


def _import(out: Path, *paths: Path, **options: Any) -> dict[str, Any]:
    return import_world(list(paths), out, ImportConfig("lastfm", **options))


def _starts(path: Path) -> list[datetime]:
    frame = read_plays("lastfm", [path], user="me").frame()
    return [datetime.fromtimestamp(us / 1e6, tz=UTC) for us in frame["start_us"]]


def test_fixture_counts_every_record(tmp_path: Path) -> None:
    manifest = _import(tmp_path / "w", ERIN, FRANK)
    summary = manifest["import"]
    assert (summary["records"], summary["plays"]) == (13, 11)
    assert {k: v for k, v in summary["left_out"].items() if v} == {"invalid": 1, "duplicate": 1}
    assert summary["invalid_examples"] == [
        "scrobbles.csv line 8: timestamp '01 Jan 1970 00:00' is outside 2000..2099"
    ]
    assert manifest["counts"] == {
        "genres": 0,
        "artists": 5,
        "songs": 10,
        "users": 2,
        "events": 11,
        "sessions": 4,
    }


def test_headerless_rows_and_quoted_commas(tmp_path: Path) -> None:
    _import(tmp_path / "w", ERIN)
    world = load_world(tmp_path / "w")
    assert "Crosby, Stills & Nash" in world.artists.column("name").to_pylist()
    assert _starts(ERIN / "scrobbles.csv")[0] == datetime(2024, 3, 4, 8, 1, tzinfo=UTC)


def test_a_header_finds_columns_by_name_and_prefers_unix_seconds(tmp_path: Path) -> None:
    _import(tmp_path / "w", FRANK)
    world = load_world(tmp_path / "w")
    assert world.users.column("name").to_pylist() == ["frank"]
    # uts 1709712330 is 08:05:30; utc_time says only "08:05".
    starts = pl.from_arrow(world.events)["ts"].to_list()
    assert starts[1] == datetime(2024, 3, 6, 8, 5, 30, tzinfo=UTC)


def test_scrobbles_are_never_skips_and_last_the_default_song_length(tmp_path: Path) -> None:
    _import(tmp_path / "w", ERIN)
    events = pl.from_arrow(load_world(tmp_path / "w").events)
    assert not events["skipped"].any()
    assert set(events["ms_played"]) == {210_000}


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("1709539260", datetime(2024, 3, 4, 8, 1, tzinfo=UTC)),
        ("04 Mar 2024 08:01", datetime(2024, 3, 4, 8, 1, tzinfo=UTC)),
        ('"04 Mar 2024, 08:01"', datetime(2024, 3, 4, 8, 1, tzinfo=UTC)),
        ("2024-03-04T08:01:00Z", datetime(2024, 3, 4, 8, 1, tzinfo=UTC)),
        ("2024-03-04T09:01:00+01:00", datetime(2024, 3, 4, 8, 1, tzinfo=UTC)),
        ("2024-03-04 08:01", datetime(2024, 3, 4, 8, 1, tzinfo=UTC)),
    ],
)
def test_time_formats(tmp_path: Path, cell: str, expected: datetime) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"Portishead,Dummy,Roads,{cell}\n")
    assert _starts(path) == [expected]


def test_a_file_mixing_zoned_and_local_dates_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(
        "Portishead,Dummy,Roads,2024-03-04T08:01:00+01:00\n"
        "Portishead,Dummy,Glory Box,2024-03-04 08:06\n"
    )
    with pytest.raises(DataError, match=r"mixes times .*\(line 1\) and without one \(line 2\)"):
        read_plays("lastfm", [path], user="me")


def test_bad_rows_are_counted_with_the_reason(tmp_path: Path) -> None:
    good = [f"Portishead,Dummy,Roads,{1709539260 + 300 * i}" for i in range(5)]
    bad = [
        "Portishead,Dummy,Roads",
        "Portishead,Dummy,,1709539260",
        "Portishead,Dummy,Roads,soon",
        "Portishead,Dummy,Roads,1709539260,extra",
    ]
    path = tmp_path / "s.csv"
    path.write_text("\n".join(good + bad) + "\n")
    plays = read_plays("lastfm", [path], user="me")
    assert len(plays) == 5
    assert plays.invalid_examples == [
        "s.csv line 6: has 3 fields, expected 4: artist, album, track, timestamp",
        "s.csv line 7: has no artist or no track name",
        "s.csv line 8: timestamp is 'soon' (str), not a date and time",
        "s.csv line 9: has 5 fields, expected 4: artist, album, track, timestamp",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"ts": "2024-03-04T08:01:00Z"}]', "is it a lastfm export"),
        ("", "is empty"),
        ('"Portishead,Dummy,Roads,1709539260\n', "1 of 1 records are invalid"),
        ("uts,artist,track\n", "no plays of songs in .*: 0 records read"),
    ],
)
def test_a_bad_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "me" / "s.csv"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        _import(tmp_path / "w", path.parent)
    assert not (tmp_path / "w").exists()


def test_a_file_needs_a_listener(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pass --user NAME"):
        _import(tmp_path / "w", ERIN / "scrobbles.csv")


def test_binary_input_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"\xff\xfe\x00A\x00r\x00t")
    with pytest.raises(DataError, match="is not UTF-8 text"):
        read_plays("lastfm", [path], user="me")
