"""The oracle is the generator's distribution: sampled next songs match its probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from nextsong.config import WorldConfig
from nextsong.errors import DataError
from nextsong.store import read_json
from nextsong.synth.catalog import build_catalog
from nextsong.synth.generate import catalog_rng, shard_rng
from nextsong.synth.listeners import build_listeners
from nextsong.synth.oracle import Oracle, session_context
from nextsong.synth.sessions import NextSongSampler, WalkState

DRAWS = 40_000


@pytest.fixture(scope="module")
def oracle(tiny_world: Path) -> Oracle:
    return Oracle.load(tiny_world)


@pytest.fixture(scope="module")
def moments(tiny_world: Path) -> pl.DataFrame:
    """Moments of every kind: session starts, after a skip, after a completed play."""
    events = session_context(pl.read_parquet(tiny_world / "events.parquet"))
    sessions = pl.read_parquet(tiny_world / "truth" / "sessions.parquet")
    events = events.join(sessions.select("session_id", "target_energy"), on="session_id")
    return pl.concat(
        [
            events.filter(pl.col("position") == 0).sample(3, seed=1),
            events.filter(pl.col("previous_skipped")).sample(3, seed=2),
            events.filter((pl.col("position") > 0) & ~pl.col("previous_skipped")).sample(4, seed=3),
        ]
    ).with_columns(pl.col("ts").dt.epoch("us").alias("now_us"))


@pytest.fixture(scope="module")
def sampled(tiny_world: Path, moments: pl.DataFrame) -> list[np.ndarray]:
    """DRAWS next songs per moment from the generator's own sampler (the world's state rebuilt
    from its seed), as counts per song."""
    config = WorldConfig.from_dict(read_json(tiny_world / "truth" / "params.json"))
    catalog = build_catalog(config, catalog_rng(config))
    listeners = build_listeners(config, catalog, config.shard_users(0), shard_rng(config, 0))
    sampler = NextSongSampler(config, catalog, listeners)
    rng = np.random.default_rng(2024)
    counts = []
    for row in moments.iter_rows(named=True):
        state = WalkState(
            listener=np.full(DRAWS, row["user_id"]),
            current=np.full(DRAWS, row["previous_song"]),
            skipped=np.full(DRAWS, row["previous_skipped"]),
            target_energy=np.full(DRAWS, row["target_energy"]),
            now_us=np.full(DRAWS, row["now_us"]),
        )
        counts.append(np.bincount(sampler.draw(state, rng), minlength=catalog.n_songs))
    return counts


def _probabilities(oracle: Oracle, moments: pl.DataFrame) -> np.ndarray:
    return oracle.next_song_probabilities(
        moments["user_id"].to_numpy(),
        moments["session_id"].to_numpy(),
        moments["previous_song"].to_numpy(),
        moments["previous_skipped"].to_numpy(),
        moments["now_us"].to_numpy(),
    )


def _chi_square_p(counts: np.ndarray, probability: np.ndarray) -> float:
    """Pearson's test, pooling the songs expected fewer than 5 times into one bin."""
    expected = probability * counts.sum()
    large = expected >= 5
    observed = np.append(counts[large], counts[~large].sum())
    expected = np.append(expected[large], expected[~large].sum())
    keep = expected > 0
    if (observed[~keep] > 0).any():
        return 0.0  # a song the oracle calls impossible was drawn
    chi = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    # Floored so that combining p-values never takes log(0).
    return max(float(stats.chi2.sf(chi, keep.sum() - 1)), 1e-300)


def test_probabilities_are_distributions(oracle: Oracle, moments: pl.DataFrame) -> None:
    probability = _probabilities(oracle, moments)
    assert probability.shape == (moments.height, oracle.n_songs)
    assert (probability >= 0).all()
    np.testing.assert_allclose(probability.sum(axis=1), 1.0, atol=1e-9)
    after_first = moments["position"].to_numpy() > 0
    previous = moments["previous_song"].to_numpy()
    assert (probability[after_first, previous[after_first]] == 0).all()  # no immediate repeat
    assert (probability[np.arange(moments.height), moments["song_id"].to_numpy()] > 0).all()


def test_sampled_frequencies_match_oracle(
    oracle: Oracle, moments: pl.DataFrame, sampled: list[np.ndarray]
) -> None:
    probability = _probabilities(oracle, moments)
    p_values = [_chi_square_p(c, p) for c, p in zip(sampled, probability, strict=True)]
    # Ten independent tests at a fixed seed: a correct oracle passes each at 1e-4 comfortably.
    assert min(p_values) > 1e-4, p_values
    assert stats.combine_pvalues(p_values).pvalue > 1e-3, p_values


@pytest.mark.parametrize("perturbation", ["flat_follows", "no_energy_fit", "uniform_popularity"])
def test_goodness_of_fit_rejects_a_perturbed_oracle(
    oracle: Oracle, moments: pl.DataFrame, sampled: list[np.ndarray], perturbation: str
) -> None:
    """The test has power: each small change to the oracle's model is detected."""
    moments = moments.filter(pl.col("position") > 0)
    sampled = sampled[3:]  # the sampled counts of the same moments, in the same order
    original = (oracle.follow_weight, oracle.config, oracle.within_genre)
    try:
        if perturbation == "flat_follows":
            oracle.follow_weight = np.where(oracle.follow_weight > 0, 1.0, 0.0)
            oracle.follow_weight /= oracle.follow_weight.sum(axis=1, keepdims=True)
        elif perturbation == "no_energy_fit":
            behaviour = oracle.config.behaviour.__class__(
                **{**oracle.config.behaviour.__dict__, "energy_fit_floor": 1.0}
            )
            oracle.config = oracle.config.__class__(
                **{**oracle.config.__dict__, "behaviour": behaviour}
            )
        else:
            genre_size = np.bincount(oracle.song_genre)[oracle.song_genre]
            oracle.within_genre = np.ones_like(oracle.within_genre) / genre_size
        probability = _probabilities(oracle, moments)
    finally:
        oracle.follow_weight, oracle.config, oracle.within_genre = original
    p_values = [_chi_square_p(c, p) for c, p in zip(sampled, probability, strict=True)]
    assert stats.combine_pvalues(p_values).pvalue < 1e-6, p_values


def test_world_without_truth_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no truth"):
        Oracle.load(tmp_path)
