"""Training the neural models: the loop, early stopping, checkpoints, resume and DDP.

`fit` trains a built `NeuralRecommender` in place:

- Examples: every song of a training session that does not repeat an earlier song of its
  session (the evaluation counts repeats as misses for every model, so they teach nothing
  useful), given the session so far (its last `max_length` songs; none for a first song, so the
  model also learns how listeners start), the listener and the time it starts. Each epoch
  draws `examples_per_epoch` of them (all when 0) in an order drawn from (seed, epoch), so an
  epoch's batches do not depend on how the run got there.
- AdamW, gradient clipping at `clip`, the learning rate times `lr_factor` when validation
  HR@20 has not improved for `lr_patience` epochs (ReduceLROnPlateau), early stopping after
  `patience` epochs without improvement; the best epoch's weights are kept.
- Validation: HR@20 and MRR@20 on `validation_sessions` sessions of the validation period,
  sampled once with the seed (the evaluation's own sampler, `evaluate.build_targets`), with the
  evaluation's rules (songs of the session excluded, pessimistic ties). A sample, for speed: the
  figures move by about +-0.005 around those of the whole period.
- Determinism: one seed sets the initial weights (torch), the epoch orders and the dropout of
  each epoch (torch, reseeded from (seed, epoch)); on the CPU the same seed gives the same
  weights and metrics.
- Checkpoints: after every epoch, a folder replaced atomically, with `checkpoint.safetensors`
  (weights, the best weights, AdamW moments) and `checkpoint.json` (epoch, history, scheduler
  and early-stopping state, config); `resume` continues from it and ends with the same weights
  and metrics as an uninterrupted run. Never pickle.
- Distributed: under `torchrun --nproc_per_node=N`, each rank takes every N-th example of each
  batch and DistributedDataParallel averages the gradients (gloo on the CPU, nccl on GPUs); all
  ranks validate their share of the sessions and sum the counts, so they stop together; rank 0
  writes. The global batch stays `batch_size`, so N processes follow one process closely.

`train_run` is what `nextsong train` calls: it builds the training data of a world folder,
trains with checkpoints under `DIR/models/.checkpoints/<name>/`, saves the run to
`DIR/models/<name>-<time>/` (the recommender's `model.json` and `weights.safetensors`, plus
`config.json`, `metrics.json` and `training_curve.png`, all in one atomic rename) and marks it
best for its name if its validation HR@20 beats the marked run's.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import os
import resource
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from nextsong.errors import ConfigError, DataError
from nextsong.models.base import MODEL_KIND, TrainingData
from nextsong.store import (
    read_json,
    read_manifest,
    staged_dir,
    write_bytes,
    write_json,
    write_manifest,
)

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = ".checkpoints"
CHECKPOINT_KIND = "checkpoint"
CHECKPOINT_TENSORS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"
METRIC = "HR@20"
K = 20
DEVICES = ("auto", "cpu", "cuda")
EpochReport = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainOptions:
    """How to run a training (not what to learn: that is the model's config).

    `progress` shows a progress bar per epoch with the loss; `report` is called with each
    epoch's record (the CLI prints it); `stop_after` ends the run after that many epochs in this
    process, as if it were killed there (for resume tests and time-boxed runs)."""

    device: str = "auto"
    checkpoint_dir: Path | None = None
    resume: bool = False
    progress: bool = False
    report: EpochReport | None = None
    stop_after: int | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")


# -- examples ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Examples:
    """Training targets and, for each, where its session starts in the event arrays."""

    event_song: np.ndarray  # (E,) int64, training events in contract order
    event_skipped: np.ndarray  # (E,) bool
    row: np.ndarray  # (T,) the target's event
    start: np.ndarray  # (T,) its session's first event
    end: np.ndarray  # (T,) one past its session's last event
    user: np.ndarray  # (T,)
    now_us: np.ndarray  # (T,) when the target starts
    play_counts: np.ndarray  # (S,) training plays of each song

    def __len__(self) -> int:
        return len(self.row)

    def window(self, index: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, L) the last <= max_length songs before each target, right-aligned, -1 padded,
        and their skip flags."""
        position = self.row[index] - self.start[index]
        width = int(min(max_length, position.max(initial=0)))
        offset = position[:, None] - width + np.arange(width)[None, :]  # (B, L)
        valid = offset >= 0
        event = np.where(valid, self.start[index, None] + offset, 0)
        songs = np.where(valid, self.event_song[event], -1)
        return songs, valid & self.event_skipped[event]

    @property
    def target(self) -> np.ndarray:
        return self.event_song[self.row]

    def plays_from_target_on(self, index: np.ndarray, songs: np.ndarray) -> np.ndarray:
        """(B, M) float32: how often each of `songs` (B, M; -1 padded) is played in its
        example's session from the target on (the target included).

        A listener's history (their most played training songs) counts every training play,
        so a training target would find itself, and the rest of its session, among the
        history expert's candidates: a casual listener's few songs are then almost always
        "next", and the gate learnt to trust them (0.45 of the mixture for casual listeners
        on the default world) where no test target is there to find. The trainer subtracts
        these plays, so that the history seen by a training example is the one a test
        session sees: plays outside the session being predicted."""
        lo, hi = self.row[index], self.end[index]
        lengths = hi - lo
        example = np.repeat(np.arange(len(index)), lengths)
        first = np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
        event = first + np.arange(int(lengths.sum()))
        n_songs = len(self.play_counts)
        played, counts = np.unique(example * n_songs + self.event_song[event], return_counts=True)
        key = np.arange(len(index))[:, None] * n_songs + np.maximum(songs, 0)
        # Every example plays at least its target, so `played` is empty only with no examples.
        at = np.minimum(np.searchsorted(played, key), len(played) - 1)
        found = (played[at] == key) & (songs >= 0)
        return np.where(found, counts[at], 0).astype(np.float32)


def training_examples(train: pl.DataFrame, play_counts: np.ndarray) -> Examples:
    """The examples of the module docstring from training events in contract order."""
    frame = train.select("session_id", "user_id", "song_id", "skipped", "ts").with_columns(
        pl.int_range(pl.len()).alias("row"),
        pl.col("song_id").is_first_distinct().over("session_id").alias("first_time"),
    )
    frame = frame.with_columns(
        pl.col("row").min().over("session_id").alias("start"),
        (pl.col("row").max().over("session_id") + 1).alias("end"),
    )
    targets = frame.filter(pl.col("first_time"))
    if targets.is_empty():
        raise DataError("the training window has no plays")
    return Examples(
        event_song=frame["song_id"].to_numpy().astype(np.int64),
        event_skipped=frame["skipped"].to_numpy(),
        row=targets["row"].to_numpy(),
        start=targets["start"].to_numpy(),
        end=targets["end"].to_numpy(),
        user=targets["user_id"].to_numpy().astype(np.int64),
        now_us=targets["ts"].dt.epoch("us").to_numpy(),
        play_counts=play_counts,
    )


# -- distributed -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _ranks(device: Any) -> Ranks:
    """This process's rank; joins the process group when started by torchrun."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size())


def _resolve_device(name: str) -> Any:
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use cpu or auto")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def _all_sum(values: list[float], ranks: Ranks, device: Any) -> list[float]:
    if ranks.world == 1:
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def _gather(value: str, ranks: Ranks) -> list[str]:
    """`value` of every rank, in rank order."""
    if ranks.world == 1:
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * ranks.world
    dist.all_gather_object(values, value)
    return values


def _weights_digest(network: Any) -> str:
    digest = hashlib.sha256()
    for name, value in network.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        import torch.distributed as dist

        dist.barrier()


# -- the loop ----------------------------------------------------------------------------------
@dataclass
class LoopState:
    """What a checkpoint restores besides tensors."""

    epoch: int = 0  # epochs completed
    best_value: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    seconds: float = 0.0  # training and validation time so far, over every process lifetime
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def fit(model: Any, data: TrainingData, options: TrainOptions) -> dict[str, Any]:
    """Trains `model` (a built `NeuralRecommender`) on `data`; leaves the best epoch's weights
    in it and returns the training record (history, best epoch, times, peak memory)."""
    import torch

    from nextsong.evaluate import EvaluationConfig, build_targets

    config = model.config
    device = _resolve_device(options.device)
    ranks = _ranks(device)
    network = model.network.to(device)
    examples = training_examples(data.train, data.play_counts)
    validation = build_targets(
        data.validation,
        EvaluationConfig(
            period="validation", sessions=config.validation_sessions, seed=config.seed
        ),
    )
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=config.lr_factor, patience=config.lr_patience
    )
    state, best = LoopState(), _copy_weights(network)
    identity = _identity(model, data)
    if options.resume:
        state, best = _resume(options.checkpoint_dir, network, optimizer, scheduler, identity)
    trainer = network
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        with warnings.catch_warnings():  # buffers are identical inputs: never synchronised
            warnings.filterwarnings("ignore", message=".*broadcast_buffers.*")
            trainer = DistributedDataParallel(network, broadcast_buffers=False)
    log.info(
        "%s: %d training examples, %d validation targets, %s, rank %d of %d",
        model.name,
        len(examples),
        len(validation),
        device,
        ranks.rank,
        ranks.world,
    )

    done_here, finished = 0, True
    while state.epoch < config.epochs and state.bad_epochs <= config.patience:
        if options.stop_after is not None and done_here >= options.stop_after:
            finished = False
            break
        started = time.perf_counter()
        epoch = state.epoch + 1
        loss = _train_epoch(model, trainer, optimizer, examples, epoch, ranks, device, options)
        hr, mrr = _validate(model, validation, ranks, device)
        scheduler.step(hr)
        improved = hr > state.best_value
        if improved:
            state.best_value, state.best_epoch, state.bad_epochs = hr, epoch, 0
            best = _copy_weights(network)
        else:
            state.bad_epochs += 1
        seconds = time.perf_counter() - started
        state.seconds += seconds
        state.epoch = epoch
        record = {
            "epoch": epoch,
            "loss": loss,
            f"validation {METRIC}": hr,
            "validation MRR@20": mrr,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 2),
            "elapsed_seconds": round(state.seconds, 2),
            "best": improved,
            "peak_memory_mb": round(_peak_memory_mb(), 1),
        }
        state.history.append(record)
        log.info(
            "%s epoch %d: loss %.4f, validation HR@20 %.4f, MRR@20 %.4f, %.1f s",
            model.name,
            epoch,
            loss,
            hr,
            mrr,
            seconds,
        )
        if options.report is not None and ranks.main:
            options.report(record)
        if options.checkpoint_dir is not None and ranks.main:
            _write_checkpoint(
                options.checkpoint_dir, network, best, optimizer, scheduler, state, identity
            )
        _barrier(ranks)
        done_here += 1

    network.load_state_dict(best)
    model.weights_changed()
    record = _record(state, ranks, device, len(examples), len(validation))
    # Every rank's final weights, by checksum: DDP must leave them identical.
    record["weights_sha256"] = _gather(_weights_digest(network), ranks)
    return {**record, "finished": finished}


def _train_epoch(
    model: Any,
    trainer: Any,
    optimizer: Any,
    examples: Examples,
    epoch: int,
    ranks: Ranks,
    device: Any,
    options: TrainOptions,
) -> float:
    """One epoch of AdamW steps; returns the mean training loss (of this rank's examples)."""
    import torch

    config = model.config
    torch.manual_seed(config.seed * 1_000_003 + epoch)  # dropout of this epoch
    rng = np.random.default_rng([config.seed, epoch])
    order = rng.permutation(len(examples))
    if config.examples_per_epoch:
        order = order[: config.examples_per_epoch]
    starts = range(0, len(order), config.batch_size)
    bar = None
    if options.progress and ranks.main:
        from tqdm import tqdm

        bar = tqdm(total=len(starts), desc=f"epoch {epoch}", unit="batch", leave=False)
    negatives = None
    if 0 < config.negatives < len(examples.play_counts):
        negatives = NegativeSampler(examples.play_counts, config.negatives)
    trainer.train()
    total, count = 0.0, 0
    for lo in starts:
        chunk = order[lo : lo + config.batch_size][ranks.rank :: ranks.world]
        if len(chunk) == 0:
            continue
        songs, skipped = examples.window(chunk, config.max_length)
        batch = model_tensors(examples, chunk, songs, skipped, device)
        if config.experts or (config.user and config.graph):
            # The history expert and the listener's taste must not see this session's plays.
            history = model.inputs.user_songs[examples.user[chunk]]
            rest = examples.plays_from_target_on(chunk, history)
            batch["history_in_session"] = torch.from_numpy(rest).to(device)
        if negatives is not None:
            batch.update(negatives.draw(rng, device))
        loss = trainer(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainer.parameters(), config.clip)
        optimizer.step()
        total += loss.item() * len(chunk)
        count += len(chunk)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / count:.4f}")
    if bar is not None:
        bar.close()
    return total / max(count, 1)


class NegativeSampler:
    """Songs drawn with probability q proportional to (training plays + 1) ** 0.75, shared by a
    batch, with log(N q) for the logQ correction of the sampled softmax (`network.forward`)."""

    def __init__(self, play_counts: np.ndarray, n: int) -> None:
        weight = (np.asarray(play_counts, dtype=np.float64) + 1.0) ** 0.75
        self.probability = weight / weight.sum()
        self.cdf = np.cumsum(self.probability)
        self.cdf[-1] = 1.0
        self.n = n

    def draw(self, rng: np.random.Generator, device: Any) -> dict[str, Any]:
        import torch

        songs = np.searchsorted(self.cdf, rng.random(self.n), side="right")
        log_q = np.log(self.n * self.probability[songs]).astype(np.float32)
        return {
            "negatives": torch.from_numpy(songs.astype(np.int64)).to(device),
            "negative_log_q": torch.from_numpy(log_q).to(device),
        }


def model_tensors(
    examples: Examples, chunk: np.ndarray, songs: np.ndarray, skipped: np.ndarray, device: Any
) -> dict[str, Any]:
    from nextsong.models.neural import session_tensors

    return session_tensors(
        examples.user[chunk],
        songs,
        skipped,
        examples.now_us[chunk],
        device,
        target=examples.target[chunk],
    )


def _validate(model: Any, targets: Any, ranks: Ranks, device: Any) -> tuple[float, float]:
    """HR@20 and MRR@20 of the sampled validation targets (each rank ranks its share)."""
    import torch

    from nextsong import metrics

    network = model.network
    network.eval()
    index = np.arange(len(targets))[ranks.rank :: ranks.world]
    hits = reciprocal = 0.0
    with torch.no_grad():
        for chunk, batch in targets.batches(index, 1024):
            scores = network.log_probs(model.tensors(batch, device)).cpu()
            rows, cols = np.nonzero(batch.songs >= 0)
            scores[rows, batch.songs[rows, cols]] = -math.inf  # the evaluation's exclusion
            ranks_k = metrics.target_ranks(scores, targets.song[chunk], cutoff=K)
            found = ranks_k <= K
            hits += float(found.sum())
            reciprocal += float((found / ranks_k).sum())
    hits, reciprocal, n = _all_sum([hits, reciprocal, float(len(index))], ranks, device)
    return hits / max(n, 1), reciprocal / max(n, 1)


def _copy_weights(network: Any) -> dict[str, Any]:
    return {name: value.detach().clone() for name, value in network.state_dict().items()}


def _peak_memory_mb() -> float:
    """Peak resident memory of this process (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _record(
    state: LoopState, ranks: Ranks, device: Any, n_examples: int, n_validation: int
) -> dict[str, Any]:
    best = next((h for h in state.history if h["epoch"] == state.best_epoch), None)
    return {
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        f"best_validation_{METRIC}": state.best_value if best else None,
        "best_validation_MRR@20": best["validation MRR@20"] if best else None,
        "seconds": round(state.seconds, 2),
        "seconds_to_best_epoch": best["elapsed_seconds"] if best else None,
        "peak_memory_mb": round(_peak_memory_mb(), 1),
        "history": state.history,
        "examples": n_examples,
        "validation_targets": n_validation,
        "device": str(device),
        "processes": ranks.world,
        "validation": "sampled sessions of the validation period (see nextsong.train)",
    }


# -- checkpoints -------------------------------------------------------------------------------
def _identity(model: Any, data: TrainingData) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the model, its config and the data."""
    return {
        "model": model.name,
        "config": dataclasses.asdict(model.config),
        "n_songs": data.n_songs,
        "n_users": data.n_users,
        "train_end_us": data.train_end_us,
        "train_events": data.train.height,
    }


def _optimizer_tensors(optimizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    tensors, steps = {}, {}
    for index, param in enumerate(optimizer.param_groups[0]["params"]):
        moments = optimizer.state.get(param)
        if not moments:
            continue
        tensors[f"optimizer.{index}.exp_avg"] = moments["exp_avg"]
        tensors[f"optimizer.{index}.exp_avg_sq"] = moments["exp_avg_sq"]
        steps[str(index)] = float(moments["step"])
    return tensors, steps


def _write_checkpoint(
    folder: Path,
    network: Any,
    best: dict[str, Any],
    optimizer: Any,
    scheduler: Any,
    state: LoopState,
    identity: dict[str, Any],
) -> None:
    from safetensors.torch import save_file

    moments, steps = _optimizer_tensors(optimizer)
    tensors = {
        **{f"weights.{k}": v for k, v in network.state_dict().items()},
        **{f"best.{k}": v for k, v in best.items()},
        **moments,
    }
    payload = {
        "identity": identity,
        "loop": dataclasses.asdict(state),
        "optimizer": {"steps": steps, "lr": [g["lr"] for g in optimizer.param_groups]},
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if _jsonable(v)},
    }
    with staged_dir(folder, force=True) as stage:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(stage / CHECKPOINT_TENSORS),
        )
        write_json(stage / CHECKPOINT_STATE, payload)
        write_json(stage / "metrics.json", {"history": state.history})
        write_manifest(stage, CHECKPOINT_KIND, model=identity["model"], epoch=state.epoch)


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str | list)


