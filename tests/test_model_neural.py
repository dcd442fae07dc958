"""The neural model on a tiny world: it learns, it beats popularity, and it recovers the three
patterns planted in the world (what follows what, genre taste, calm mornings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from nextsong.errors import ConfigError
from nextsong.evaluate import EvaluationConfig, build_targets, run_model
from nextsong.models import registry
from nextsong.models.base import SessionBatch, TrainingData
from nextsong.models.neural import NeuralConfig, NeuralRecommender
from nextsong.split import make_split, split_events
from nextsong.world import load_world

US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000
# Small but complete: every part switched on, a few passes over the tiny world's targets.
SETTINGS = {
    "dim": 32,
    "epochs": 4,
    "patience": 4,
    "examples_per_epoch": 0,
    "validation_sessions": 200,
    "batch_size": 256,
}


@pytest.fixture(scope="module")
def data(tiny_graph_world: Path) -> TrainingData:
    world = load_world(tiny_graph_world)
    split = make_split(world)
    return TrainingData.from_world(world, split_events(world, split), split)


@pytest.fixture(scope="module")
def trained(data: TrainingData) -> NeuralRecommender:
    torch.set_num_threads(1)
    return registry.create("nextsong", **SETTINGS).fit(data)


@pytest.fixture(scope="module")
def popular(data: TrainingData):
    return registry.create("popular").fit(data)


def _day_at(data: TrainingData, hour: int) -> int:
    """A time in the test week at `hour` UTC."""
    return (data.train_end_us // US_PER_DAY + 8) * US_PER_DAY + hour * US_PER_HOUR


def test_loss_goes_down(trained: NeuralRecommender, data: TrainingData) -> None:
    from nextsong.train import model_tensors, training_examples

    examples = training_examples(data.train, data.play_counts)
    index = np.random.default_rng(0).choice(len(examples), 2000, replace=False)
    songs, skipped = examples.window(index, trained.config.max_length)
    batch = model_tensors(examples, index, songs, skipped, None)
    fresh = registry.create("nextsong", **SETTINGS)
    fresh.build(data)
    with torch.no_grad():
        before = float(fresh.network.eval()(batch))
        after = float(trained.network.eval()(batch))
    losses = [epoch["loss"] for epoch in trained.training_record["history"]]
    assert losses[-1] < losses[0]
    assert after < before - 2.0, f"loss on 2,000 training targets {before:.3f} -> {after:.3f}"


def test_beats_popularity(trained: NeuralRecommender, popular, data: TrainingData) -> None:
    targets = build_targets(data.validation, EvaluationConfig(period="validation", sessions=300))
    index = np.arange(len(targets))
    ours, _, _ = run_model(trained, targets, index, EvaluationConfig())
    theirs, _, _ = run_model(popular, targets, index, EvaluationConfig())
    assert (ours <= 20).mean() > 2 * (theirs <= 20).mean()
    assert (ours <= 20).mean() > 0.2


def test_transitions_what_follows_what(
    trained: NeuralRecommender, popular, data: TrainingData
) -> None:
    """For the most frequent training pairs A -> B, B is in the top 10 after a session ending
    in A far more often than popularity would place it there."""
    pairs = (
        data.train.select(
            pl.col("song_id").shift(1).over("session_id").alias("a"),
            pl.col("song_id").alias("b"),
            "user_id",
        )
        .drop_nulls()
        .group_by("a", "b")
        .agg(pl.len().alias("n"), pl.col("user_id").first())
        .sort("n", "a", "b", descending=[True, False, False])
        .unique("a", keep="first", maintain_order=True)
        .head(40)
    )
    batch = SessionBatch.from_sessions(
        pairs["user_id"].to_numpy(),
        [[a] for a in pairs["a"].to_list()],
        np.full(pairs.height, _day_at(data, 18)),
    )
    follows = pairs["b"].to_numpy()[:, None]
    ours = (trained.recommend(batch, k=10)[0] == follows).any(axis=1).mean()
    theirs = (popular.recommend(batch, k=10)[0] == follows).any(axis=1).mean()
    assert ours >= 0.6, f"B in the top 10 for {ours:.0%} of the pairs"
    assert ours >= theirs + 0.4


def test_taste_genre_fans_get_their_genre(trained: NeuralRecommender, data: TrainingData) -> None:
    """Listeners with at least half their plays in one genre: that genre's share of their top 10
    (first song of a session) is far above its share of the catalog."""
    genre_of = data.songs["genre_id"].to_numpy()
    plays = data.train.select("user_id", pl.col("song_id")).with_columns(
        genre=pl.Series(genre_of[data.train["song_id"].to_numpy()])
    )
    shares = (
        plays.group_by("user_id", "genre")
        .len()
        .with_columns((pl.col("len") / pl.col("len").sum().over("user_id")).alias("share"))
        .filter(pl.col("share") >= 0.5)
        .sort("user_id")
    )
    assert shares.height >= 20
    users, genres = shares["user_id"].to_numpy(), shares["genre"].to_numpy()
    batch = SessionBatch.from_sessions(users, [[] for _ in users], np.full(len(users), 0))
    batch = SessionBatch(
        batch.user_id, batch.session_id, batch.songs, batch.skipped,
        np.full(len(users), _day_at(data, 18)),
    )  # fmt: skip
    top = trained.recommend(batch, k=10)[0]
    in_genre = (genre_of[top] == genres[:, None]).mean()
    catalog_share = np.bincount(genre_of)[genres].mean() / len(genre_of)
    assert in_genre > 5 * catalog_share, f"{in_genre:.2f} vs catalog {catalog_share:.3f}"


def test_time_calm_mornings(trained: NeuralRecommender, data: TrainingData) -> None:
    """The same listener and session scored at 7h and at 21h: the mean energy of the top 10 is
    lower in the morning: on average (by more than three standard errors) and for twice as many
    listeners as the other way round. Sessions are at their start, where taste (whose energy
    follows the hour) weighs most in the mixture."""
    energy = data.songs["energy"].to_numpy()
    users = np.unique(data.validation["user_id"].to_numpy())
    means = {}
    for hour in (7, 21):
        batch = SessionBatch.from_sessions(
            users, [[] for _ in users], np.full(len(users), _day_at(data, hour))
        )
        means[hour] = energy[trained.recommend(batch, k=10)[0]].mean(axis=1)
    difference = means[21] - means[7]
    error = difference.std() / np.sqrt(len(difference))
    assert difference.mean() > 3 * error, (
        f"evening - morning {difference.mean():.3f} +- {error:.3f}"
    )
    assert (difference > 0).sum() > 2 * (difference < 0).sum()


def test_a_new_song_is_placed_by_its_artist(trained: NeuralRecommender, data: TrainingData) -> None:
    """A song with no training play scores higher after a song of its artist than after a song
    of an unrelated artist: its embedding comes through the catalog graph."""
    known = data.play_counts > 0
    artist = data.songs["artist_id"].to_numpy()
    genre = data.songs["genre_id"].to_numpy()
    new = [s for s in np.flatnonzero(~known) if ((artist == artist[s]) & known).any()][:20]
    assert new, "the tiny world has songs released after training"
    same = [int(np.flatnonzero((artist == artist[s]) & known)[0]) for s in new]
    other = [int(np.flatnonzero((genre != genre[s]) & known)[0]) for s in new]
    now = np.full(len(new), _day_at(data, 18))
    rows = np.arange(len(new))
    ranks = []
    for previous in (same, other):
        batch = SessionBatch.from_sessions(np.zeros(len(new)), [[a] for a in previous], now)
        scores = trained.score(batch)
        assert np.isfinite(scores[rows, new]).all()
        ranks.append((scores >= scores[rows, new][:, None]).sum(axis=1))
    near, far = ranks
    assert (near < far).mean() >= 0.8, f"ranks after its artist {near}, after another {far}"


@pytest.mark.parametrize(
    ("name", "present", "absent"),
    [
        ("nextsong", ["encoder.", "session.", "hour.", "gate."], []),
        ("nextsong-no-graph", ["session.", "artist."], ["encoder.", "user_conv."]),
        ("nextsong-no-session", ["encoder."], ["session."]),
        ("nextsong-no-time", ["session."], ["hour.", "weekday."]),
        ("nextsong-no-transitions", ["session."], ["gate.", "follow_score."]),
        ("gru4rec", ["session.rnn."], ["encoder.", "artist.", "user_id.", "hour.", "gate."]),
        ("sasrec", ["session.attention."], ["session.rnn.", "encoder.", "gate."]),
    ],
)
def test_each_name_switches_its_parts(
    name: str, present: list[str], absent: list[str], data: TrainingData
) -> None:
    model = registry.create(name, dim=16)
    model.build(data)
    weights = list(model.network.state_dict())
    for prefix in present:
        assert any(w.startswith(prefix) for w in weights), f"{name} lacks {prefix}"
    for prefix in absent:
        assert not any(w.startswith(prefix) for w in weights), f"{name} has {prefix}"


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(ConfigError, match="session must be one of gru, sasrec, none"):
        NeuralConfig(session="lstm")
    with pytest.raises(ConfigError, match="graph=True needs catalog=True"):
        NeuralConfig(catalog=False)
    with pytest.raises(ConfigError, match="dim must be a positive integer, got 0"):
        NeuralConfig(dim=0)


def test_weights_of_another_shape_are_a_one_line_error(trained: NeuralRecommender) -> None:
    """A run saved by code whose network had other shapes cannot load: DataError, one line."""
    from nextsong.errors import DataError

    arrays, metadata = trained.state()
    key = "network.song_bias"
    arrays = {**arrays, key: np.zeros(len(arrays[key]) + 1, dtype=arrays[key].dtype)}
    other = registry.create("nextsong", **SETTINGS)
    with pytest.raises(DataError, match="saved weights do not fit model nextsong") as error:
        other.load_state(arrays, metadata)
    assert "\n" not in str(error.value) and "song_bias" in str(error.value)


def test_a_loaded_model_scores_without_torch(trained: NeuralRecommender, tmp_path: Path) -> None:
    """A saved model scores through numpy (`models/serving.py`): loading it and ranking a
    session imports neither torch nor PyG, which is what keeps `recommend`'s cold start short."""
    import subprocess
    import sys

    folder = trained.save(tmp_path / "run")
    program = (
        "import sys, numpy as np\n"
        "from nextsong.models import registry\n"
        "from nextsong.models.base import SessionBatch\n"
        f"model = registry.load_model({str(folder)!r})\n"
        "batch = SessionBatch.from_sessions(np.array([0]), [[1, 2, 3]], np.array([0]))\n"
        "songs, _ = model.recommend(batch, k=5)\n"
        "assert len(set(songs[0].tolist()) - {1, 2, 3}) == 5\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torch_geometric')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_a_sessions_own_plays_leave_the_listeners_history(trained: NeuralRecommender) -> None:
    """In training, plays of the session being predicted are taken off the listener's top
    songs: a song played only there stops being a history candidate and a taste neighbour."""
    network = trained.network.eval()
    user = int(np.argmax((trained.inputs.user_songs >= 0).sum(axis=1)))
    batch = {
        "user": torch.tensor([user, user]),
        "songs": torch.full((2, 1), -1, dtype=torch.long),
        "skipped": torch.zeros((2, 1), dtype=torch.bool),
        "hour": torch.tensor([20, 20]),
        "weekday": torch.tensor([2, 2]),
    }
    plays = torch.from_numpy(np.expm1(trained.inputs.user_song_weight[[user, user]]))
    with torch.no_grad():
        plain = network._parts(batch)
        batch["history_in_session"] = plays * torch.tensor([[0.0], [1.0]])  # row 1: all of them
        emptied = network._parts(batch)
    history = 3  # the gate's slot of the history expert
    assert torch.equal(emptied["gate"][0], plain["gate"][0])
    assert torch.isneginf(emptied["gate"][1, history]) and torch.isfinite(plain["gate"][0, history])
    assert not torch.allclose(emptied["query"][1], plain["query"][1])
