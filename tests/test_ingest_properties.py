"""Malformed input thrown at every importer: nothing escapes but the project's own errors.

Records are drawn near the real shapes (the real field names with plausible or arbitrary
values), whole files are truncated at random points, and any text at all is fed to every
format. Each run either imports (and then every record is a play or counted as left out) or
raises a `NextsongError`; any other exception is a bug.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nextsong.errors import NextsongError
from nextsong.ingest import ImportConfig, read_plays
from nextsong.ingest.build import build_tables

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
times = st.one_of(
    st.integers(-(2**34), 2**34),
    st.integers(946_684_800, 4_102_444_799).map(str),
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda moment: moment.isoformat()),
    st.sampled_from(["2024-03-04 21:10", "04 Mar 2024 08:01", "31 Feb 2024 08:00", "", "now"]),
    json_values,
)
played = st.integers(-(2**33), 2**33) | json_values
names = st.text(max_size=10) | st.sampled_from(["Portishead", "Björk", " ", "Unknown Artist"])


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return value | json_values


extended_record = st.fixed_dictionaries(
    {},
    optional={
        "ts": times,
        "ms_played": played,
        "master_metadata_track_name": _maybe(names),
        "master_metadata_album_artist_name": _maybe(names),
        "spotify_track_uri": _maybe(st.sampled_from(["spotify:track:1", "spotify:track:2"])),
        "episode_name": _maybe(names),
        "audiobook_title": _maybe(names),
        "reason_end": _maybe(st.sampled_from(["trackdone", "fwdbtn", "endplay"])),
        "skipped": _maybe(st.booleans()),
        "incognito_mode": _maybe(st.booleans()),
        "ip_addr": json_values,
    },
)
basic_record = st.fixed_dictionaries(
    {},
    optional={
        "endTime": times,
        "msPlayed": played,
        "artistName": _maybe(names),
        "trackName": _maybe(names),
        "podcastName": _maybe(names),
    },
)
listen = st.fixed_dictionaries(
    {},
    optional={
        "listened_at": times,
        "user_name": _maybe(names),
        "track_metadata": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "artist_name": _maybe(names),
                    "track_name": _maybe(names),
                    "additional_info": _maybe(
                        st.fixed_dictionaries(
                            {},
                            optional={
                                "duration_ms": played,
                                "duration": played,
                                "recording_mbid": json_values,
                                "spotify_id": _maybe(
                                    st.sampled_from(
                                        [
                                            "https://open.spotify.com/track/abc",
                                            "https://open.spotify.com/episode/abc",
                                        ]
                                    )
                                ),
                            },
                        )
                    ),
                    "mbid_mapping": json_values,
                },
            )
        ),
    },
)
# Records a real export could hold, so that damaged ones are mixed among valid ones and the
# per-record path (skip, count, build the world) runs, not only the refusal of whole files.
valid_times = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)
)
titles = st.sampled_from(["Roads", "Glory Box", "Teardrop", "Jóga", "Airbag"])
artists = st.sampled_from(["Portishead", "Massive Attack", "Björk", "björk ", "Radiohead"])
good_extended = st.fixed_dictionaries(
    {
        "ts": valid_times.map(lambda moment: moment.isoformat().replace("+00:00", "Z")),
        "ms_played": st.integers(0, 600_000),
        "master_metadata_track_name": titles,
        "master_metadata_album_artist_name": artists,
        "spotify_track_uri": st.none() | st.sampled_from(["spotify:track:1", "spotify:track:2"]),
        "reason_end": st.none() | st.sampled_from(["trackdone", "fwdbtn"]),
        "skipped": st.none() | st.booleans(),
        "ip_addr": st.just("192.0.2.1"),
    }
)
good_basic = st.fixed_dictionaries(
    {
        "endTime": valid_times.map(lambda moment: moment.strftime("%Y-%m-%d %H:%M")),
        "msPlayed": st.integers(0, 600_000),
        "artistName": artists,
        "trackName": titles,
    }
)
good_listen = st.fixed_dictionaries(
    {
        "listened_at": valid_times.map(lambda moment: int(moment.timestamp())),
        "user_name": st.sampled_from(["ann", "ben"]),
        "track_metadata": st.fixed_dictionaries(
            {"artist_name": artists, "track_name": titles},
            optional={"additional_info": st.fixed_dictionaries({"duration_ms": played})},
        ),
    }
)
good_row = st.tuples(artists, st.just("an album"), titles, valid_times).map(
    lambda row: [row[0], row[1], row[2], str(int(row[3].timestamp()))]
)
csv_cells = st.lists(st.text(max_size=8) | times.map(str), min_size=0, max_size=6)


def _check(format_name: str, files: dict[str, bytes]) -> None:
    """Imports `files` (name -> content) as one listener's folder; the property itself."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "listener"
        root.mkdir()
        for name, content in files.items():
            (root / name).write_bytes(content)
        try:
            plays = read_plays(format_name, [root], user="p")
            built = build_tables(plays.frame(), ImportConfig(format_name))
        except NextsongError:
            return
        left_out = sum(plays.left_out.values())
        assert plays.records == len(plays) + left_out
        assert built.tables["events"].num_rows == len(plays) - built.duplicates - built.unidentified