def _resume(
    folder: Path | None, network: Any, optimizer: Any, scheduler: Any, identity: dict[str, Any]
) -> tuple[LoopState, dict[str, Any]]:
    """Restores a checkpoint into the network, optimizer and scheduler; a fresh start (with a
    warning) when there is none."""
    import torch
    from safetensors.torch import load_file

    if folder is None:
        raise ConfigError("resume needs a checkpoint folder")
    if not (Path(folder) / CHECKPOINT_STATE).exists():
        log.warning("no checkpoint in %s: training from the start", folder)
        return LoopState(), _copy_weights(network)
    read_manifest(folder, CHECKPOINT_KIND)
    payload = read_json(Path(folder) / CHECKPOINT_STATE)
    if payload["identity"] != identity:
        raise DataError(
            f"the checkpoint in {folder} is of another model, config or training data "
            f"({payload['identity']['model']}); train without --resume to start over"
        )
    tensors = load_file(str(Path(folder) / CHECKPOINT_TENSORS))
    device = next(network.parameters()).device
    network.load_state_dict(_prefixed(tensors, "weights.", device))
    best = _prefixed(tensors, "best.", device)
    params = optimizer.param_groups[0]["params"]
    for key, step in payload["optimizer"]["steps"].items():
        param = params[int(key)]
        optimizer.state[param] = {
            "step": torch.tensor(step),
            "exp_avg": tensors[f"optimizer.{key}.exp_avg"].to(device),
            "exp_avg_sq": tensors[f"optimizer.{key}.exp_avg_sq"].to(device),
        }
    for group, lr in zip(optimizer.param_groups, payload["optimizer"]["lr"], strict=True):
        group["lr"] = lr
    scheduler.load_state_dict({**scheduler.state_dict(), **payload["scheduler"]})
    state = LoopState(**payload["loop"])
    log.info("resuming %s after epoch %d", identity["model"], state.epoch)
    return state, best


