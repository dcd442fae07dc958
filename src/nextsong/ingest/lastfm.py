"""Last.fm scrobble exports: a CSV of artist, album, track and time, with or without a header.

Without a header a row is exactly `artist,album,track,timestamp` (the layout of the common
export tools). With a header, columns are found by name: artist (`artist`, `artist_name`), track
(`track`, `track_name`, `title`, `name`, `song`), time (`uts`, `timestamp`, `date`, `time`,
`utc_time`, `played_at`, `listened_at`), and optionally `track_mbid`. The time is unix seconds or
a date string ("31 Jan 2021 12:34", ISO 8601); a date string without a zone is UTC, as Last.fm
writes it. In a folder, every `.csv` file is read.

Rules: the time is when the song started. Last.fm records a scrobble only after half the song or
four minutes were played, so no scrobble is a skip, and the time played is unknown: it is taken as
the song's duration. A song's identity is its MusicBrainz id (`track_mbid`) where the export has
one, else its artist and title.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nextsong.errors import DataError
from nextsong.ingest.common import (
    BadRecord,
    FileReader,
    PlayLog,
    listener_files,
    need_listener,
    read_text,
)

FORMAT = "lastfm"
HEADERLESS = ("artist", "album", "track", "timestamp")
_ARTIST = ("artist", "artist_name", "artist name")
_TRACK = ("track", "track_name", "track name", "title", "name", "song")
# Unix seconds first: exports with both `uts` and `utc_time` agree, and seconds parse faster.
_TIME = ("uts", "timestamp", "date", "time", "utc_time", "played_at", "listened_at")
_MBID_COLUMN = ("track_mbid", "mbid", "recording_mbid")
_MBID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class Layout:
    """Where the fields of a row are; `width` is the exact row length without a header."""

    artist: int
    track: int
    time: int
    time_name: str
    mbid: int | None = None
    width: int | None = None


def read(paths: Iterable[Path], user: str | None, plays: PlayLog) -> None:
    """Adds the scrobbles of every CSV among `paths` to `plays`."""
    for listener, path in listener_files(paths, user, _is_csv, "Last.fm scrobble CSV"):
        read_file(path, need_listener(listener, path), plays)


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def read_file(path: Path, listener: str, plays: PlayLog) -> None:
    rows, lines = _rows(path)
    layout = _header(rows[0]) if rows else None
    if layout is None:
        layout = Layout(artist=0, track=2, time=3, time_name="timestamp", width=4)
    else:
        rows, lines = rows[1:], lines[1:]

    def parse(reader: FileReader, row: list[str]) -> None:
        _scrobble(reader, row, layout, listener)

    def label(index: int) -> str:
        return f"line {lines[index]}"

    FileReader(path, FORMAT, plays, listener, label).run(rows, parse)


def _rows(path: Path) -> tuple[list[list[str]], list[int]]:
    """The non-empty rows of the CSV and the line each ends on."""
    content = read_text(path)
    rows, lines = [], []
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as error:
        raise DataError(f"{path} line {reader.line_num} is not valid CSV: {error}") from None
    return rows, lines


def _header(row: list[str]) -> Layout | None:
    """The layout a header row names, or None when the row is a scrobble."""
    names = [cell.strip().lower() for cell in row]

    def find(candidates: tuple[str, ...]) -> int | None:
        return next((names.index(name) for name in candidates if name in names), None)

    artist, track, time = find(_ARTIST), find(_TRACK), find(_TIME)
    if artist is None or track is None or time is None:
        return None
    return Layout(artist, track, time, names[time], mbid=find(_MBID_COLUMN))


def _scrobble(reader: FileReader, row: list[str], layout: Layout, listener: str) -> None:
    if layout.width is not None and len(row) != layout.width:
        raise BadRecord(f"has {len(row)} fields, expected 4: {', '.join(HEADERLESS)}")
    if len(row) <= max(layout.artist, layout.track, layout.time):
        raise BadRecord(f"has {len(row)} fields, fewer than its header names")
    artist, title = row[layout.artist].strip(), row[layout.track].strip()
    if not artist or not title:
        raise BadRecord("has no artist or no track name")
    start_us = reader.timestamp(row[layout.time], layout.time_name)
    mbid = row[layout.mbid].strip() if layout.mbid is not None and layout.mbid < len(row) else ""
    reader.plays.add(
        user=listener,
        start_us=start_us,
        ms_played=None,
        skipped=False,
        completed=True,
        uri=f"musicbrainz:recording:{mbid.lower()}" if _MBID.fullmatch(mbid) else None,
        artist=artist,
        title=title,
    )
