"""What every importer shares: finding a listener's files, checking single records, tallying.

An importer turns each record of an export into one play (listener, start time, time played,
skip flag, song identity and names) or one reason to leave it out. Two kinds of bad input are
told apart:

- a bad record (a missing field, a wrong type, an unreadable or out-of-range time, a negative or
  absurd play time) is left out, counted as `invalid`, and the first few are quoted in the
  summary and the manifest;
- a bad file (unreadable, truncated or invalid JSON, the wrong format, time stamps that mix
  local and zoned times, more invalid records than valid ones) stops the import with a
  `DataError` naming the file, the record and what is wrong, before anything is written.

Everything here works on plain Python values, record by record: exports hold up to a few million
records, and a loop over them costs a few seconds, far less than decoding the JSON itself.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from nextsong.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Plays must start in this window: earlier or later times are clock errors (Last.fm writes 0
# for scrobbles without a date) and would stretch the world's period over decades.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
_EARLIEST_S, _LATEST_S = int(EARLIEST.timestamp()), int(LATEST.timestamp())
# The longest single play accepted. Hours-long tracks exist (ambient, live sets); more than
# twelve hours of one track in one play is a counting error of the export.
MAX_MS_PLAYED = 12 * 3_600_000
# Why a record becomes no play, in the order summaries list them.
LEFT_OUT = ("podcast", "audiobook", "video", "private", "unidentified", "invalid", "duplicate")
EXAMPLES_KEPT = 5

_UNIX_SECONDS = re.compile(r"\d{1,11}")
# Last.fm's own date style, "31 Jan 2021 12:34" or "31 Jan 2021, 12:34" (UTC, English months).
_DAY_MONTH_YEAR = re.compile(
    r"(\d{1,2}) ([A-Za-z]{3})[a-z]* (\d{4}),? (\d{1,2}):(\d{2})(?::(\d{2}))?"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}


class BadRecord(Exception):  # noqa: N818 (a record, not a program, is at fault)
    """One record cannot become a play; the message says which field and why. Never escapes
    `FileReader.run`, which counts the record as invalid."""


class PlayLog:
    """The plays read so far (one row each, `COLUMNS`) and the records left out, by reason.

    `ms_played` is None where the export does not say (scrobbles), `skipped` None where it has
    no skip flag, `completed` None where it does not say why playback ended, `uri` None where
    the song has no identifier; `duration_ms` is a length the export states for the song.
    """

    COLUMNS: ClassVar[dict[str, type[pl.DataType]]] = {
        "user": pl.String,
        "start_us": pl.Int64,
        "ms_played": pl.Int64,
        "skipped": pl.Boolean,
        "completed": pl.Boolean,
        "uri": pl.String,
        "artist": pl.String,
        "title": pl.String,
        "duration_ms": pl.Int64,
    }

    def __init__(self) -> None:
        # One tuple per play, transposed into columns once at the end: a single append per
        # play is the cheapest way to grow a few million rows from Python.
        self._rows: list[tuple[Any, ...]] = []
        self.records = 0
        self.files: list[str] = []
        self.left_out: Counter[str] = Counter()
        self.invalid_examples: list[str] = []

    def add(
        self,
        user: str,
        start_us: int,
        ms_played: int | None,
        skipped: bool | None,
        completed: bool | None,
        uri: str | None,
        artist: str,
        title: str,
        duration_ms: int | None = None,
    ) -> None:
        self._rows.append(
            (user, start_us, ms_played, skipped, completed, uri, artist, title, duration_ms)
        )

    def leave_out(self, reason: str) -> None:
        if reason not in LEFT_OUT:
            raise ValueError(f"unknown reason {reason!r}; valid: {', '.join(LEFT_OUT)}")
        self.left_out[reason] += 1

    def __len__(self) -> int:
        return len(self._rows)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self._rows, schema=self.COLUMNS, orient="row")


class FileReader:
    """Reads the records of one file into a `PlayLog`, one `parse` call per record.

    `label(index)` names a record in messages ("record 12", "line 40"). Time stamps go through
    `timestamp`, which also remembers whether each carried a time zone: a file that mixes zoned
    and local times is refused, since the local ones could be in any zone.
    """

    def __init__(
        self,
        path: Path,
        format_name: str,
        plays: PlayLog,
        listener: str | None,
        label: Callable[[int], str] = lambda index: f"record {index + 1}",
    ) -> None:
        self.path = Path(path)
        self.format_name = format_name
        self.plays = plays
        self.listener = listener
        self.label = label
        self.index = 0
        self._zoned: bool | None = None  # whether the file's first time stamp named its zone
        self._first_zone_index = 0

    def run(self, records: Iterable[Any], parse: Callable[[FileReader, Any], None]) -> None:
        self.plays.files.append(self.path.name)
        seen = invalid = 0
        first_bad = ""
        for self.index, record in enumerate(records):
            seen += 1
            try:
                parse(self, record)
            except BadRecord as error:
                invalid += 1
                self.plays.left_out["invalid"] += 1
                message = f"{self.path.name} {self.label(self.index)}: {error}"
                first_bad = first_bad or message
                if len(self.plays.invalid_examples) < EXAMPLES_KEPT:
                    self.plays.invalid_examples.append(message)
        self.plays.records += seen
        if invalid:
            log.info("%s: %d of %d records left out as invalid", self.path, invalid, seen)
        # Mostly invalid records mean a file of another format (or another export) rather than
        # a few damaged records: refuse it instead of importing a trickle of accidental matches.
        if invalid * 2 > seen:
            raise DataError(
                f"{self.path}: {invalid} of {seen} records are invalid (first: {first_bad}); "
                f"is it a {self.format_name} export?"
            )

    def timestamp(self, value: Any, name: str) -> int:
        """A time field (unix seconds, ISO 8601 or Last.fm's date style) in microseconds UTC."""
        if value.__class__ is str:
            moment, zoned = parse_time(value, name)
        elif value.__class__ is int:
            moment, zoned = _from_unix(value, name), True
        else:
            raise BadRecord(f"{name} is {describe(value)}, expected a date and time")
        if zoned is not self._zoned:
            self._zone_seen(zoned, name)
        return moment

    def _zone_seen(self, zoned: bool, name: str) -> None:
        """Called for the first time stamp, and for the first that differs from it."""
        if self._zoned is None:
            self._zoned, self._first_zone_index = zoned, self.index
            return
        aware, local = (
            (self.index, self._first_zone_index) if zoned else (self._first_zone_index, self.index)
        )
        raise DataError(
            f"{self.path}: {name} mixes times with a time zone ({self.label(aware)}) and "
            f"without one ({self.label(local)}); the local times could be in any zone"
        )


def parse_time(text: str, name: str) -> tuple[int, bool]:
    """Microseconds UTC of a time written as text, and whether the text named its zone.

    Accepts unix seconds, ISO 8601 ("2021-03-04T12:34:56Z", "2021-03-04 12:34") and Last.fm's
    "04 Mar 2021 12:34". Times without a zone are read as UTC, which is what Spotify and Last.fm
    write.
    """
    moment = None
    if text[4:5] == "-":  # the common case first: ISO 8601 as exports write it, no stripping
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
    if moment is None:
        value = text.strip()
        if _UNIX_SECONDS.fullmatch(value):
            return _from_unix(int(value), name), True
        moment = _iso(value) or _day_month_year(value)
    if moment is None:
        raise BadRecord(f"{name} is {describe(text)}, not a date and time")
    zoned = moment.tzinfo is not None
    if not zoned:
        moment = moment.replace(tzinfo=UTC)
    if not EARLIEST <= moment < LATEST:
        raise BadRecord(f"{name} {text!r} is outside {EARLIEST.year}..{LATEST.year - 1}")
    # Exact: whole seconds are far inside a float's precision, and the fraction (at most
    # 0.999999) stays more than a float step away from the next second up to year 2100.
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond, zoned


def _iso(value: str) -> datetime | None:
    if len(value) < 10 or not value[:4].isdigit():
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _day_month_year(value: str) -> datetime | None:
    match = _DAY_MONTH_YEAR.fullmatch(value)
    if match is None or match.group(2).lower() not in _MONTHS:
        return None
    day, month, year, hour, minute, second = match.groups()
    try:
        return datetime(
            int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute), int(second or 0)
        )
    except ValueError:
        return None


