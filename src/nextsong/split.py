"""The temporal split: the one place every later step takes train, validation and test from.

By default the last 7 days of the world's period are test, the 7 days before them validation, and
everything earlier training. A session belongs to the period in which it starts, so no session is
cut in two. Every model, edge table and statistic is computed from `train` only; `validation` is
for early stopping; `test` is for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from nextsong.errors import ConfigError, DataError
from nextsong.store import SCHEMA_VERSION, read_json, write_json
from nextsong.world import World, load_world, source_checksums

TRAIN, VALIDATION, TEST = "train", "validation", "test"
PERIODS = (TRAIN, VALIDATION, TEST)
SPLIT_FILE = "split.json"
SPLIT_KIND = "split"


@dataclass(frozen=True)
class SplitConfig:
    """Lengths of the last two periods, in days (fractions allowed)."""

    test_days: float = 7.0
    validation_days: float = 7.0

    def __post_init__(self) -> None:
        for name in ("test_days", "validation_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number of days, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number of days, got {value}")
        if self.test_days <= 0:
            raise ConfigError(f"test_days must be positive, got {self.test_days}")
        if self.validation_days < 0:
            raise ConfigError(f"validation_days must be 0 or more, got {self.validation_days}")

    def to_dict(self) -> dict[str, float]:
        return {"test_days": self.test_days, "validation_days": self.validation_days}


@dataclass(frozen=True)
class TemporalSplit:
    """Cut-off times: sessions starting before `train_end` are training, before `validation_end`
    validation, the rest test."""

    config: SplitConfig
    period_start: datetime
    train_end: datetime
    validation_end: datetime
    period_end: datetime

    @property
    def train_end_us(self) -> int:
        return _to_us(self.train_end)

    @property
    def validation_end_us(self) -> int:
        return _to_us(self.validation_end)

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_days": self.config.test_days,
            "validation_days": self.config.validation_days,
            "period_start": self.period_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "validation_end": self.validation_end.isoformat(),
            "period_end": self.period_end.isoformat(),
        }


def make_split(world: World, config: SplitConfig | None = None) -> TemporalSplit:
    """The split of a world's period, checked so that training is not empty."""
    config = config or SplitConfig()
    start, end = world.period_start, world.period_end
    validation_end = end - timedelta(days=config.test_days)
    train_end = validation_end - timedelta(days=config.validation_days)
    if train_end <= start:
        days = (end - start).total_seconds() / 86_400
        raise ConfigError(
            f"test_days ({config.test_days:g}) + validation_days ({config.validation_days:g}) "
            f"cover the whole {days:g}-day period of {world.path}: nothing is left for training; "
            f"together they must be under {days:g}"
        )
    return TemporalSplit(config, start, train_end, validation_end, end)


def session_periods(events: pl.LazyFrame | pl.DataFrame, split: TemporalSplit) -> pl.LazyFrame:
    """One row per session: session_id, user_id, start (its first event's ts) and period."""
    start = pl.col("start").dt.epoch("us")
    return (
        events.lazy()
        .group_by("session_id")
        .agg(pl.col("user_id").first(), pl.col("ts").min().alias("start"))
        .with_columns(
            pl.when(start < split.train_end_us)
            .then(pl.lit(TRAIN))
            .when(start < split.validation_end_us)
            .then(pl.lit(VALIDATION))
            .otherwise(pl.lit(TEST))
            .cast(pl.Enum(PERIODS))
            .alias("period")
        )
    )


def period_events(
    events: pl.LazyFrame | pl.DataFrame, split: TemporalSplit, period: str
) -> pl.LazyFrame:
    """The events of the sessions that start in `period`, lazily and in no particular order."""
    if period not in PERIODS:
        raise ConfigError(f"unknown period {period!r}; valid periods: {', '.join(PERIODS)}")
    sessions = (
        session_periods(events, split).filter(pl.col("period") == period).select("session_id")
    )
    return events.lazy().join(sessions, on="session_id", how="semi")


def split_events(world: World, split: TemporalSplit) -> dict[str, pl.DataFrame]:
    """The world's events by period, each in contract order (user, session, position)."""
    events = pl.from_arrow(world.events).lazy()
    periods = session_periods(events, split).select("session_id", "period")
    tagged = events.join(periods, on="session_id", how="left").collect()
    parts = {
        name: tagged.filter(pl.col("period") == name)
        .drop("period")
        .sort("user_id", "session_id", "position")
        for name in PERIODS
    }
    if parts[TRAIN].is_empty():
        raise DataError(
            f"no session starts before {split.train_end.isoformat()}: the training window is empty"
        )
    return parts


def split_summary(parts: dict[str, pl.DataFrame]) -> dict[str, Any]:
    """Counts per period, and the test users and songs never seen in training (cold start)."""
    counts = {
        name: {
            "events": frame.height,
            "sessions": frame["session_id"].n_unique(),
            "users": frame["user_id"].n_unique(),
            "songs": frame["song_id"].n_unique(),
        }
        for name, frame in parts.items()
    }
    train, test = parts[TRAIN], parts[TEST]
    cold_users = test.filter(~pl.col("user_id").is_in(train["user_id"].unique().implode()))
    cold_songs = test.filter(~pl.col("song_id").is_in(train["song_id"].unique().implode()))
    counts["cold_start"] = {
        "test_users_unseen_in_train": cold_users["user_id"].n_unique(),
        "test_songs_unseen_in_train": cold_songs["song_id"].n_unique(),
        "test_events_of_unseen_songs": cold_songs.height,
    }
    return counts


def _to_us(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


def write_split(folder: Path | str, config: SplitConfig | None = None) -> dict[str, Any]:
    """Splits the world in `folder`, writes `folder/split.json` and returns what it wrote.

    The file holds the settings (later steps take them from here: `read_split_config`), the
    cut-off times, the counts of `split_summary`, and the checksums of the world's events.
    """
    folder = Path(folder)
    world = load_world(folder)
    split = make_split(world, config)
    summary = split_summary(split_events(world, split))
    payload = {
        "kind": SPLIT_KIND,
        "schema_version": SCHEMA_VERSION,
        "split": split.to_dict(),
        "counts": summary,
        "sources": source_checksums(world.manifest, ("events",)),
    }
    write_json(folder / SPLIT_FILE, payload)
    return payload


def read_split_config(folder: Path | str) -> SplitConfig:
    """The settings `nextsong split` saved in `folder`, or the defaults if it saved none."""
    path = Path(folder) / SPLIT_FILE
    if not path.exists():
        return SplitConfig()
    payload = read_json(path)
    settings = payload.get("split") if isinstance(payload, dict) else None
    if not isinstance(settings, dict) or payload.get("kind") != SPLIT_KIND:
        raise DataError(f"{path} is not a nextsong split file: rerun `nextsong split`")
    try:
        return SplitConfig(settings["test_days"], settings["validation_days"])
    except (KeyError, ConfigError) as error:
        raise DataError(
            f"{path} holds invalid split settings ({error}): rerun `nextsong split`"
        ) from None


def check_split_settings(recorded: dict[str, Any], folder: Path | str, artifact: str) -> None:
    """Raises DataError unless the split settings an artifact `recorded` are those that
    `folder` asks for now (its split.json, or the defaults)."""
    wanted = read_split_config(folder).to_dict()
    built = {key: recorded.get(key) for key in wanted}
    if built != wanted:
        raise DataError(
            f"{artifact} was built with split {built}, but {folder} now asks for {wanted} "
            f"(see {Path(folder) / SPLIT_FILE}): rebuild it"
        )
