"""The temporal split: periods by session start, counts, cold start, split.json and bad input."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from nextsong.errors import ConfigError
from nextsong.split import (
    PERIODS,
    SPLIT_FILE,
    TEST,
    TRAIN,
    SplitConfig,
    make_split,
    read_split_config,
    split_events,
    split_summary,
)
from nextsong.store import read_json
from nextsong.world import load_world


def test_sessions_fall_whole_into_the_period_they_start_in(tiny_world: Path) -> None:
    world = load_world(tiny_world)
    split = make_split(world)
    parts = split_events(world, split)

    assert sum(part.height for part in parts.values()) == world.events.num_rows
    cuts = {TRAIN: (split.period_start, split.train_end), TEST: (split.validation_end, None)}
    seen: set[int] = set()
    for name, part in parts.items():
        sessions = set(part["session_id"].unique().to_list())
        assert not sessions & seen  # no session in two periods
        seen |= sessions
        starts = part.group_by("session_id").agg(pl.col("ts").min())["ts"]
        low, high = cuts.get(name, (split.train_end, split.validation_end))
        assert starts.min() >= low
        if high is not None:
            assert starts.max() < high
    assert split.train_end.isoformat() == "2026-01-19T00:00:00+00:00"  # 28 days - 7 - 7


def test_summary_counts_match_a_plain_count(tiny_world: Path) -> None:
    world = load_world(tiny_world)
    split = make_split(world)
    summary = split_summary(split_events(world, split))

    # The same counts from plain Python over the rows, periods decided by each session's start.
    rows = world.events.select(["user_id", "session_id", "song_id", "ts"]).to_pylist()
    start: dict[int, object] = {}
    for row in rows:
        start[row["session_id"]] = min(start.get(row["session_id"], row["ts"]), row["ts"])
    users, songs, events = defaultdict(set), defaultdict(set), defaultdict(int)
    for row in rows:
        moment = start[row["session_id"]]
        period = (
            TRAIN
            if moment < split.train_end
            else "validation"
            if moment < split.validation_end
            else TEST
        )
        users[period].add(row["user_id"])
        songs[period].add(row["song_id"])
        events[period] += 1
    for period in PERIODS:
        assert summary[period]["events"] == events[period]
        assert summary[period]["users"] == len(users[period])
        assert summary[period]["songs"] == len(songs[period])
    cold = summary["cold_start"]
    assert cold["test_users_unseen_in_train"] == len(users[TEST] - users[TRAIN])
    assert cold["test_songs_unseen_in_train"] == len(songs[TEST] - songs[TRAIN])
    assert cold["test_songs_unseen_in_train"] > 0  # new releases: the tiny world has some


def test_split_command_prints_and_writes_split_json(tiny_world: Path, edit_world, run_cli) -> None:
    world = edit_world()
    result = run_cli("split", "--data", world, "--test-days", 5, "--validation-days", 3.5)

    assert result.code == 0, result.stderr
    payload = read_json(world / SPLIT_FILE)
    assert payload["split"]["test_days"] == 5 and payload["split"]["validation_days"] == 3.5
    assert payload["split"]["train_end"] == "2026-01-24T12:00:00+00:00"
    expected = split_summary(
        split_events(load_world(world), make_split(load_world(world), SplitConfig(5, 3.5)))
    )
    assert payload["counts"] == expected
    assert f"{expected[TRAIN]['events']:,}" in result.stdout
    assert "cold start" in result.stdout
    # Later steps take the settings from here.
    assert read_split_config(world) == SplitConfig(5, 3.5)
    assert read_split_config(tiny_world) == SplitConfig()  # no split.json: the defaults


@pytest.mark.parametrize(
    ("test_days", "validation_days", "message"),
    [
        (7, -1, "validation_days must be 0 or more, got -1"),
        (0, 7, "test_days must be positive, got 0"),
        (math.inf, 7, "test_days must be a finite number of days, got inf"),
        (
            20,
            10,
            "test_days (20) + validation_days (10) cover the whole 28-day period",
        ),
    ],
)
def test_bad_split_settings_are_one_line_errors(
    tiny_world: Path, run_cli, test_days: float, validation_days: float, message: str
) -> None:
    result = run_cli(
        "split",
        "--data",
        tiny_world,
        "--test-days",
        test_days,
        "--validation-days",
        validation_days,
    )
    assert result.code == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tiny_world / SPLIT_FILE).exists()


def test_split_config_rejects_what_is_not_a_number() -> None:
    with pytest.raises(ConfigError, match="test_days must be a number of days, got '7'"):
        SplitConfig(test_days="7")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="validation_days must be a finite number"):
        SplitConfig(validation_days=math.nan)


def test_empty_training_window_is_a_data_error(edit_world, run_cli) -> None:
    """A world whose sessions all start in the last 14 days leaves training empty."""

    def drop_early_sessions(events: pa.Table) -> pa.Table:
        cut = datetime(2026, 1, 19, tzinfo=UTC)
        late = pl.from_arrow(events).group_by("session_id").agg(pl.col("ts").min() >= cut)
        keep = late.filter(pl.col("ts"))["session_id"].to_arrow()
        return events.filter(pc.is_in(events["session_id"], keep))

    world = edit_world(drop_early_sessions)
    result = run_cli("split", "--data", world)
    assert result.code == 2
    assert "the training window is empty" in result.stderr
    assert "2026-01-19T00:00:00+00:00" in result.stderr


def test_missing_world_through_the_console_script(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nextsong", "split", "--data", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: no world at {tmp_path / 'nowhere'}: run `nextsong generate --out "
        f"{tmp_path / 'nowhere'}` first"
    )
