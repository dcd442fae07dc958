"""Full-ranking metrics of next-song prediction, vectorised over a batch of targets.

Every function is pure. The inputs are a score matrix `scores` (B, S) over the whole catalog of S
songs (higher is better, `-inf` marks a song that is not in the ranking) and the song each of the
B targets actually played next, `targets` (B,). Scores may be numpy arrays or torch tensors;
results are numpy arrays.

Rank rule: ties are broken pessimistically. The rank of a target is the number of songs whose
score is greater than **or equal to** its own (so 1 is best, and a model that gives every song
the same score ranks every target last, S). A target whose own score is `-inf` (removed from the
ranking, e.g. a song already played in the session) is never found: its rank is S + 1.

With one relevant song per target, the per-target metrics at a cut-off K are
  HR@K   = 1 if rank <= K else 0
  MRR@K  = 1 / rank if rank <= K else 0
  NDCG@K = 1 / log2(rank + 1) if rank <= K else 0   (the ideal DCG is 1).
Report values are their means over targets. Bootstrap intervals resample whole sessions, since
the targets of one session are not independent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from nextsong.errors import ConfigError

DEFAULT_KS = (5, 10, 20)


def _as_tensor(values: Any):
    import torch

    if isinstance(values, torch.Tensor):
        return values
    return torch.from_numpy(np.ascontiguousarray(values))


def _check_scores(scores, targets) -> None:
    if scores.ndim != 2:
        raise ConfigError(f"scores must be a (B, S) matrix, got shape {tuple(scores.shape)}")
    if targets.ndim != 1 or targets.shape[0] != scores.shape[0]:
        raise ConfigError(
            f"targets must have shape ({scores.shape[0]},) to match scores, "
            f"got {tuple(targets.shape)}"
        )
    n_songs = scores.shape[1]
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= n_songs):
        raise ConfigError(
            f"targets must be song indices in 0..{n_songs - 1}, got values in "
            f"{int(targets.min())}..{int(targets.max())}"
        )


def target_ranks(scores: Any, targets: Any, cutoff: int | None = None) -> np.ndarray:
    """(B,) 1-based pessimistic rank of each target among the S songs of its row.

    Without `cutoff` every rank is exact (one comparison pass over the matrix). With `cutoff`
    the ranks up to `cutoff` are exact and larger ones are reported as `cutoff + 1`, which is all
    any @K metric with K <= cutoff needs; it uses a top-k and is several times faster.
    """
    import torch

    scores, targets = _as_tensor(scores), _as_tensor(targets).long()
    _check_scores(scores, targets)
    if cutoff is None or cutoff >= scores.shape[1]:
        own = scores.gather(1, targets[:, None])  # (B, 1)
        ranks = (scores >= own).sum(dim=1)
        ranks = torch.where(torch.isneginf(own[:, 0]), scores.shape[1] + 1, ranks)
        return ranks.numpy().astype(np.int64)
    return ranks_and_top_k(scores, targets, cutoff)[0]


def ranks_and_top_k(scores: Any, targets: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(B,) ranks censored at k (exact up to k, else k + 1, as `target_ranks` with cutoff=k)
    and the (B, k) indices of the k best songs, best first, from a single top-k."""
    import torch

    scores, targets = _as_tensor(scores), _as_tensor(targets).long()
    _check_scores(scores, targets)
    n_songs = scores.shape[1]
    if not 1 <= k <= n_songs:
        raise ConfigError(f"k must be in 1..{n_songs} (the catalog size), got {k}")
    own = scores.gather(1, targets[:, None])  # (B, 1)
    top = torch.topk(scores, k, dim=1)  # (B, k), descending
    ranks = (top.values >= own).sum(dim=1)
    # If the k-th best score is above the target's, the target is beyond k; if equal, ties may
    # reach past k, so those rows are counted over the whole catalog.
    last = top.values[:, -1]
    ranks = torch.where(last > own[:, 0], k + 1, ranks)
    tied = last == own[:, 0]
    if bool(tied.any()):
        exact = (scores[tied] >= own[tied]).sum(dim=1)
        ranks[tied] = torch.clamp(exact, max=k + 1)
    ranks = torch.where(torch.isneginf(own[:, 0]), n_songs + 1, ranks)
    return ranks.numpy().astype(np.int64), top.indices.numpy()


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(not isinstance(k, int | np.integer) or k < 1 for k in ks):
        raise ConfigError(f"cut-offs K must be positive integers, got {ks!r}")
    return ks


def hit_rate(ranks: np.ndarray, k: int) -> np.ndarray:
    """(B,) 1.0 where the target is in the top k, else 0.0."""
    return (np.asarray(ranks) <= k).astype(np.float64)


