"""ListenBrainz exports as a world: JSON lines and arrays, identities, listeners, bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from nextsong.errors import ConfigError, DataError
from nextsong.ingest import ImportConfig, import_world, read_plays
from nextsong.world import load_world

FIXTURES = Path(__file__).parent / "fixtures" / "ingest" / "listenbrainz"
LINES = FIXTURES / "listens.jsonl"


def _import(out: Path, *paths: Path, **options: Any) -> dict[str, Any]:
    return import_world(list(paths), out, ImportConfig("listenbrainz", **options))


def _listen(at: int = 1714557600, **meta: Any) -> dict[str, Any]:
    return {
        "listened_at": at,
        "recording_msid": "0f1e2d3c-4b5a-4968-8776-5a4b3c2d1e0f",
        "user_name": "lin",
        "track_metadata": {
            "artist_name": "Sigur Rós",
            "track_name": "Hoppípolla",
            "release_name": "Takk...",
            "additional_info": {"duration_ms": 268000},
        }
        | meta,
    }


def test_fixture_counts_every_record(tmp_path: Path) -> None:
    manifest = _import(tmp_path / "w", FIXTURES)
    summary = manifest["import"]
    assert summary["files"] == ["listenbrainz_dave_1709800000.json", "listens.jsonl"]
    assert summary["records"] == 12  # 9 non-blank lines and 3 array items
    assert summary["plays"] == 8
    assert {k: v for k, v in summary["left_out"].items() if v} == {
        "podcast": 1,  # a Spotify episode link
        "invalid": 2,  # a truncated line, a listened_at of "yesterday"
        "duplicate": 1,  # the same listen submitted twice
    }
    assert summary["invalid_examples"] == [
        "listens.jsonl line 9: is not valid JSON (Unterminated string starting at, column 47)",
        "listens.jsonl line 10: listened_at is 'yesterday' (str), not a date and time",
    ]
    assert manifest["counts"] == {
        "genres": 0,
        "artists": 3,
        "songs": 6,
        "users": 2,
        "events": 8,
        "sessions": 4,
    }


def test_listens_are_never_skips_and_last_the_song(tmp_path: Path) -> None:
    _import(tmp_path / "w", FIXTURES)
    world = load_world(tmp_path / "w")
    events = pl.from_arrow(world.events).join(pl.from_arrow(world.songs), on="song_id")
    assert not events["skipped"].any()
    assert events["ms_played"].to_list() == events["duration_ms"].to_list()
    duration = dict(zip(events["title"], events["duration_ms"], strict=True))
    assert duration["Subterranean Homesick Alien"] == 267_000  # additional_info.duration (s)
    assert duration["Glory Box"] == 306_000  # additional_info.duration_ms


def test_a_recording_id_is_one_song_whatever_its_case_or_source(tmp_path: Path) -> None:
    _import(tmp_path / "w", FIXTURES)
    world = load_world(tmp_path / "w")
    airbag = [row["song_id"] for row in world.songs.to_pylist() if row["title"] == "Airbag"]
    assert len(airbag) == 1
    plays = pl.from_arrow(world.events).filter(pl.col("song_id") == airbag[0])
    assert plays["user_id"].to_list() == [0, 0, 1]  # additional_info, mbid_mapping, upper case


def test_user_name_names_the_listener_unless_user_is_given(tmp_path: Path) -> None:
    _import(tmp_path / "a", FIXTURES)
    names = pl.from_arrow(load_world(tmp_path / "a").users)["name"].to_list()
    assert names == ["carol", "dave"]
    _import(tmp_path / "b", FIXTURES, user="me")
    assert pl.from_arrow(load_world(tmp_path / "b").users)["name"].to_list() == ["me"]


def test_a_listen_without_user_name_needs_a_listener(tmp_path: Path) -> None:
    listen = _listen()
    del listen["user_name"]
    path = tmp_path / "listens.jsonl"
    path.write_text(json.dumps(listen) + "\n")
    with pytest.raises(ConfigError, match="pass --user NAME"):
        read_plays("listenbrainz", [path])
    assert len(read_plays("listenbrainz", [path], user="lin")) == 1


def test_the_api_payload_and_a_single_line_are_read(tmp_path: Path) -> None:
    payload = tmp_path / "listens_api.json"
    payload.write_text(json.dumps({"payload": {"count": 2, "listens": [_listen(), _listen(9e8)]}}))
    plays = read_plays("listenbrainz", [payload])
    assert (plays.records, len(plays), plays.left_out["invalid"]) == (2, 1, 1)
    single = tmp_path / "one.jsonl"
    single.write_text(json.dumps(_listen()))
    assert len(read_plays("listenbrainz", [single])) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"listened_at": 1714557600, "track_metadata": {"artist_name": "S', "not valid JSON"),
        ('"listens"', "holds no array of listens"),
        ('{"payload": {"listens": 3}}', "holds no array of listens"),
        ("ts,artist\n1,2\n3,4\n", "3 of 3 records are invalid"),
        ("\n\n  \n", "is empty"),
    ],
)
def test_a_bad_file_is_refused_naming_it(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "listens.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as error:
        _import(tmp_path / "w", path)
    assert str(path) in str(error.value)
    assert not (tmp_path / "w").exists()


def test_bad_listens_are_counted_with_the_reason(tmp_path: Path) -> None:
    good = [_listen(1714557600 + 300 * i) for i in range(5)]
    bad = [
        _listen(track_metadata=None) | {"track_metadata": None},
        _listen(artist_name=None),
        _listen(additional_info=[1, 2]),
        _listen(True),
    ]
    path = tmp_path / "listens.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in good + bad) + "\n")
    plays = read_plays("listenbrainz", [path])
    assert len(plays) == 5
    assert plays.invalid_examples == [
        "listens.jsonl line 6: has no 'track_metadata'",
        "listens.jsonl line 7: track_metadata has no artist_name or track_name",
        "listens.jsonl line 8: additional_info is a list, expected an object",
        "listens.jsonl line 9: listened_at is True (bool), expected a date and time",
    ]
