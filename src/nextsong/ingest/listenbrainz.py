"""ListenBrainz listens exports: JSON lines (one listen a line) or a JSON array of listens.

A listen is `{"listened_at": unix seconds, "user_name": ..., "track_metadata": {"artist_name",
"track_name", "release_name", "additional_info": {...}, "mbid_mapping": {...}}}`. The API's
`{"payload": {"listens": [...]}}` is read too. In a folder, the files read are the `.json`,
`.jsonl` and `.ndjson` files whose path inside the folder mentions "listen" (`listens.jsonl`,
`listens/2024/3.jsonl`), which leaves out the export's `user.json` and `feedback.jsonl`.

Rules: `listened_at` is when the listen started. A client submits a listen only after half the
song or four minutes were played, so no listen is a skip, and the time played is unknown: it is
taken as the song's duration (`additional_info.duration_ms` or `duration` where given). A song's
identity is its MusicBrainz recording id (`additional_info.recording_mbid`, else
`mbid_mapping.recording_mbid`), else its Spotify link, else its artist and title. The listener is
`--user` if given, else the listen's `user_name`, else the folder's name. Listens whose Spotify
link is a podcast episode or show are left out as podcasts; other podcasts cannot be told from
songs here and are imported as songs. In JSON lines a damaged line is one invalid record; in a
JSON array, damage anywhere refuses the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nextsong.errors import DataError
from nextsong.ingest.common import (
    BadRecord,
    FileReader,
    PlayLog,
    as_object,
    duration_hint,
    listener_files,
    need_listener,
    read_text,
    required,
    text,
)

FORMAT = "listenbrainz"
_SUFFIXES = (".json", ".jsonl", ".ndjson")
_SPOTIFY_LINK = re.compile(r"https?://open\.spotify\.com/(track|episode|show)/([A-Za-z0-9]+)")
_MBID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def read(paths: Iterable[Path], user: str | None, plays: PlayLog) -> None:
    """Adds the listens of every ListenBrainz export file among `paths` to `plays`."""
    for listener, path in listener_files(paths, None, _is_listens, "ListenBrainz listens"):
        read_file(path, plays, user=user, fallback=listener)


def _is_listens(path: Path) -> bool:
    return path.suffix.lower() in _SUFFIXES and "listen" in path.as_posix().lower()


def read_file(path: Path, plays: PlayLog, user: str | None, fallback: str | None) -> None:
    """Reads one file; `user` (from --user) overrides the listens' user_name, `fallback` (the
    folder's name) stands in where a listen has none."""
    content = read_text(path)
    records, label = _records(path, content)

    def parse(reader: FileReader, record: Any) -> None:
        _listen(reader, record, user, fallback)

    FileReader(path, FORMAT, plays, user or fallback, label).run(records, parse)


def _records(path: Path, content: str) -> tuple[list[Any], Callable[[int], str]]:
    """The listens of a file and how to name one in messages (by array index or line)."""
    try:
        document = json.loads(content)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data" or not content.lstrip().startswith("["):
            return _lines(content)
        raise DataError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            f"a truncated or damaged export?"
        ) from None
    except RecursionError:
        raise DataError(f"{path} nests JSON too deeply to be a listens export") from None
    if isinstance(document, dict) and isinstance(document.get("payload"), dict):
        document = document["payload"].get("listens")
    elif isinstance(document, dict):
        document = [document]  # JSON lines holding a single listen
    if not isinstance(document, list):
        raise DataError(f"{path} holds no array of listens (nor one listen a line)")
    return document, lambda index: f"record {index + 1}"


def _lines(content: str) -> tuple[list[Any], Callable[[int], str]]:
    """One item per non-blank line, labelled by its line number; a line that is not JSON
    becomes the BadRecord it causes, raised when the parser reaches it."""
    items, numbers = [], []
    for number, line in enumerate(content.split("\n"), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as error:
            items.append(BadRecord(f"is not valid JSON ({error.msg}, column {error.colno})"))
        except RecursionError:
            items.append(BadRecord("nests JSON too deeply"))
        numbers.append(number)
    return items, lambda index: f"line {numbers[index]}"


def _listen(reader: FileReader, record: Any, user: str | None, fallback: str | None) -> None:
    if isinstance(record, BadRecord):
        raise record
    listen = as_object(record)
    start_us = reader.timestamp(required(listen, "listened_at"), "listened_at")
    meta = _object(listen, "track_metadata", required_=True)
    artist, title = text(meta, "artist_name"), text(meta, "track_name")
    if artist is None or title is None:
        raise BadRecord("track_metadata has no artist_name or track_name")
    info = _object(meta, "additional_info")
    mapping = _object(meta, "mbid_mapping")
    spotify = _SPOTIFY_LINK.match(text(info, "spotify_id") or text(info, "origin_url") or "")
    if spotify and spotify.group(1) != "track":
        reader.plays.leave_out("podcast")
        return
    listener = user or text(listen, "user_name") or fallback
    reader.plays.add(
        user=need_listener(listener, reader.path),
        start_us=start_us,
        ms_played=None,
        skipped=False,
        completed=True,
        uri=_identity(info, mapping, spotify),
        artist=artist,
        title=title,
        duration_ms=duration_hint(info.get("duration_ms"))
        or duration_hint(info.get("duration"), scale=1000),
    )


def _object(record: dict[str, Any], name: str, required_: bool = False) -> dict[str, Any]:
    value = required(record, name) if required_ else record.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRecord(f"{name} is a {type(value).__name__}, expected an object")
    return value


def _identity(
    info: dict[str, Any], mapping: dict[str, Any], spotify: re.Match[str] | None
) -> str | None:
    for source in (info, mapping):
        mbid = source.get("recording_mbid")
        if isinstance(mbid, str) and _MBID.fullmatch(mbid.strip()):
            return f"musicbrainz:recording:{mbid.strip().lower()}"
    if spotify:
        return f"spotify:track:{spotify.group(2)}"
    return None