def _prefixed(tensors: dict[str, Any], prefix: str, device: Any) -> dict[str, Any]:
    return {k[len(prefix) :]: v.to(device) for k, v in tensors.items() if k.startswith(prefix)}


# -- a run of `nextsong train` -----------------------------------------------------------------
def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """["dim=32", "graph=false"] -> {"dim": 32, "graph": False}, typed by `NeuralConfig`."""
    from nextsong.models.neural import NeuralConfig

    types = {f.name: f.type for f in dataclasses.fields(NeuralConfig)}
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or key not in types:
            raise ConfigError(
                f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(types)}"
            )
        settings[key] = _typed(key, text.strip(), types[key])
    return settings


def _typed(key: str, text: str, kind: Any) -> Any:
    kind = getattr(kind, "__name__", kind)
    try:
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ConfigError(f"--set {key}={text}: {key} must be of type {kind}") from None
    return text


def checkpoint_dir(data: Path | str, name: str) -> Path:
    from nextsong.models.runs import models_dir

    return models_dir(data) / CHECKPOINTS_DIR / name


def train_run(
    data: Path | str,
    name: str = "nextsong",
    overrides: dict[str, Any] | None = None,
    options: TrainOptions | None = None,
) -> dict[str, Any]:
    """Trains model `name` on the world in `data` and saves the run (see the module docstring).

    Returns {"run": folder or None (ranks other than 0), "best": whether it is now the best run
    of its name, "record": the training record}.
    """
    from nextsong.models import registry, runs
    from nextsong.models.neural import NeuralRecommender
    from nextsong.split import make_split, read_split_config, split_events
    from nextsong.world import load_world

    spec = registry.get(name)
    if spec.kind != "trained" or not issubclass(spec.cls, NeuralRecommender):
        trainable = [
            s.name for s in registry.specs("trained") if issubclass(s.cls, NeuralRecommender)
        ]
        raise ConfigError(
            f"--model {name!r} is not trained here; trainable: {', '.join(trainable)}"
        )
    options = options or TrainOptions()
    options = dataclasses.replace(options, checkpoint_dir=checkpoint_dir(data, name))
    world = load_world(data)
    split = make_split(world, read_split_config(data))
    training = TrainingData.from_world(world, split_events(world, split), split)
    if training.validation.is_empty():
        raise DataError(f"{data} has no validation period: early stopping needs one")

    model = spec.create(**(overrides or {}))
    model.build(training)
    record = fit(model, training, options)
    model.training_record = record
    if not record["finished"] or int(os.environ.get("RANK", "0")) != 0:
        return {"run": None, "best": False, "record": record}
    run = runs.new_run_dir(data, name)
    save_run(model, run, record)
    best = runs.mark_if_better(
        data, name, run, f"validation {METRIC}", record[f"best_validation_{METRIC}"]
    )
    shutil.rmtree(options.checkpoint_dir, ignore_errors=True)
    return {"run": run, "best": best, "record": record}


