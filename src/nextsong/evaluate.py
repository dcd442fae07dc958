"""Honest evaluation: every model ranks the whole catalog for the same next-song targets.

Protocol (also written into every report's `protocol`):

- Targets: every song at position >= 1 of the sessions that start in the test period (or the
  validation period, for tuning without looking at test), given the session so far (songs, skip
  flags, the time the next song starts) and whatever the model learnt from the training window.
  Sessions are sampled uniformly without replacement with a fixed seed when there are more than
  `sessions`; the oracle, which computes a dense probability matrix, is evaluated on a nested
  sub-sample (the first `oracle_sessions` of the same draw), and every row also reports its
  HR@20 and MRR@20 on that sub-sample so the ceiling is compared on equal targets.
- Songs already played in the session are removed from every model's ranking (the autoplay
  rule: `base.exclude_session_songs`). A target that repeats an earlier song of its session
  therefore counts as a miss for every model; the share of such targets is in the protocol.
- Ranks are pessimistic (ties count against the model, see `metrics.py`). HR@K, MRR@K, NDCG@K
  for K in `ks`; coverage@K and the mean popularity percentile (of training plays) of the top-K
  lists at the largest K; 95% intervals by bootstrap over sessions for HR@K and MRR@K at the
  largest K.
- Breakdowns (HR and MRR at the largest K): listener kind (synthetic worlds, read from
  truth/listeners for reporting only), position of the target in its session, UTC hour of day
  in 4-hour blocks, and whether the target song was never played in training ("new").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from nextsong import metrics
from nextsong.errors import ConfigError, DataError
from nextsong.models import registry, runs
from nextsong.models.base import (
    Recommender,
    SessionBatch,
    TrainingData,
    exclude_session_songs,
)
from nextsong.report import natural_order
from nextsong.split import TEST, VALIDATION, make_split, read_split_config, split_events
from nextsong.store import read_manifest, staged_dir, write_bytes, write_json, write_manifest
from nextsong.world import World, load_world

log = logging.getLogger(__name__)

REPORT_KIND = "report"
REPORT_DIR = "report"
POSITION_BUCKETS = ((1, 1), (2, 2), (3, 4), (5, 9), (10, 19), (20, None))
HOUR_BLOCK = 4
Progress = Callable[[str], None]


@dataclass(frozen=True)
class EvaluationConfig:
    """Settings of one evaluation; written into the report's protocol."""

    ks: tuple[int, ...] = (5, 10, 20)
    sessions: int = 2_000  # sampled sessions of the period; 0 = all of them
    oracle_sessions: int = 1_000  # nested sub-sample for the oracle; 0 = the same as `sessions`
    seed: int = 0
    period: str = TEST
    batch_size: int = 512
    bootstrap_resamples: int = 1000
    level: float = 0.95

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks) or list(self.ks) != sorted(set(self.ks)):
            raise ConfigError(f"ks must be distinct positive cut-offs in order, got {self.ks}")
        for name in ("sessions", "oracle_sessions"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 (all) or positive, got {getattr(self, name)}")
        if self.period not in (TEST, VALIDATION):
            raise ConfigError(f"period must be {TEST!r} or {VALIDATION!r}, got {self.period!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {self.batch_size}")
        if not 0 < self.level < 1:
            raise ConfigError(f"level must be in (0, 1), got {self.level}")

    @property
    def k(self) -> int:
        """The largest cut-off: coverage, popularity, intervals and breakdowns use it."""
        return self.ks[-1]


# -- targets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Targets:
    """The targets of an evaluation, one per (sampled session, position >= 1).

    The events of the sampled sessions are kept in contract order; each target points at its
    own event (`row`) and its session's first event (`start`), so a batch of sessions-so-far is
    a gather, never a copy per target.
    """

    event_song: np.ndarray  # (E,) songs of the sampled sessions' events
    event_skipped: np.ndarray  # (E,)
    row: np.ndarray  # (T,) the target's event
    start: np.ndarray  # (T,) its session's first event
    position: np.ndarray  # (T,) 0-based position of the target in its session (>= 1)
    user_id: np.ndarray  # (T,)
    session_id: np.ndarray  # (T,)
    now_us: np.ndarray  # (T,) when the target song starts
    repeat: np.ndarray  # (T,) the target was already played earlier in its session
    oracle: np.ndarray  # (T,) the target belongs to the oracle's sub-sample
    sessions_total: int  # sessions of the period with at least one target
    sessions_sampled: int
    oracle_sessions: int

    def __len__(self) -> int:
        return len(self.row)

    @property
    def song(self) -> np.ndarray:
        return self.event_song[self.row]

    @property
    def hour(self) -> np.ndarray:
        return (self.now_us // 3_600_000_000) % 24

    def batch(self, index: np.ndarray) -> SessionBatch:
        """The sessions-so-far of targets `index`: (B, L) right-aligned, -1 padded on the left."""
        position = self.position[index]
        width = int(position.max()) if len(index) else 0
        offset = position[:, None] - width + np.arange(width)[None, :]  # (B, L)
        valid = offset >= 0
        event = np.where(valid, self.start[index, None] + offset, 0)
        return SessionBatch(
            user_id=self.user_id[index].astype(np.int64),
            session_id=self.session_id[index].astype(np.int64),
            songs=np.where(valid, self.event_song[event], -1).astype(np.int64),
            skipped=valid & self.event_skipped[event],
            now_us=self.now_us[index].astype(np.int64),
        )

    def batches(self, index: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, SessionBatch]]:
        for lo in range(0, len(index), size):
            chunk = index[lo : lo + size]
            yield chunk, self.batch(chunk)


def build_targets(events: pl.DataFrame, config: EvaluationConfig) -> Targets:
    """Samples sessions of `events` (one period, contract order) and lists their targets."""
    lengths = events.group_by("session_id", maintain_order=True).len()
    candidates = lengths.filter(pl.col("len") >= 2)["session_id"].to_numpy()
    if len(candidates) == 0:
        raise DataError(f"the {config.period} period has no session of two songs or more")
    # A fixed-seed permutation: the first `sessions` are evaluated, the first
    # `oracle_sessions` of those also by the oracle.
    order = np.random.default_rng(config.seed).permutation(len(candidates))
    n_sampled = len(candidates) if config.sessions == 0 else min(config.sessions, len(order))
    n_oracle = n_sampled if config.oracle_sessions == 0 else min(config.oracle_sessions, n_sampled)
    draw = pl.DataFrame({"session_id": candidates[order[:n_sampled]], "draw": np.arange(n_sampled)})
    sampled = events.join(draw, on="session_id", how="inner").sort(
        "user_id", "session_id", "position"
    )
    sampled = sampled.with_columns(
        pl.int_range(pl.len()).alias("row"),
        (~pl.col("song_id").is_first_distinct().over("session_id")).alias("repeat"),
    ).with_columns(pl.col("row").min().over("session_id").alias("start"))
    target = sampled.filter(pl.col("position") >= 1)
    return Targets(
        event_song=sampled["song_id"].to_numpy().astype(np.int64),
        event_skipped=sampled["skipped"].to_numpy(),
        row=target["row"].to_numpy(),
        start=target["start"].to_numpy(),
        position=target["position"].to_numpy().astype(np.int64),
        user_id=target["user_id"].to_numpy().astype(np.int64),
        session_id=target["session_id"].to_numpy(),
        now_us=target["ts"].dt.epoch("us").to_numpy(),
        repeat=target["repeat"].to_numpy(),
        oracle=target["draw"].to_numpy() < n_oracle,
        sessions_total=len(candidates),
        sessions_sampled=n_sampled,
        oracle_sessions=n_oracle,
    )


# -- running models ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """A model to evaluate: its name, kind, and the run folder of a trained model."""

    name: str
    kind: str
    run: Path | None = None


@dataclass
class Outcome:
    """What one model produced on its targets."""

    entry: Entry
    index: np.ndarray  # (T',) targets it ranked
    ranks: np.ndarray  # (T',) censored at the largest K
    top: np.ndarray  # (T', K) its top-K lists
    fit_seconds: float
    score_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_models(data: Path, world: World, names: list[str] | None) -> list[Entry]:
    """The models to evaluate: by default the oracle (where there is a truth), every baseline
    and the best run of every trained model; or exactly `names`, each checked."""
    best = runs.best_runs(data)
    if names is None:
        entries = [Entry("oracle", "oracle")] if world.has_truth else []
        entries += [Entry(spec.name, spec.kind) for spec in registry.specs("baseline")]
        for name, run in best.items():
            spec = registry.get(name)
            if spec.kind == "trained":
                entries.append(Entry(name, spec.kind, run))
            else:
                log.warning("ignoring %s: %s is a %s, fitted on the fly", run, name, spec.kind)
        return entries
    entries = []
    for name in dict.fromkeys(names):
        spec = registry.get(name)
        if spec.requires_truth and not world.has_truth:
            raise ConfigError(f"model {name!r} needs a synthetic world's truth/, {data} has none")
        if spec.kind == "trained":
            if name not in best:
                raise ConfigError(
                    f"model {name!r} has no trained run in {runs.models_dir(data)}: run "
                    f"`nextsong train --data {data} --model {name}` first"
                )
            entries.append(Entry(name, spec.kind, best[name]))
        else:
            entries.append(Entry(name, spec.kind))
    return entries


def prepare_model(entry: Entry, data: TrainingData) -> tuple[Recommender, float]:
    started = time.perf_counter()
    if entry.run is not None:
        model = registry.load_model(entry.run)
        if model.n_songs != data.n_songs:
            raise DataError(
                f"run {entry.run} was trained on {model.n_songs} songs, this world has "
                f"{data.n_songs}: train {entry.name} again on {data.world_path}"
            )
    else:
        model = registry.create(entry.name).fit(data)
    return model, time.perf_counter() - started


def run_model(
    model: Recommender, targets: Targets, index: np.ndarray, config: EvaluationConfig
) -> tuple[np.ndarray, np.ndarray, float]:
    """Ranks of targets `index` over the catalog, and the top-K lists, with the session's
    songs excluded; returns (ranks (T',), top (T', K), seconds)."""
    started = time.perf_counter()
    ranks = np.empty(len(index), dtype=np.int64)
    # A catalog smaller than K (a small imported history) is ranked whole: HR@K is then HR@S.
    cut = min(config.k, model.n_songs)
    top = np.empty((len(index), cut), dtype=np.int32)
    done = 0
    for chunk, batch in targets.batches(index, config.batch_size):
        scores = exclude_session_songs(model.score(batch), batch.songs)
        chunk_ranks, chunk_top = metrics.ranks_and_top_k(scores, targets.song[chunk], cut)
        ranks[done : done + len(chunk)] = chunk_ranks
        top[done : done + len(chunk)] = chunk_top
        done += len(chunk)
    return ranks, top, time.perf_counter() - started


# -- summaries ---------------------------------------------------------------------------------
def _position_label(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+"
    return str(low) if low == high else f"{low}-{high}"


def breakdown_labels(targets: Targets, kinds: dict[int, str] | None, new_song: np.ndarray) -> dict:
    """{breakdown: (T,) label of each target} for every breakdown this world supports."""
    position = np.empty(len(targets), dtype=object)
    for low, high in POSITION_BUCKETS:
        inside = (targets.position >= low) & (True if high is None else targets.position <= high)
        position[inside] = _position_label(low, high)
    block = targets.hour // HOUR_BLOCK * HOUR_BLOCK
    labels = {
        "position": position,
        "hour": np.array([f"{h:02d}-{h + HOUR_BLOCK - 1:02d}" for h in block], dtype=object),
        "target_song": np.where(new_song[targets.song], "new", "seen in training"),
    }
    if kinds is not None:
        labels["listener_kind"] = np.array(
            [kinds.get(int(u), "unknown") for u in targets.user_id], dtype=object
        )
    return labels


def summarise(
    outcome: Outcome,
    targets: Targets,
    labels: dict[str, np.ndarray],
    percentiles: np.ndarray,
    n_songs: int,
    config: EvaluationConfig,
) -> dict[str, Any]:
    """One report row: the metrics, intervals, curves and breakdowns of one model."""
    k = config.k
    ranks, index = outcome.ranks, outcome.index
    values = metrics.per_target_metrics(ranks, config.ks)
    sessions = targets.session_id[index]
    row: dict[str, Any] = {
        "model": outcome.entry.name,
        "kind": outcome.entry.kind,
        "run": outcome.entry.run.name if outcome.entry.run else None,
        "targets": len(index),
        "sessions": len(np.unique(sessions)),
    }
    row.update({name: float(v.mean()) for name, v in values.items()})
    for name in (f"HR@{k}", f"MRR@{k}"):
        row[f"{name}_ci"] = list(
            metrics.bootstrap_interval(
                values[name], sessions, config.bootstrap_resamples, config.level, config.seed
            )
        )
    row[f"coverage@{k}"] = metrics.coverage(outcome.top, n_songs)
    row[f"popularity_percentile@{k}"] = metrics.mean_popularity_percentile(outcome.top, percentiles)
    on_oracle = targets.oracle[index]
    row["oracle_sample"] = {
        "targets": int(on_oracle.sum()),
        f"HR@{k}": float(values[f"HR@{k}"][on_oracle].mean()) if on_oracle.any() else None,
        f"MRR@{k}": float(values[f"MRR@{k}"][on_oracle].mean()) if on_oracle.any() else None,
    }
    row["hr_curve"] = metrics.hit_rate_curve(ranks, k).tolist()
    row["breakdowns"] = {
        name: _groups(label[index], values[f"HR@{k}"], values[f"MRR@{k}"], k)
        for name, label in labels.items()
    }
    row["fit_seconds"] = round(outcome.fit_seconds, 3)
    row["score_seconds"] = round(outcome.score_seconds, 3)
    return row


def _groups(label: np.ndarray, hits: np.ndarray, rr: np.ndarray, k: int) -> dict[str, Any]:
    groups = {}
    for name in sorted(set(label.tolist()), key=natural_order):
        inside = label == name
        groups[name] = {
            "targets": int(inside.sum()),
            f"HR@{k}": float(hits[inside].mean()),
            f"MRR@{k}": float(rr[inside].mean()),
        }
    return groups


# -- the whole evaluation ----------------------------------------------------------------------
def evaluate(
    data: Path | str,
    names: list[str] | None = None,
    config: EvaluationConfig | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluates the models on the world in `data`; returns the report (not yet written)."""
    config = config or EvaluationConfig()
    progress = progress or (lambda _message: None)
    data = Path(data)
    started = time.perf_counter()

    progress("loading the world")
    world = load_world(data)
    split = make_split(world, read_split_config(data))
    parts = split_events(world, split)
    training = TrainingData.from_world(world, parts, split)
    entries = resolve_models(data, world, names)
    targets = build_targets(parts[config.period], config)
    log.info("%d targets in %d sessions", len(targets), targets.sessions_sampled)

    new_song = training.play_counts == 0
    percentiles = metrics.popularity_percentiles(training.play_counts)
    labels = breakdown_labels(targets, _listener_kinds(world), new_song)
    everyone = np.arange(len(targets))
    rows = []
    for entry in entries:
        progress(f"{entry.name}: fitting")
        model, fit_seconds = prepare_model(entry, training)
        index = np.flatnonzero(targets.oracle) if entry.kind == "oracle" else everyone
        progress(f"{entry.name}: ranking {len(index):,} targets")
        ranks, top, score_seconds = run_model(model, targets, index, config)
        outcome = Outcome(entry, index, ranks, top, fit_seconds, score_seconds)
        rows.append(summarise(outcome, targets, labels, percentiles, training.n_songs, config))
        log.info(
            "%s: HR@%d %.4f in %.1f s", entry.name, config.k, rows[-1][f"HR@{config.k}"],
            fit_seconds + score_seconds,
        )  # fmt: skip
    protocol = _protocol(data, world, split, targets, new_song, config)
    protocol["seconds"] = round(time.perf_counter() - started, 2)
    return {"protocol": protocol, "results": rows}


def _listener_kinds(world: World) -> dict[int, str] | None:
    """user_id -> kind from truth/listeners (synthetic worlds only, for breakdowns only)."""
    path = world.path / "truth" / "listeners.parquet"
    folder = world.path / "truth" / "listeners"
    if path.exists():
        frame = pl.read_parquet(path, columns=["user_id", "kind"])
    elif folder.is_dir():
        frame = pl.read_parquet(sorted(folder.glob("*.parquet")), columns=["user_id", "kind"])
    else:
        return None
    return dict(zip(frame["user_id"].to_list(), frame["kind"].to_list(), strict=True))


def _protocol(
    data: Path,
    world: World,
    split: Any,
    targets: Targets,
    new_song: np.ndarray,
    config: EvaluationConfig,
) -> dict[str, Any]:
    k = config.k
    return {
        "data": str(data),
        "world": {key: world.manifest.get(key) for key in ("preset", "seed", "generator")},
        "split": split.to_dict(),
        "period": config.period,
        "config": {**asdict(config), "ks": list(config.ks)},
        "targets": len(targets),
        "sessions_with_targets": targets.sessions_total,
        "sessions_sampled": targets.sessions_sampled,
        "oracle_sessions": targets.oracle_sessions,
        "oracle_targets": int(targets.oracle.sum()),
        "sampling": (
            f"sessions of the {config.period} period with at least two songs, sampled uniformly "
            f"without replacement with seed {config.seed} ({targets.sessions_sampled:,} of "
            f"{targets.sessions_total:,}); the oracle ranks the first "
            f"{targets.oracle_sessions:,} of them"
        ),
        "targets_rule": "every song at position >= 1, given the session so far and the "
        "training window",
        "catalog": len(new_song),
        "exclusion": "songs already played in the session are removed from every model's "
        "ranking; a target repeating one of them is a miss for every model",
        "repeat_target_share": float(targets.repeat.mean()),
        "new_target_share": float(new_song[targets.song].mean()),
        "ties": "pessimistic: rank = number of songs scored >= the target",
        "intervals": f"{config.level:.0%} percentile bootstrap over sessions, "
        f"{config.bootstrap_resamples} resamples, for HR@{k} and MRR@{k}",
        "popularity": f"mean percentile of training play counts of the top-{k} songs "
        "(0.5 = a random song, near 1 = the hits)",
        "breakdowns": f"HR@{k} and MRR@{k} by listener kind (truth, reporting only), target "
        f"position, UTC hour in {HOUR_BLOCK}-hour blocks, and target song new (no training plays)",
    }


# -- writing the report ------------------------------------------------------------------------
def default_out(data: Path | str) -> Path:
    return Path(data) / REPORT_DIR


def write_report(report: dict[str, Any], out: Path | str) -> Path:
    """Writes report.json, report.md and the plots into `out` (replacing an earlier report)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        try:
            read_manifest(out, REPORT_KIND, verify=False)
        except DataError:
            raise ConfigError(
                f"--out {out} holds files that are not a nextsong report; choose an empty folder"
            ) from None
    from nextsong.report import plot_report, render_markdown

    with staged_dir(out, force=True) as stage:
        write_json(stage / "report.json", report)
        write_bytes(stage / "report.md", render_markdown(report).encode())
        plot_report(report, stage)
        write_manifest(stage, REPORT_KIND, models=[row["model"] for row in report["results"]])
    return out
