"""Spotify's listening exports: the extended streaming history and the basic account data.

Extended history (`Streaming_History_Audio_*.json`, formerly `endsong_*.json`): a JSON array of
plays with `ts` (when playback *ended*, UTC), `ms_played`, `spotify_track_uri`,
`master_metadata_track_name`, `master_metadata_album_artist_name`, `reason_end`, `skipped`,
`incognito_mode`, and the podcast (`episode_*`) and audiobook (`audiobook_*`) fields.
`Streaming_History_Video_*.json` files hold videos only: they are counted, not imported.

Basic account data (`StreamingHistory_music_*.json`, `StreamingHistory*.json`): a JSON array of
`endTime` ("2021-03-04 12:34", UTC, to the minute), `artistName`, `trackName`, `msPlayed`;
podcast plays carry `podcastName` and `episodeName` instead.

Rules: a play starts at the end time minus `ms_played`; the `skipped` flag is used where it is
true or false, otherwise the shared play-time rule applies (`build.SKIP_BELOW_MS`); a play
ended by "trackdone" is complete, which is what song durations are estimated from; plays in a
private session (`incognito_mode`) are left out and counted as `private`, as Spotify leaves them
out of its own recommendations. Only the fields named here are read: `ip_addr`, `conn_country`,
`platform`, `user_agent_decrypted` and `username` never leave the export.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nextsong.errors import DataError
from nextsong.ingest.common import (
    FileReader,
    PlayLog,
    as_object,
    flag,
    listener_files,
    ms_played,
    need_listener,
    read_text,
    required,
    text,
)

FORMAT = "spotify"
_EXTENDED_NAME = re.compile(r"(Streaming_History_Audio_.*|endsong_\d+)\.json", re.IGNORECASE)
_VIDEO_NAME = re.compile(r"Streaming_History_Video_.*\.json", re.IGNORECASE)
_BASIC_NAME = re.compile(r"StreamingHistory.*\.json", re.IGNORECASE)
_EPISODE_FIELDS = ("spotify_episode_uri", "episode_name", "episode_show_name")
_AUDIOBOOK_FIELDS = (
    "audiobook_uri",
    "audiobook_title",
    "audiobook_chapter_uri",
    "audiobook_chapter_title",
)
# What the basic export writes for local files and tracks it could not resolve.
_UNKNOWN_NAMES = ("Unknown Artist", "Unknown Track")


def read(paths: Iterable[Path], user: str | None, plays: PlayLog) -> None:
    """Adds the plays of every Spotify export file among `paths` to `plays`."""
    for listener, path in listener_files(paths, user, _is_history, "Spotify streaming history"):
        read_file(path, need_listener(listener, path), plays)


def _is_history(path: Path) -> bool:
    patterns = (_EXTENDED_NAME, _VIDEO_NAME, _BASIC_NAME)
    return any(pattern.fullmatch(path.name) for pattern in patterns)


def read_file(path: Path, listener: str, plays: PlayLog) -> None:
    records = _json_array(path)
    reader = FileReader(path, FORMAT, plays, listener)
    if _VIDEO_NAME.fullmatch(path.name):
        reader.run(records, lambda _reader, _record: plays.leave_out("video"))
    elif _is_basic(path, records):
        reader.run(records, _basic_play)
    else:
        reader.run(records, _extended_play)


def _json_array(path: Path) -> list[Any]:
    try:
        content = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            f"a truncated or damaged export?"
        ) from None
    except RecursionError:
        raise DataError(f"{path} nests JSON too deeply to be a streaming history") from None
    if not isinstance(content, list):
        raise DataError(f"{path} holds a JSON {type(content).__name__}, expected an array of plays")
    return content


def _is_basic(path: Path, records: list[Any]) -> bool:
    """Which of the two exports a file is, from its first record (the name can be anything)."""
    first = next((record for record in records if isinstance(record, dict)), None)
    if first is None:
        return bool(_BASIC_NAME.fullmatch(path.name))
    if "ts" in first or "ms_played" in first:
        return False
    if "endTime" in first or "msPlayed" in first:
        return True
    fields = ", ".join(sorted(map(str, first))[:6]) or "none"
    raise DataError(
        f"{path} record {records.index(first) + 1} is not a Spotify play (fields: {fields}); "
        f"expected ts and ms_played, or endTime and msPlayed"
    )


def _extended_play(reader: FileReader, record: Any) -> None:
    play = as_object(record)
    end_us = reader.timestamp(required(play, "ts"), "ts")
    played = ms_played(required(play, "ms_played"), "ms_played")
    if flag(play, "incognito_mode"):
        reader.plays.leave_out("private")
        return
    uri = text(play, "spotify_track_uri")
    title = text(play, "master_metadata_track_name")
    artist = text(play, "master_metadata_album_artist_name")
    if uri is None and title is None:
        reader.plays.leave_out(_not_music(play))
        return
    if title is None or artist is None:
        reader.plays.leave_out("unidentified")
        return
    reason_end = text(play, "reason_end")
    reader.plays.add(
        user=reader.listener,
        start_us=end_us - played * 1000,
        ms_played=played,
        skipped=flag(play, "skipped"),
        completed=None if reason_end is None else reason_end == "trackdone",
        uri=uri,
        artist=artist,
        title=title,
    )


def _not_music(play: dict[str, Any]) -> str:
    """Why a play without a track is left out: a podcast, an audiobook, or nothing known."""
    if any(text(play, name) for name in _EPISODE_FIELDS):
        return "podcast"
    if any(text(play, name) for name in _AUDIOBOOK_FIELDS):
        return "audiobook"
    return "unidentified"


def _basic_play(reader: FileReader, record: Any) -> None:
    play = as_object(record)
    end_us = reader.timestamp(required(play, "endTime"), "endTime")
    played = ms_played(required(play, "msPlayed"), "msPlayed")
    if text(play, "podcastName") or text(play, "episodeName"):
        reader.plays.leave_out("podcast")
        return
    artist, title = text(play, "artistName"), text(play, "trackName")
    if artist is None or title is None or (artist, title) == _UNKNOWN_NAMES:
        reader.plays.leave_out("unidentified")
        return
    reader.plays.add(
        user=reader.listener,
        start_us=end_us - played * 1000,
        ms_played=played,
        skipped=None,
        completed=None,
        uri=None,
        artist=artist,
        title=title,
    )