def reciprocal_rank(ranks: np.ndarray, k: int) -> np.ndarray:
    """(B,) 1 / rank where the target is in the top k, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks <= k, 1.0 / ranks, 0.0)


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """(B,) 1 / log2(rank + 1) where the target is in the top k, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)


def per_target_metrics(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, np.ndarray]:
    """{"HR@K": (B,), "MRR@K": (B,), "NDCG@K": (B,)} for every K: per-target values, so that
    callers can average them over any subset (a breakdown) or resample them (a bootstrap)."""
    values: dict[str, np.ndarray] = {}
    for k in _check_ks(ks):
        values[f"HR@{k}"] = hit_rate(ranks, k)
        values[f"MRR@{k}"] = reciprocal_rank(ranks, k)
        values[f"NDCG@{k}"] = ndcg(ranks, k)
    return values


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Means over targets of HR@K, MRR@K and NDCG@K for every K (NaN when there is no target)."""
    return {
        name: float(values.mean()) if len(values) else float("nan")
        for name, values in per_target_metrics(ranks, ks).items()
    }


def hit_rate_curve(ranks: np.ndarray, max_k: int) -> np.ndarray:
    """(max_k,) HR@1 .. HR@max_k in one pass (a cumulative histogram of the ranks)."""
    ranks = np.asarray(ranks)
    if len(ranks) == 0:
        return np.full(max_k, np.nan)
    counts = np.bincount(np.clip(ranks, 1, max_k + 1), minlength=max_k + 2)[1 : max_k + 1]
    return np.cumsum(counts) / len(ranks)


def top_k(scores: Any, k: int) -> np.ndarray:
    """(B, k) indices of the k highest scores of each row, best first.

    Songs scored `-inf` can appear only when fewer than k songs have a finite score."""
    import torch

    scores = _as_tensor(scores)
    if not 1 <= k <= scores.shape[1]:
        raise ConfigError(f"k must be in 1..{scores.shape[1]} (the catalog size), got {k}")
    return torch.topk(scores, k, dim=1).indices.numpy()


def coverage(recommended: np.ndarray, n_songs: int) -> float:
    """Share of the catalog that appears at least once in the recommended lists (B, k)."""
    recommended = np.asarray(recommended)
    if n_songs <= 0:
        raise ConfigError(f"n_songs must be positive, got {n_songs}")
    return float(len(np.unique(recommended)) / n_songs)


def popularity_percentiles(play_counts: np.ndarray) -> np.ndarray:
    """(S,) percentile in [0, 1) of each song's play count among all songs, by mid-rank:
    (songs with fewer plays + half the other songs with as many) / S. The most played song of a
    catalog without ties gets (S - 1) / S, a song nobody played gets half the share of such
    songs."""
    counts = np.asarray(play_counts)
    if counts.ndim != 1 or len(counts) == 0:
        raise ConfigError(f"play_counts must be a non-empty vector, got shape {counts.shape}")
    ordered = np.sort(counts)
    below = np.searchsorted(ordered, counts, side="left")
    equal = np.searchsorted(ordered, counts, side="right") - below
    return (below + (equal - 1) / 2.0) / len(counts)


def mean_popularity_percentile(recommended: np.ndarray, percentiles: np.ndarray) -> float:
    """Mean popularity percentile of every recommended song (B, k): near 1 means the model
    recommends hits, near 0.5 means its picks are as popular as a random song."""
    recommended = np.asarray(recommended)
    if recommended.size == 0:
        return float("nan")
    return float(np.asarray(percentiles)[recommended].mean())


def bootstrap_interval(
    values: np.ndarray,
    groups: np.ndarray,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (B,), resampling whole `groups`
    (B,) (the session of each target) with replacement; each resample's statistic is the mean
    over all targets of the drawn sessions, as the point estimate is."""
    values, groups = np.asarray(values, dtype=np.float64), np.asarray(groups)
    if values.shape != groups.shape or values.ndim != 1:
        raise ConfigError(
            f"values and groups must be vectors of one length, got {values.shape} and "
            f"{groups.shape}"
        )
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ConfigError(f"resamples must be at least 1, got {resamples}")
    if len(values) == 0:
        return float("nan"), float("nan")
    _, group_index = np.unique(groups, return_inverse=True)
    sums = np.bincount(group_index, weights=values)
    counts = np.bincount(group_index).astype(np.float64)
    rng = np.random.default_rng(seed)
    n_groups = len(sums)
    chunk = max(1, 4_000_000 // n_groups)  # bounds the (chunk, n_groups) index matrix
    statistics = []
    for start in range(0, resamples, chunk):
        drawn = rng.integers(0, n_groups, (min(chunk, resamples - start), n_groups))
        statistics.append(sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(np.concatenate(statistics), [tail, 100 - tail])
    return float(low), float(high)
