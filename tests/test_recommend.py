"""`nextsong recommend` on a tiny world with a saved `transitions` run: the session it continues,
the JSON shape, exclusions, the per-artist limit, the meaning of score, and every bad input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nextsong.models.base import SessionBatch, exclude_session_songs
from nextsong.recommend import RecommendService, Request, save_baseline_run, softmax_rows
from nextsong.world import load_world

MODEL = "transitions"
REASON_KINDS = {"genre", "artist", "similar_users", "follows", "time_of_day"}


@pytest.fixture(scope="module")
def world(tiny_graph_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny world with a fitted `transitions` run marked best."""
    path = tmp_path_factory.mktemp("recommend") / "world"
    shutil.copytree(tiny_graph_world, path)
    save_baseline_run(path, MODEL)
    return path


@pytest.fixture(scope="module")
def service(world: Path) -> RecommendService:
    return RecommendService(world, MODEL)


@pytest.fixture(scope="module")
def events(world: Path) -> pl.DataFrame:
    return pl.from_arrow(load_world(world).events)


def _json(run_cli: Callable, world: Path, *args: object) -> dict:
    result = run_cli("recommend", "--data", world, "--model", MODEL, "--json", *args)
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def test_json_has_exactly_the_architecture_shape(run_cli: Callable, world: Path) -> None:
    answer = _json(run_cli, world, "--user", 0, "--k", 7)
    assert set(answer) == {"user", "hour", "session", "recommendations"}
    assert answer["user"] == 0 and 0 <= answer["hour"] <= 23
    assert all(isinstance(song, int) for song in answer["session"])
    items = answer["recommendations"]
    assert [item["rank"] for item in items] == list(range(1, 8))
    keys = {"rank", "song_id", "title", "artist", "genre", "score", "reasons"}
    for item in items:
        assert set(item) == keys
        assert isinstance(item["song_id"], int) and isinstance(item["title"], str)
        assert 0 <= item["score"] <= 1
        for reason in item["reasons"]:
            assert set(reason) == {"kind", "text", "value"} and reason["kind"] in REASON_KINDS
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)
    assert any(item["reasons"] for item in items)


def test_continues_the_latest_session_at_its_hour(
    run_cli: Callable, world: Path, events: pl.DataFrame
) -> None:
    user = 5
    sessions = (
        events.filter(pl.col("user_id") == user)
        .group_by("session_id")
        .agg(pl.col("ts").min().alias("start"))
        .sort("start", "session_id")
    )
    latest, start = sessions.row(-1)
    expected = events.filter(pl.col("session_id") == latest).sort("position")["song_id"].to_list()
    answer = _json(run_cli, world, "--user", user)
    assert answer["session"] == expected
    assert answer["hour"] == start.hour
    assert _json(run_cli, world, "--user", user, "--hour", 3)["hour"] == 3

    text = run_cli("recommend", "--data", world, "--model", MODEL, "--user", user).stdout
    titles = load_world(world).songs["title"].to_pylist()
    assert f"{' -> '.join(titles[s] for s in expected[-8:])} -> ?" in " ".join(text.split())
    assert "Top 5 recommendations" in text and "Why was" in text


def test_session_songs_and_recent_plays_are_never_recommended(
    run_cli: Callable, world: Path, events: pl.DataFrame
) -> None:
    first = _json(run_cli, world, "--user", 0, "--k", 10)
    top = [item["song_id"] for item in first["recommendations"]]
    # Planted: the session is the previous answer's best songs, so the model would pick them.
    session = ",".join(map(str, top[:4]))
    again = _json(run_cli, world, "--user", 0, "--k", 20, "--session", session)
    assert again["session"] == top[:4]
    assert not set(top[:4]) & {item["song_id"] for item in again["recommendations"]}

    mine = events.filter(pl.col("user_id") == 0)
    last = (
        mine.group_by("song_id")
        .agg(pl.col("ts").max())
        .sort("ts", "song_id", descending=[True, False])
    )
    recent = last["song_id"].head(30).to_list()
    answer = _json(run_cli, world, "--user", 0, "--k", 50, "--exclude-recent", 30)
    assert not set(recent) & {item["song_id"] for item in answer["recommendations"]}
    plain = _json(run_cli, world, "--user", 0, "--k", 50)
    assert set(recent) & {item["song_id"] for item in plain["recommendations"]}  # it mattered


