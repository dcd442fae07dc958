"""The behaviour every recommender must show, run against every registered model.

A new model joins this suite by registering its name (`models/registry.py`); trained models may
register smaller `test_settings` so that fitting on the tiny world stays fast. Models fit on the
tiny world with its edges and graph built (`tiny_graph_world`), as `nextsong train` would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nextsong import metrics
from nextsong.errors import ConfigError, NextsongError
from nextsong.evaluate import EvaluationConfig, build_targets, run_model
from nextsong.models import registry
from nextsong.models.base import (
    MODEL_FILE,
    WEIGHTS_FILE,
    Recommender,
    SessionBatch,
    TrainingData,
)
from nextsong.split import make_split, split_events
from nextsong.store import MANIFEST
from nextsong.world import load_world

NAMES = [spec.name for spec in registry.specs()]


@pytest.fixture(scope="module")
def tiny_data(tiny_graph_world: Path):
    world = load_world(tiny_graph_world)
    split = make_split(world)
    parts = split_events(world, split)
    training = TrainingData.from_world(world, parts, split)
    targets = build_targets(parts["test"], EvaluationConfig(sessions=150, seed=1))
    return training, targets


_fitted: dict[str, Recommender] = {}


def fit(name: str, training: TrainingData) -> Recommender:
    spec = registry.get(name)
    return spec.create(**spec.test_settings).fit(training)


@pytest.fixture(params=NAMES)
def model(request, tiny_data) -> Recommender:
    """Each registered model, fitted once on the tiny world's training window."""
    name = request.param
    if name not in _fitted:
        _fitted[name] = fit(name, tiny_data[0])
    return _fitted[name]


@pytest.fixture
def batch(tiny_data) -> SessionBatch:
    """Sessions-so-far of mixed lengths (1 song up to dozens) from the tiny world's test period."""
    targets = tiny_data[1]
    return targets.batch(np.arange(0, len(targets), max(1, len(targets) // 40)))


def test_scores_cover_the_catalog_as_floats(model: Recommender, batch: SessionBatch) -> None:
    scores = model.score(batch)
    assert scores.shape == (len(batch), model.n_songs)
    assert scores.dtype.kind == "f"
    assert not np.isnan(scores).any()
    assert not np.isposinf(scores).any()
    assert np.isfinite(scores).any(axis=1).all(), "every row must rank some song"


def test_scores_are_deterministic(model: Recommender, batch: SessionBatch, tiny_data) -> None:
    first = model.score(batch)
    assert np.array_equal(first, model.score(batch))
    again = fit(model.name, tiny_data[0])
    np.testing.assert_allclose(again.score(batch), first, rtol=1e-5, atol=1e-7)


def test_a_row_scores_the_same_alone_or_in_a_batch(model: Recommender, batch: SessionBatch) -> None:
    together = model.score(batch)
    for row in (0, len(batch) // 2, len(batch) - 1):
        length = int(batch.length[row])
        alone = SessionBatch.from_sessions(
            batch.user_id[[row]],
            [batch.songs[row, batch.songs.shape[1] - length :].tolist()],
            batch.now_us[[row]],
            skipped=[batch.skipped[row, batch.songs.shape[1] - length :].tolist()],
            session_id=batch.session_id[[row]],
        )
        np.testing.assert_allclose(model.score(alone)[0], together[row], rtol=1e-5, atol=1e-7)


def test_recommend_never_repeats_the_session(model: Recommender, batch: SessionBatch) -> None:
    songs, scores = model.recommend(batch, k=10)
    assert songs.shape == scores.shape == (len(batch), 10)
    for row in range(len(batch)):
        played = set(batch.songs[row][batch.songs[row] >= 0].tolist())
        listed = [s for s in songs[row].tolist() if s >= 0]
        assert not played & set(listed)
        assert len(set(listed)) == len(listed)
        assert np.all(np.diff(scores[row]) <= 0), "best first"
    raw = model.score(batch)
    np.testing.assert_allclose(np.take_along_axis(raw, np.maximum(songs, 0), 1), scores)


def test_first_song_of_a_session(model: Recommender, batch: SessionBatch) -> None:
    start = SessionBatch(
        user_id=batch.user_id,
        session_id=batch.session_id,
        songs=np.zeros((len(batch), 0), dtype=np.int64),
        skipped=np.zeros((len(batch), 0), dtype=bool),
        now_us=batch.now_us,
    )
    scores = model.score(start)
    assert scores.shape == (len(batch), model.n_songs)
    assert not np.isnan(scores).any()


def test_a_user_unseen_in_training_is_served(model: Recommender, batch: SessionBatch) -> None:
    if registry.get(model.name).requires_truth:
        pytest.skip("the oracle knows exactly the world's listeners")
    stranger = SessionBatch(
        user_id=np.full(len(batch), 10**9),
        session_id=batch.session_id,
        songs=batch.songs,
        skipped=batch.skipped,
        now_us=batch.now_us,
    )
    scores = model.score(stranger)
    assert scores.shape == (len(batch), model.n_songs)
    assert not np.isnan(scores).any()


def test_an_unknown_song_is_a_clear_error(model: Recommender, batch: SessionBatch) -> None:
    songs = batch.songs.copy()
    songs[0, -1] = model.n_songs
    bad = SessionBatch(batch.user_id, batch.session_id, songs, batch.skipped, batch.now_us)
    with pytest.raises(ConfigError, match=str(model.n_songs)):
        model.score(bad)


def test_save_and_load_give_the_same_scores(
    model: Recommender, batch: SessionBatch, tmp_path: Path
) -> None:
    folder = model.save(tmp_path / model.name)
    assert {p.name for p in folder.iterdir()} == {MODEL_FILE, WEIGHTS_FILE, MANIFEST}
    loaded = registry.load_model(folder)
    assert type(loaded) is type(model)
    assert loaded.name == model.name
    assert loaded.config == model.config
    # A loaded neural model scores through numpy (models/serving.py), the fitted one through
    # torch: the same arithmetic, so equal up to float32 rounding, with the same songs ruled out.
    again, first = loaded.score(batch), model.score(batch)
    assert np.array_equal(np.isneginf(again), np.isneginf(first))
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=2e-5)


def test_beats_chance_on_the_tiny_world(model: Recommender, tiny_data) -> None:
    """HR@20 far above what a random ranking gets (20 / catalog): scores point the right way."""
    _, targets = tiny_data
    config = EvaluationConfig()
    ranks, _, _ = run_model(model, targets, np.arange(len(targets)), config)
    chance = 20 / model.n_songs
    assert metrics.hit_rate(ranks, 20).mean() > 2 * chance


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_models_and_unknown_settings_are_errors(name: str, batch: SessionBatch) -> None:
    with pytest.raises(NextsongError, match="not fitted"):
        registry.create(name).score(batch)
    with pytest.raises(ConfigError, match="no setting"):
        registry.create(name, no_such_setting=1)


def test_unknown_model_names_list_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="popular"):
        registry.create("no-such-model")
