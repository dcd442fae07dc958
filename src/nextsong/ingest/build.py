"""From the plays of an export to the world's tables: identities, duplicates, sessions, catalog.

The rules, in the order they apply (the README's "Importing real histories" repeats them):

1. Names are compared normalised: NFKC, lower case, runs of white space as one space, trimmed.
2. A song's identity is its URI (Spotify URI, MusicBrainz recording id) where the play has one.
   A play without one takes the URI most played under the same normalised artist and title,
   else its identity is that artist and title.
3. Plays of the same listener, song and start time are duplicates: one is kept (the longest).
4. A play without a skip flag is skipped when played less than `SKIP_BELOW_MS`; a play whose
   time played is unknown (scrobbles, listens) is not a skip.
5. A song's duration is the length the export states, else the longest complete play (ended by
   "trackdone", or not skipped where the export does not say), else `DEFAULT_DURATION_MS`. A play
   whose time played is unknown is taken to have played the whole song.
6. A listener's plays split into sessions where nothing was playing for more than the session gap
   (30 minutes by default) between the end of everything played so far and the next start.
7. What real exports do not know gets a documented stand-in: a song's `energy` is
   `NEUTRAL_ENERGY`, its `release_ts` the first time it was played in the export, a listener's
   `signup_ts` their first play, and the genre of an artist absent from `--genres` (or of every
   artist without that file) is `UNKNOWN_GENRE` (-1), with no genre row.

Ids are dense and sorted for stable output: listeners by name, artists by normalised name, songs
by artist, title, then identity; so the same export always gives the same bytes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from nextsong import schema
from nextsong.errors import ConfigError, DataError
from nextsong.ingest.common import read_text

FORMAT_NAMES = ("spotify", "listenbrainz", "lastfm")  # one module each in nextsong.ingest
SKIP_BELOW_MS = 30_000  # Spotify's own threshold for a play to count as a stream
DEFAULT_DURATION_MS = 210_000  # about the average length of a popular song
MIN_DURATION_MS = 1_000  # a "complete" play shorter than this says nothing about the song
NEUTRAL_ENERGY = 0.5  # the middle of the energy scale: exports carry no audio features
UNKNOWN_GENRE = -1
SESSIONS_PER_USER_LIMIT = 1_000_000  # session_id = user_id * this + rank, as in synthetic worlds
_US_PER_DAY = 86_400 * 1_000_000


@dataclass(frozen=True)
class ImportConfig:
    """How an export becomes a world; saved in the world's manifest under `import.config`."""

    format: str
    session_gap_minutes: float = 30.0
    user: str | None = None
    genres_file: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMAT_NAMES:
            raise ConfigError(
                f"unknown format {self.format!r}; valid formats: {', '.join(FORMAT_NAMES)}"
            )
        if not 0 < self.session_gap_minutes <= 7 * 24 * 60:
            raise ConfigError(
                f"--session-gap must be more than 0 and at most 10080 minutes (a week), "
                f"got {self.session_gap_minutes}"
            )
        if self.user is not None and not self.user.strip():
            raise ConfigError("--user must not be blank")

    @property
    def session_gap_us(self) -> int:
        return round(self.session_gap_minutes * 60 * 1_000_000)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "session_gap_minutes": self.session_gap_minutes,
            "user": self.user,
            "genres_file": Path(self.genres_file).name if self.genres_file else None,
            "skip_below_ms": SKIP_BELOW_MS,
            "default_duration_ms": DEFAULT_DURATION_MS,
            "neutral_energy": NEUTRAL_ENERGY,
            "unknown_genre": UNKNOWN_GENRE,
        }


@dataclass(frozen=True)
class Built:
    """The world's tables as the schema wants them, its period, and the plays dropped here."""

    tables: dict[str, pa.Table]
    period_start: datetime
    period_end: datetime
    sessions: int
    duplicates: int
    unidentified: int