def _json(records: list[Any]) -> bytes:
    return json.dumps(records).encode()


@EXAMPLES
@given(st.lists(extended_record | json_values, max_size=8))
def test_spotify_extended_records(records: list[Any]) -> None:
    _check("spotify", {"Streaming_History_Audio_2024.json": _json(records)})


@EXAMPLES
@given(st.lists(basic_record | json_values, max_size=8))
def test_spotify_basic_records(records: list[Any]) -> None:
    _check("spotify", {"StreamingHistory_music_0.json": _json(records)})


def _listens(records: list[Any], as_lines: bool) -> dict[str, bytes]:
    if as_lines:
        return {"listens.jsonl": "\n".join(json.dumps(record) for record in records).encode()}
    return {"listens.json": _json(records)}


def _scrobbles(rows: list[list[str]], header: bool) -> dict[str, bytes]:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(["uts", "artist", "album", "track", "track_mbid"])
    writer.writerows(rows)
    return {"scrobbles.csv": out.getvalue().encode()}


@EXAMPLES
@given(st.lists(listen | json_values, max_size=8), st.booleans())
def test_listenbrainz_listens(records: list[Any], as_lines: bool) -> None:
    _check("listenbrainz", _listens(records, as_lines))


@EXAMPLES
@given(st.lists(csv_cells, max_size=8), st.booleans())
def test_lastfm_rows(rows: list[list[str]], header: bool) -> None:
    _check("lastfm", _scrobbles(rows, header))


def _mixed(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Valid records with a few damaged ones among them, in any order."""
    return st.tuples(st.lists(good, min_size=1, max_size=6), st.lists(bad, max_size=3)).flatmap(
        lambda parts: st.permutations(parts[0] + parts[1])
    )


@EXAMPLES
@given(_mixed(good_extended, extended_record | json_values))
def test_spotify_extended_mixed(records: list[Any]) -> None:
    _check("spotify", {"Streaming_History_Audio_2024.json": _json(records)})


@EXAMPLES
@given(_mixed(good_basic, basic_record | json_values))
def test_spotify_basic_mixed(records: list[Any]) -> None:
    _check("spotify", {"StreamingHistory_music_0.json": _json(records)})


@EXAMPLES
@given(_mixed(good_listen, listen | json_values), st.booleans())
def test_listenbrainz_mixed(records: list[Any], as_lines: bool) -> None:
    _check("listenbrainz", _listens(records, as_lines))


@EXAMPLES
@given(_mixed(good_row, csv_cells))
def test_lastfm_mixed(rows: list[list[str]]) -> None:
    _check("lastfm", _scrobbles(rows, header=False))


FIXTURE_FILES = {
    "spotify": FIXTURES / "spotify" / "alice" / "Streaming_History_Audio_2024.json",
    "listenbrainz": FIXTURES / "listenbrainz" / "listens.jsonl",
    "lastfm": FIXTURES / "lastfm" / "frank" / "recenttracks-frank-1709800000.csv",
}


@EXAMPLES
@given(st.sampled_from(sorted(FIXTURE_FILES)), st.data())
def test_truncated_and_damaged_fixtures(format_name: str, data: st.DataObject) -> None:
    path = FIXTURE_FILES[format_name]
    content = path.read_bytes()
    cut = data.draw(st.integers(0, len(content)))
    flip = data.draw(st.integers(0, len(content) - 1))
    damaged = data.draw(st.sampled_from(["cut", "flip"]))
    if damaged == "cut":
        content = content[:cut]
    else:
        content = content[:flip] + bytes([content[flip] ^ 0x5A]) + content[flip + 1 :]
    _check(format_name, {path.name: content})


@EXAMPLES
@given(
    st.sampled_from(["spotify", "listenbrainz", "lastfm"]),
    st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
)
def test_any_bytes_in_any_format(format_name: str, content: bytes) -> None:
    names = {
        "spotify": "Streaming_History_Audio_2024.json",
        "listenbrainz": "listens.jsonl",
        "lastfm": "scrobbles.csv",
    }
    _check(format_name, {names[format_name]: content})
