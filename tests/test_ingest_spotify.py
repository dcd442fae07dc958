"""Spotify exports (extended and basic) as a world: counts, rules, privacy and bad files."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from nextsong.errors import ConfigError, DataError
from nextsong.ingest import ImportConfig, import_world, read_plays
from nextsong.world import load_world

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
ALICE, BOB = FIXTURES / "spotify" / "alice", FIXTURES / "spotify" / "bob"
EXTENDED = ALICE / "Streaming_History_Audio_2024.json"


def _import(out: Path, *paths: Path, **options: Any) -> dict[str, Any]:
    return import_world(list(paths), out, ImportConfig("spotify", **options))


def _events(world: Path) -> pl.DataFrame:
    """Events with the song title and listener name, for readable assertions."""
    loaded = load_world(world)
    songs = pl.from_arrow(loaded.songs).select("song_id", "title")
    users = pl.from_arrow(loaded.users).select("user_id", listener="name")
    return pl.from_arrow(loaded.events).join(songs, on="song_id").join(users, on="user_id")


def _play(**fields: Any) -> dict[str, Any]:
    """One extended-history record, as Spotify writes it, with `fields` changed."""
    record = {
        "ts": "2024-05-01T10:03:30Z",
        "platform": "ios",
        "ms_played": 210000,
        "conn_country": "NO",
        "ip_addr": "192.0.2.77",
        "master_metadata_track_name": "Svefn-g-englar",
        "master_metadata_album_artist_name": "Sigur Rós",
        "master_metadata_album_album_name": "Ágætis byrjun",
        "spotify_track_uri": "spotify:track:6eTGxxQxiTFExKfovbyrYj",
        "episode_name": None,
        "episode_show_name": None,
        "spotify_episode_uri": None,
        "reason_start": "clickrow",
        "reason_end": "trackdone",
        "shuffle": False,
        "skipped": None,
        "offline": False,
        "offline_timestamp": None,
        "incognito_mode": False,
    }
    return record | fields


def _write(path: Path, records: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return path


def test_fixture_counts_every_record(tmp_path: Path) -> None:
    manifest = _import(tmp_path / "w", ALICE, BOB, genres_file=str(FIXTURES / "genres.csv"))
    summary = manifest["import"]
    assert summary["records"] == 25
    assert summary["plays"] == 15
    assert summary["left_out"] == {
        "podcast": 3,  # one extended episode, two basic podcast-file plays
        "audiobook": 1,
        "video": 1,
        "private": 1,
        "unidentified": 2,  # a record with no metadata, an "Unknown Artist" basic play
        "invalid": 1,  # ms_played -5
        "duplicate": 1,  # the repeated "Unfinished Sympathy" record
    }
    assert summary["records"] == summary["plays"] + sum(summary["left_out"].values())
    assert summary["invalid_examples"] == [
        "Streaming_History_Audio_2024.json record 13: ms_played is -5, expected 0..43200000 "
        "(12 hours)"
    ]
    assert manifest["counts"] == {
        "genres": 3,
        "artists": 4,
        "songs": 9,
        "users": 2,
        "events": 15,
        "sessions": 5,
    }
    assert manifest["period"] == {
        "start": "2024-03-04T00:00:00+00:00",
        "end": "2024-03-07T00:00:00+00:00",
    }
    assert not (tmp_path / "w" / "truth").exists()


def test_world_loads_and_follows_the_event_contract(tmp_path: Path) -> None:
    _import(tmp_path / "w", ALICE, BOB)
    world = load_world(tmp_path / "w")  # schemas, checksums, dense ids
    events = pl.from_arrow(world.events)
    assert events.equals(events.sort("user_id", "session_id", "position"))
    positions = events.group_by("session_id").agg(pl.col("position").sort())
    assert all(p.to_list() == list(range(len(p))) for p in positions["position"])
    assert world.genres.num_rows == 0
    assert set(world.artists.column("genre_id").to_pylist()) == {-1}
    assert set(world.songs.column("energy").to_pylist()) == {0.5}


def test_a_play_starts_ms_played_before_its_end_time(tmp_path: Path) -> None:
    _import(tmp_path / "w", ALICE)
    first = _events(tmp_path / "w").row(0, named=True)
    # ts 08:03:42 is when playback ended; 330 s were played.
    assert first["title"] == "Teardrop"
    assert first["ts"] == datetime(2024, 3, 4, 7, 58, 12, tzinfo=UTC)
    assert first["ms_played"] == 330_000


def test_sessions_split_at_the_inactivity_gap(tmp_path: Path) -> None:
    _import(tmp_path / "w", ALICE)
    titles = _events(tmp_path / "w").group_by("session_id", maintain_order=True).agg("title")
    assert titles["title"].to_list() == [
        ["Teardrop", "Glory Box", "Roads", "Unfinished Sympathy"],
        # 29 min of audiobook between Hyperballad and Army of Me: not a gap of 30.
        ["Teardrop", "Hyperballad", "Army of Me"],
        ["Hyperballad", "Angel", "Glory Box"],
    ]
    _import(tmp_path / "short", ALICE, session_gap_minutes=20)
    assert _events(tmp_path / "short")["session_id"].n_unique() == 4


def test_skip_is_the_flag_else_less_than_30_seconds(tmp_path: Path) -> None:
    _import(tmp_path / "w", ALICE, BOB)
    events = _events(tmp_path / "w")
    skipped = events.filter("skipped").select("listener", "title", "ms_played").rows()
    assert sorted(skipped) == [
        ("alice", "Hyperballad", 20_000),  # flag null, 20 s played: the rule
        ("alice", "Roads", 12_000),  # flag true
        ("bob", "Airbag", 9_000),  # basic export: the rule
    ]
    # Flag null but 312 s played: not a skip.
    sympathy = events.filter(pl.col("title") == "Unfinished Sympathy")
    assert sympathy["skipped"].to_list() == [False]


def test_durations_come_from_complete_plays_else_the_default(tmp_path: Path) -> None:
    _import(tmp_path / "w", ALICE)
    songs = pl.from_arrow(load_world(tmp_path / "w").songs)
    duration = dict(zip(songs["title"], songs["duration_ms"], strict=True))
    assert duration["Glory Box"] == 306_000  # the 259 s play ended by "endplay" does not count
    assert duration["Teardrop"] == 330_000  # longest of two "trackdone" plays
    assert duration["Roads"] == 210_000  # only a skip: the documented default


def test_songs_without_uri_join_the_uri_of_the_same_name(tmp_path: Path) -> None:
    _import(tmp_path / "w", ALICE, BOB)
    events = _events(tmp_path / "w")
    teardrop = events.filter(pl.col("title") == "Teardrop")
    assert teardrop["listener"].unique().sort().to_list() == ["alice", "bob"]
    assert teardrop["song_id"].n_unique() == 1
    # Bob's "massive  attack" is the same artist as Alice's "Massive Attack".
    artists = pl.from_arrow(load_world(tmp_path / "w").artists)["name"].to_list()
    assert artists == ["Björk", "Massive Attack", "Portishead", "Radiohead"]


def test_personal_fields_are_never_written(tmp_path: Path) -> None:
    _import(tmp_path / "w", ALICE, BOB)
    world = load_world(tmp_path / "w")
    written = json.dumps(world.manifest)
    for table in (world.genres, world.artists, world.songs, world.users, world.events):
        written += json.dumps(table.to_pylist(), default=str)
    for private in ("203.0.113.42", "198.51.100.7", "android", "osx", "SE"):
        assert private not in written


def test_user_option_names_one_listener_for_every_input(tmp_path: Path) -> None:
    manifest = _import(tmp_path / "w", ALICE, BOB, user="sam")
    assert manifest["counts"]["users"] == 1
    assert pl.from_arrow(load_world(tmp_path / "w").users)["name"].to_list() == ["sam"]


def test_a_file_needs_a_listener(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pass --user NAME"):
        _import(tmp_path / "w", EXTENDED)
    assert not (tmp_path / "w").exists()
    assert _import(tmp_path / "w", EXTENDED, user="alice")["counts"]["events"] == 10


def test_old_endsong_name_and_any_file_name_are_read_by_content(tmp_path: Path) -> None:
    shutil.copy(EXTENDED, tmp_path / "endsong_0.json")
    shutil.copy(BOB / "StreamingHistory_music_0.json", tmp_path / "my export.json")
    plays = read_plays("spotify", [tmp_path / "endsong_0.json", tmp_path / "my export.json"], "x")
    assert len(plays) == 11 + 5  # plays read, before duplicates are dropped


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"ts": "2024-05-01T10:03:30Z", "ms_pla', "not valid JSON"),
        ('{"ts": "2024-05-01T10:03:30Z"}', "expected an array of plays"),
        ("", "is empty"),
        ('[{"listened_at": 1709539200, "track_metadata": {}}]', "is not a Spotify play"),
        ("artist,album,track,timestamp\n", "not valid JSON"),
    ],
)
def test_a_bad_file_is_refused_naming_it(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "in" / "Streaming_History_Audio_2024.json"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(DataError, match=message) as error:
        _import(tmp_path / "w", path.parent)
    assert str(path) in str(error.value)
    assert not (tmp_path / "w").exists()


def test_mostly_invalid_records_refuse_the_file(tmp_path: Path) -> None:
    records = [_play(), _play(ms_played="long"), _play(ts=None)]
    path = _write(tmp_path / "me" / "Streaming_History_Audio_2024.json", records)
    with pytest.raises(DataError, match=r"2 of 3 records are invalid .*record 2: ms_played"):
        _import(tmp_path / "w", path.parent)


def test_single_bad_records_are_skipped_counted_and_quoted(tmp_path: Path) -> None:
    good = [_play(ts=f"2024-05-01T1{hour}:00:00Z") for hour in range(6)]
    bad = [
        _play(ms_played=-1),
        _play(ms_played=13 * 3_600_000),
        _play(ts="yesterday"),
        _play(ts="1999-12-31T23:59:59Z"),
        _play(master_metadata_track_name=42),
        "not a record",
    ]
    path = _write(tmp_path / "me" / "Streaming_History_Audio_2024.json", good + bad)
    summary = _import(tmp_path / "w", path.parent)["import"]
    assert summary["plays"] == 6
    assert summary["left_out"]["invalid"] == 6
    assert summary["invalid_examples"][:3] == [
        f"{path.name} record 7: ms_played is -1, expected 0..43200000 (12 hours)",
        f"{path.name} record 8: ms_played is 46800000, expected 0..43200000 (12 hours)",
        f"{path.name} record 9: ts is 'yesterday' (str), not a date and time",
    ]
    assert len(summary["invalid_examples"]) == 5  # the first five are quoted


def test_a_file_mixing_zoned_and_local_times_is_refused(tmp_path: Path) -> None:
    records = [_play(), _play(ts="2024-05-01T11:00:00"), _play(ts="2024-05-01T12:00:00Z")]
    path = _write(tmp_path / "me" / "Streaming_History_Audio_2024.json", records)
    with pytest.raises(DataError, match=r"mixes times with a time zone \(record 1\).*\(record 2\)"):
        _import(tmp_path / "w", path.parent)


def test_offsets_are_converted_to_utc(tmp_path: Path) -> None:
    records = [_play(ts="2024-05-01T12:03:30+02:00")]
    path = _write(tmp_path / "me" / "Streaming_History_Audio_2024.json", records)
    _import(tmp_path / "w", path.parent)
    start = _events(tmp_path / "w")["ts"][0]
    assert start == datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)  # 10:03:30 UTC minus 210 s


def test_a_folder_without_history_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "me").mkdir()
    (tmp_path / "me" / "Userdata.json").write_text("{}")
    with pytest.raises(DataError, match="holds no Spotify streaming history"):
        _import(tmp_path / "w", tmp_path / "me")