def normalised(column: str) -> pl.Expr:
    return (
        pl.col(column)
        .str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def build_tables(
    plays: pl.DataFrame, config: ImportConfig, genre_of: pl.DataFrame | None = None
) -> Built:
    """The tables of the world made of `plays` (PlayLog.frame()); `genre_of` maps a normalised
    artist name (`artist_key`) to a genre `name`."""
    frame = plays.with_columns(artist_key=normalised("artist"), title_key=normalised("title"))
    # Python's strip and Polars' white space differ on a few control characters: a name that
    # normalises to nothing identifies nothing.
    named = (pl.col("artist_key") != "") & (pl.col("title_key") != "")
    unidentified = frame.height - frame.filter(named).height
    frame = _identify(frame.filter(named))
    deduplicated = _deduplicate(frame)
    frame = _skips(deduplicated)
    if frame.is_empty():
        raise DataError("the export holds no plays of songs (see the counts of what was left out)")

    users = _users(frame)
    songs = _songs(frame)
    artists, genres = _artists(frame, songs, genre_of)
    events = _events(frame, users, songs, config)
    songs = songs.join(artists.select("artist_key", "artist_id", "genre_id"), on="artist_key")
    start_day = events["start_us"].min() // _US_PER_DAY
    end_day = events["start_us"].max() // _US_PER_DAY + 1
    return Built(
        tables={
            "genres": _table(genres, schema.GENRES),
            "artists": _table(artists, schema.ARTISTS),
            "songs": _table(songs.sort("song_id"), schema.SONGS),
            "users": _table(users, schema.USERS),
            "events": _table(events, schema.EVENTS),
        },
        period_start=_day(start_day),
        period_end=_day(end_day),
        sessions=events["session_id"].n_unique(),
        duplicates=plays.height - unidentified - deduplicated.height,
        unidentified=unidentified,
    )


def _identify(frame: pl.DataFrame) -> pl.DataFrame:
    """Adds `song_key`: the URI, else the URI most played under the same artist and title,
    else the normalised artist and title."""
    frame = frame.with_columns(name_key=pl.concat_str("artist_key", "title_key", separator="\x1f"))
    uri_of_name = _mode(frame.filter(pl.col("uri").is_not_null()), "name_key", "uri")
    return frame.join(uri_of_name.rename({"uri": "name_uri"}), on="name_key", how="left").select(
        pl.exclude("name_uri"),
        song_key=pl.coalesce("uri", "name_uri", pl.lit("name:") + pl.col("name_key")),
    )


def _mode(frame: pl.DataFrame, key: str, value: str) -> pl.DataFrame:
    """The most frequent `value` of each `key` (ties go to the smallest), one row per key."""
    return (
        frame.group_by(key, value)
        .len()
        .sort([key, "len", value], descending=[False, True, False])
        .group_by(key, maintain_order=True)
        .first()
        .drop("len")
    )


def _deduplicate(frame: pl.DataFrame) -> pl.DataFrame:
    """One play per (listener, song, start); the longest is kept. Only the rows that have a
    twin are sorted (on every column, so the kept row does not depend on the order files were
    read in); every later step is independent of row order."""
    key = ["user", "song_key", "start_us"]
    twin = frame.select(pl.struct(key).is_duplicated()).to_series()
    if not twin.any():
        return frame
    order = [*key, "ms_played", "skipped", "completed", "duration_ms", "artist", "title"]
    descending = [False, False, False, True, False, False, True, False, False]
    kept = (
        frame.filter(twin)
        .sort(order, descending=descending, nulls_last=True)
        .unique(key, keep="first", maintain_order=True)
    )
    return pl.concat([frame.filter(~twin), kept])


def _skips(frame: pl.DataFrame) -> pl.DataFrame:
    """Resolves `skipped` (rule 4) and `completed` (rule 5) where the export left them open."""
    skipped = pl.coalesce(
        "skipped", pl.col("ms_played") < SKIP_BELOW_MS, pl.lit(False, dtype=pl.Boolean)
    )
    return frame.with_columns(skipped=skipped).with_columns(
        completed=pl.coalesce("completed", ~pl.col("skipped"))
    )


def _users(frame: pl.DataFrame) -> pl.DataFrame:
    return (
        frame.group_by("user")
        .agg(signup_us=pl.col("start_us").min())
        .sort("user")
        .with_row_index("user_id")
        .select(
            pl.col("user_id").cast(pl.Int32),
            pl.col("user").alias("name"),
            _timestamp("signup_us").alias("signup_ts"),
        )
    )


def _songs(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per song_key with its title, artist_key, duration and first play (rules 5, 7)."""
    complete = pl.col("completed") & (pl.col("ms_played") >= MIN_DURATION_MS)
    stats = frame.group_by("song_key").agg(
        stated=pl.col("duration_ms").max(),
        longest=pl.col("ms_played").filter(complete).max(),
        first_us=pl.col("start_us").min(),
    )
    songs = (
        _mode(frame, "song_key", "title")
        .join(_mode(frame, "song_key", "artist_key"), on="song_key")
        .join(stats, on="song_key")
        .with_columns(title_key=normalised("title"))
        .sort("artist_key", "title_key", "song_key")
        .with_row_index("song_id")
    )
    return songs.select(
        "song_key",
        "artist_key",
        pl.col("song_id").cast(pl.Int32),
        "title",
        pl.coalesce("stated", "longest", pl.lit(DEFAULT_DURATION_MS)).alias("duration_ms"),
        pl.lit(NEUTRAL_ENERGY, dtype=pl.Float32).alias("energy"),
        _timestamp("first_us").alias("release_ts"),
    )


def _artists(
    frame: pl.DataFrame, songs: pl.DataFrame, genre_of: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Artists of at least one song (named by their most frequent spelling) and the genres of
    those artists that `genre_of` knows."""
    keys = songs.select("artist_key").unique()
    artists = (
        _mode(frame.join(keys, on="artist_key"), "artist_key", "artist")
        .sort("artist_key")
        .with_row_index("artist_id")
    )
    if genre_of is None:
        genre_of = pl.DataFrame(schema={"artist_key": pl.String, "name": pl.String})
    artists = artists.join(genre_of, on="artist_key", how="left")
    genres = (
        artists.select("name")
        .drop_nulls()
        .unique()
        .sort(pl.col("name").str.to_lowercase(), "name")
        .with_row_index("genre_id")
        .select(pl.col("genre_id").cast(pl.Int32), "name")
    )
    artists = artists.join(genres, on="name", how="left").select(
        pl.col("artist_id").cast(pl.Int32),
        "artist_key",
        pl.col("artist").alias("name"),
        pl.col("genre_id").fill_null(UNKNOWN_GENRE).cast(pl.Int32),
    )
    return artists.sort("artist_id"), genres


def _events(
    frame: pl.DataFrame, users: pl.DataFrame, songs: pl.DataFrame, config: ImportConfig
) -> pl.DataFrame:
    """Events in contract order with sessions (rule 6); `start_us` is kept for the period."""
    events = (
        frame.join(users.select("user_id", pl.col("name").alias("user")), on="user")
        .join(songs.select("song_key", "song_id", song_ms="duration_ms"), on="song_key")
        .select(
            "user_id",
            "song_id",
            "start_us",
            pl.coalesce("ms_played", "song_ms").alias("ms_played"),
            "skipped",
        )
        .sort("user_id", "start_us", "song_id", "ms_played", "skipped")
    )
    end_us = pl.col("start_us") + pl.col("ms_played") * 1000
    busy_until = end_us.cum_max().shift(1).over("user_id")
    new_session = busy_until.is_null() | (pl.col("start_us") - busy_until > config.session_gap_us)
    events = events.with_columns(
        rank=(new_session.cast(pl.Int64).cum_sum().over("user_id") - 1),
    )
    most = events["rank"].max()
    if most is not None and most >= SESSIONS_PER_USER_LIMIT:
        raise DataError(
            f"a listener has more than {SESSIONS_PER_USER_LIMIT:,} sessions; "
            f"raise --session-gap (now {config.session_gap_minutes} minutes)"
        )
    events = events.with_columns(
        session_id=pl.col("user_id").cast(pl.Int64) * SESSIONS_PER_USER_LIMIT + pl.col("rank")
    )
    return events.with_columns(
        position=pl.int_range(pl.len(), dtype=pl.Int32).over("session_id"),
        ts=_timestamp("start_us"),
        ms_played=pl.col("ms_played").cast(pl.Int32),
    )


def read_genres(path: Path) -> pl.DataFrame:
    """An `artist,genre` CSV (a header row of those two words is optional) as `artist_key` and
    genre `name`. An artist listed twice keeps its first genre."""
    rows: list[tuple[str, str]] = []
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            cells = [cell.strip() for cell in row]
            if len(cells) != 2 or not all(cells):
                raise DataError(
                    f"{path} line {reader.line_num}: expected 'artist,genre', got {row!r}"
                )
            if not rows and [cell.lower() for cell in cells] == ["artist", "genre"]:
                continue
            rows.append((cells[0], cells[1]))
    except csv.Error as error:
        raise DataError(f"{path} line {reader.line_num} is not valid CSV: {error}") from None
    if not rows:
        raise DataError(f"{path} lists no artist,genre rows")
    frame = pl.DataFrame(rows, schema={"artist": pl.String, "name": pl.String}, orient="row")
    return (
        frame.with_columns(artist_key=normalised("artist"))
        .unique("artist_key", keep="first", maintain_order=True)
        .select("artist_key", "name")
    )


def _timestamp(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _day(day: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)


def _table(frame: pl.DataFrame, table_schema: pa.Schema) -> pa.Table:
    table = frame.select(table_schema.names).to_arrow()
    return schema.check_table(table.cast(table_schema), table_schema, "imported")
