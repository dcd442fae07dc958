"""Metrics on cases small enough to compute by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nextsong import metrics
from nextsong.errors import ConfigError

# Three songs, four targets. Row 0: target 2 is best. Row 1: target 0 is second. Row 2: all tied,
# so the pessimistic rank is 3. Row 3: target 1 removed from the ranking (-inf): never found.
SCORES = np.array(
    [
        [0.1, 0.2, 0.9],
        [0.5, 0.1, 0.7],
        [0.3, 0.3, 0.3],
        [0.4, -np.inf, 0.2],
    ],
    dtype=np.float32,
)
TARGETS = np.array([2, 0, 1, 1])
RANKS = np.array([1, 2, 3, 4])


def test_ranks_are_pessimistic_and_removed_targets_are_never_found() -> None:
    assert metrics.target_ranks(SCORES, TARGETS).tolist() == RANKS.tolist()


def test_ranks_accept_torch_and_float64() -> None:
    ranks = metrics.target_ranks(torch.from_numpy(SCORES.astype(np.float64)), torch.tensor(TARGETS))
    assert ranks.tolist() == RANKS.tolist()


@pytest.mark.parametrize("cutoff", [1, 2])
def test_cutoff_ranks_are_exact_up_to_the_cutoff(cutoff: int) -> None:
    ranks = metrics.target_ranks(SCORES, TARGETS, cutoff=cutoff)
    expected = np.minimum(RANKS, cutoff + 1)
    expected[3] = 4  # a removed target keeps S + 1
    assert ranks.tolist() == expected.tolist()


def test_cutoff_counts_ties_that_reach_past_it() -> None:
    # Target 0 ties with songs 1 and 2 for first place: pessimistically third, beyond K = 2.
    scores = np.array([[1.0, 1.0, 1.0, 0.0]], dtype=np.float32)
    assert metrics.target_ranks(scores, np.array([0]), cutoff=2).tolist() == [3]
    assert metrics.target_ranks(scores, np.array([3]), cutoff=2).tolist() == [3]
    assert metrics.target_ranks(scores, np.array([0])).tolist() == [3]


def test_cutoff_ranks_match_exact_ranks_on_random_scores() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 30, (200, 50)).astype(np.float32)  # many ties
    targets = rng.integers(0, 50, 200)
    exact = metrics.target_ranks(scores, targets)
    censored = metrics.target_ranks(scores, targets, cutoff=10)
    assert censored.tolist() == np.minimum(exact, 11).tolist()


def test_metrics_by_hand() -> None:
    values = metrics.ranking_metrics(RANKS, ks=(1, 2, 3))
    assert values["HR@1"] == pytest.approx(1 / 4)
    assert values["HR@2"] == pytest.approx(2 / 4)
    assert values["HR@3"] == pytest.approx(3 / 4)
    assert values["MRR@1"] == pytest.approx(1 / 4)
    assert values["MRR@2"] == pytest.approx((1 + 1 / 2) / 4)
    assert values["MRR@3"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 4)
    assert values["NDCG@2"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert values["NDCG@3"] == pytest.approx((1 + 1 / math.log2(3) + 1 / 2) / 4)


def test_hit_rate_curve_matches_hit_rate() -> None:
    ranks = np.array([1, 3, 3, 7, 20, 21, 1000])
    curve = metrics.hit_rate_curve(ranks, 20)
    assert curve.tolist() == [metrics.hit_rate(ranks, k).mean() for k in range(1, 21)]


def test_top_k_coverage_and_popularity() -> None:
    recommended = metrics.top_k(SCORES, 2)
    assert recommended[0].tolist() == [2, 1]
    assert recommended[1].tolist() == [2, 0]
    assert recommended[3].tolist() == [0, 2]
    assert metrics.coverage(np.array([[0, 1], [1, 0]]), n_songs=4) == 0.5
    # Plays 0, 5, 5, 9: song 0 is below all (0 + 0/2)/4; songs 1, 2 tie ((1 + 1/2)/4); song 3 top.
    percentiles = metrics.popularity_percentiles(np.array([0, 5, 5, 9]))
    assert percentiles.tolist() == [0.0, 1.5 / 4, 1.5 / 4, 3 / 4]
    mean = metrics.mean_popularity_percentile(np.array([[3, 1]]), percentiles)
    assert mean == pytest.approx((3 / 4 + 1.5 / 4) / 2)


def test_bootstrap_resamples_sessions() -> None:
    # Two sessions of equal means: every resample has the same mean, a zero-width interval.
    values = np.array([1.0, 0.0, 0.0, 1.0])
    low, high = metrics.bootstrap_interval(values, np.array([7, 7, 9, 9]), resamples=200)
    assert low == high == 0.5
    # Sessions with different means: the interval is wide, contains the mean, and repeats
    # exactly for a seed.
    rng = np.random.default_rng(1)
    values = (rng.random(3000) < 0.3).astype(float)
    groups = np.repeat(np.arange(300), 10)
    values[groups < 30] = 1.0
    first = metrics.bootstrap_interval(values, groups, resamples=500, seed=3)
    assert first == metrics.bootstrap_interval(values, groups, resamples=500, seed=3)
    assert first[0] < values.mean() < first[1]
    assert first[1] - first[0] > 0.02


@pytest.mark.parametrize(
    ("scores", "targets"),
    [
        (np.zeros(3), np.array([0])),
        (np.zeros((2, 3)), np.array([0])),
        (np.zeros((1, 3)), np.array([3])),
        (np.zeros((1, 3)), np.array([-1])),
    ],
)
def test_bad_shapes_and_targets_name_the_problem(scores, targets) -> None:
    with pytest.raises(ConfigError):
        metrics.target_ranks(scores, targets)


def test_bad_cutoffs_are_errors() -> None:
    with pytest.raises(ConfigError, match="cut-offs"):
        metrics.ranking_metrics(RANKS, ks=(0, 5))
    with pytest.raises(ConfigError, match="k must be"):
        metrics.top_k(SCORES, 4)


def test_ranks_and_top_k_share_one_top_k() -> None:
    ranks, top = metrics.ranks_and_top_k(SCORES, TARGETS, 2)
    assert ranks.tolist() == [1, 2, 3, 4]
    assert top.tolist() == metrics.top_k(SCORES, 2).tolist()