def _from_unix(seconds: int, name: str) -> int:
    if not _EARLIEST_S <= seconds < _LATEST_S:
        raise BadRecord(
            f"{name} {seconds} (unix seconds) is outside {EARLIEST.year}..{LATEST.year - 1}"
        )
    return seconds * 1_000_000


# -- fields of a record -------------------------------------------------------------------------
def describe(value: Any) -> str:
    """A short, safe rendering of a value for a one-line message."""
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{shown} ({type(value).__name__})"


def as_object(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise BadRecord(f"is {describe(record)}, expected an object")
    return record


def required(record: dict[str, Any], name: str) -> Any:
    if name not in record or record[name] is None:
        raise BadRecord(f"has no {name!r}")
    return record[name]


def text(record: dict[str, Any], name: str) -> str | None:
    """A text field, or None when absent, null or blank."""
    value = record.get(name)
    if value.__class__ is str:
        return value.strip() or None
    if value is None:
        return None
    raise BadRecord(f"{name} is {describe(value)}, expected text")


def integer(value: Any, name: str) -> int:
    """A whole number (an integral float is accepted: some tools write 183000.0)."""
    if value.__class__ is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise BadRecord(f"{name} is {describe(value)}, expected a whole number")


def ms_played(value: Any, name: str) -> int:
    played = integer(value, name)
    if not 0 <= played <= MAX_MS_PLAYED:
        raise BadRecord(f"{name} is {played}, expected 0..{MAX_MS_PLAYED} (12 hours)")
    return played


def flag(record: dict[str, Any], name: str) -> bool | None:
    """A yes/no field: true/false (or 1/0), None when absent or null."""
    value = record.get(name)
    if value is None or value.__class__ is bool:
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise BadRecord(f"{name} is {describe(value)}, expected true or false")


def duration_hint(value: Any, scale: int = 1) -> int | None:
    """A song length an export states, in ms; None when absent or not a plausible length, since
    it only refines the song's duration and never decides whether a play counts."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    length = value * scale
    return int(length) if 1_000 <= length <= MAX_MS_PLAYED else None


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pauses Python's cycle collector while exports are decoded: a million records are
    millions of small dicts and tuples without cycles (reference counting frees them), and the
    collector's repeated passes over them took 40% of the time of a large import."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# -- files of each listener ---------------------------------------------------------------------
def listener_files(
    paths: Iterable[Path], user: str | None, accept: Callable[[Path], bool], what: str
) -> list[tuple[str | None, Path]]:
    """(listener, file) for every input: a folder is one listener (named after it unless
    `user` is given) and contributes its files that `accept` their path inside the folder; a
    file belongs to `user`, or to no one yet (None) when `user` is not given."""
    found: list[tuple[str | None, Path]] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ConfigError(f"input {path} does not exist")
        if path.is_file():
            found.append((user, path))
            continue
        folder = path.resolve()
        files = sorted(
            file
            for file in folder.rglob("*")
            if file.is_file() and accept(file.relative_to(folder))
        )
        if not files:
            raise DataError(f"folder {path} holds no {what}")
        found.extend((user or folder.name, file) for file in files)
    if not found:
        raise ConfigError("no input: give at least one export file or folder")
    return found


def need_listener(listener: str | None, path: Path) -> str:
    if listener is None:
        raise ConfigError(
            f"whose history is {path}? pass --user NAME, or give a folder per listener"
        )
    return listener


def read_text(path: Path) -> str:
    """A file's text (UTF-8, with or without a byte-order mark), refused when empty."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text (byte {error.start})") from None
    if not content.strip():
        raise DataError(f"{path} is empty")
    return content