def test_max_per_artist_is_honoured(
    run_cli: Callable, world: Path, service: RecommendService
) -> None:
    plain = _json(run_cli, world, "--user", 0, "--k", 10)
    artists = [item["artist"] for item in plain["recommendations"]]
    assert len(set(artists)) < len(artists)  # planted: without the limit an artist repeats
    limited = _json(run_cli, world, "--user", 0, "--k", 10, "--max-per-artist", 1)
    items = limited["recommendations"]
    assert len(items) == 10
    assert len({item["artist"] for item in items}) == 10
    # The limited list is the unlimited ranking with later songs of a seen artist skipped.
    full = service.recommend(Request(user=0, k=100))
    seen, expected = set(), []
    for item in full.recommendations:
        if item.artist not in seen:
            seen.add(item.artist)
            expected.append(item.song_id)
    assert [item["song_id"] for item in items] == expected[:10]


def test_score_is_the_softmax_of_the_model_scores_after_exclusions(
    service: RecommendService,
) -> None:
    answer = service.recommend(Request(user=2, k=5, exclude_recent=3))
    recent = service.history.recent(2, 3)
    batch = SessionBatch.from_sessions([2], [answer.session], [0])
    scores = exclude_session_songs(service.model.score(batch).astype(np.float64), batch.songs)
    scores[0, recent] = -np.inf
    finite = np.isfinite(scores[0])
    by_hand = np.exp(scores[0][finite] - scores[0][finite].max())
    probability = np.zeros_like(scores[0])
    probability[finite] = by_hand / by_hand.sum()
    for item in answer.recommendations:
        assert item.score == pytest.approx(probability[item.song_id])
    assert softmax_rows(np.array([[0.0, -np.inf, np.log(3.0)]])).tolist() == [[0.25, 0.0, 0.75]]


def test_batch_answers_match_single_requests(service: RecommendService) -> None:
    requests = [Request(user=u, k=5, hour=h) for u, h in ((0, 8), (1, 20), (7, 3))]
    together = service.recommend_many(requests)
    for request, answer in zip(requests, together, strict=True):
        assert answer.to_json() == service.recommend(request).to_json()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--user", 300), "user 300 is not in"),
        (("--user", -1), "valid: 0..299"),
        (("--user", 0, "--session", "3,99999"), "song 99999 in --session"),
        (("--user", 0, "--session", "3,x"), "--session must be song ids"),
        (("--user", 0, "--k", 0), "--k must be in 1..100, got 0"),
        (("--user", 0, "--k", 101), "--k must be in 1..100, got 101"),
        (("--user", 0, "--hour", 24), "--hour must be in 0..23 (UTC), got 24"),
        (("--user", 0, "--hour", -1), "--hour must be in 0..23 (UTC), got -1"),
        (("--user", 0, "--exclude-recent", -2), "--exclude-recent must be in 0..200"),
        (("--user", 0, "--max-per-artist", 0), "--max-per-artist must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    run_cli: Callable, world: Path, args: tuple, named: str
) -> None:
    result = run_cli("recommend", "--data", world, "--model", MODEL, *args)
    assert result.code == 2
    assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0
    assert named in result.stderr


def test_no_trained_model_says_what_to_run_first(run_cli: Callable, world: Path) -> None:
    result = run_cli("recommend", "--data", world, "--user", 0)
    assert result.code == 2 and result.stderr.strip().count("\n") == 0
    assert "no trained run of model 'nextsong'" in result.stderr
    assert f"run `nextsong train --data {world}` first" in result.stderr
    result = run_cli("recommend", "--data", world, "--user", 0, "--model", "popular")
    assert result.code == 2 and "save_baseline_run" in result.stderr
    result = run_cli("recommend", "--data", world, "--user", 0, "--model", "nope")
    assert result.code == 2 and "unknown model 'nope'" in result.stderr