def save_run(model: Any, run: Path, record: dict[str, Any]) -> Path:
    """Writes the run folder in one atomic rename: the recommender's own files, config.json,
    metrics.json and training_curve.png, with a manifest over all of them."""
    summary = {k: v for k, v in record.items() if k != "history"}
    with staged_dir(run) as stage:
        model.save(stage, force=True, training=summary)
        write_json(
            stage / "config.json",
            {"model": model.name, "config": dataclasses.asdict(model.config)},
        )
        write_json(stage / "metrics.json", record)
        write_bytes(stage / "training_curve.png", training_curve_png(record["history"], model.name))
        write_manifest(stage, MODEL_KIND, model=model.name)
    return run


def training_curve_png(history: list[dict[str, Any]], name: str) -> bytes:
    """A PNG of the training loss and the validation HR@20 and MRR@20 by epoch."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(epochs, [h["loss"] for h in history], marker="o")
    left.set(xlabel="epoch", ylabel="training loss (NLL)", title=f"{name}: loss")
    for key in (f"validation {METRIC}", "validation MRR@20"):
        right.plot(epochs, [h[key] for h in history], marker="o", label=key)
    right.set(xlabel="epoch", title="validation (sampled sessions)")
    right.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def copy_state(network: Any) -> dict[str, Any]:
    """A deep copy of a network's weights (for tests comparing runs)."""
    return copy.deepcopy({k: v.detach().cpu() for k, v in network.state_dict().items()})
