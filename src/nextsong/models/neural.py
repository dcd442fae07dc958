"""The trained neural recommenders: `nextsong`, its ablations, and the GRU4Rec and SASRec
competitors, all one class (`NeuralRecommender`) with different settings.

| name | graph | catalog | session | user | time | experts |
|---|---|---|---|---|---|---|
| `nextsong` | yes | yes | gru | yes | yes | yes |
| `nextsong-no-graph` | no | yes | gru | yes | yes | yes |
| `nextsong-no-session` | yes | yes | none | yes | yes | yes |
| `nextsong-no-time` | yes | yes | gru | yes | no | yes |
| `nextsong-no-transitions` | yes | yes | gru | yes | yes | no |
| `gru4rec` | no | no | gru | no | no | no |
| `sasrec` | no | no | sasrec | no | no | no |

What each part computes is in `network.py`; the inputs it reads from the training graph in
`inputs.py`; how it is trained in `nextsong.train`. `fit` trains without checkpoints (the shared
contract); `nextsong train` trains with checkpoints, resume, early stopping on the validation
period and DistributedDataParallel, and saves the run.

Config (defaults in brackets):
    dim [64]: embedding width. graph [True]: message passing over the catalog graph (song,
    artist, genre, strongest transitions) and over each listener's most played songs; without
    it songs are id + artist + genre + features, listeners id + features. catalog [True]: songs
    carry their artist, genre, features and the energy/popularity fit; False gives pure id
    embeddings (GRU4Rec, SASRec). session ["gru"]: "gru", "sasrec" or "none". user [True]:
    the listener's long-term taste. time [True]: hour-of-day and day-of-week context.
    experts [True]: the follows, same-artist and history experts (item-to-item, from the
    training graph's song -> song and listener -> song edges and the catalog).
    graph_layers [1]; max_length [20]: songs of the session the encoder reads (the most
    recent); sasrec_layers [2]; heads [2]; dropout [0.1]. follow_candidates [50],
    graph_follow_neighbours [5], user_neighbours [50], artist_candidates [50]: see
    `inputs.InputSizes`.
    Training: epochs [6], patience [2] (epochs without a better validation HR@20 before
    stopping), batch_size [512], examples_per_epoch [131072; 0 = every training target]:
    each epoch draws this many training targets afresh (seeded), which is the argument people
    confuse with a pass over the data; lr [0.003], weight_decay [1e-4], clip [1.0] (gradient
    norm), lr_factor [0.5] and lr_patience [0] (learning rate times lr_factor after lr_patience
    epochs without improvement), validation_sessions [2000] (sessions of the validation period
    sampled with the seed for early stopping; 0 = all), negatives [2048]: songs drawn per
    batch for the sampled softmax with logQ correction (0, or a catalog no larger, gives the
    full softmax), seed [0].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from nextsong.errors import ConfigError, DataError
from nextsong.models.base import Recommender, SessionBatch, TrainingData
from nextsong.models.inputs import EPOCH_WEEKDAY, US_PER_DAY, US_PER_HOUR, InputSizes, ModelInputs
from nextsong.models.registry import register

log = logging.getLogger(__name__)

SESSION_ENCODERS = ("gru", "sasrec", "none")
_TEST = {
    "dim": 16,
    "epochs": 1,
    "examples_per_epoch": 8192,
    "lr": 0.01,
    "batch_size": 256,
    "validation_sessions": 50,
    "graph_layers": 1,
}
_SEQUENCE_ONLY = {"graph": False, "catalog": False, "user": False, "time": False, "experts": False}


@dataclass(frozen=True)
class NeuralConfig:
    """Architecture, inputs and training of a neural model (see the module docstring)."""

    dim: int = 64
    graph: bool = True
    catalog: bool = True
    session: str = "gru"
    user: bool = True
    time: bool = True
    experts: bool = True
    graph_layers: int = 1
    max_length: int = 20
    sasrec_layers: int = 2
    heads: int = 2
    dropout: float = 0.1
    follow_candidates: int = 50
    graph_follow_neighbours: int = 5
    user_neighbours: int = 50
    artist_candidates: int = 50
    epochs: int = 6
    patience: int = 2
    batch_size: int = 512
    examples_per_epoch: int = 131_072
    negatives: int = 2_048
    lr: float = 3e-3
    weight_decay: float = 1e-4
    clip: float = 1.0
    lr_factor: float = 0.5
    lr_patience: int = 0
    validation_sessions: int = 2_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.session not in SESSION_ENCODERS:
            raise ConfigError(
                f"session must be one of {', '.join(SESSION_ENCODERS)}, got {self.session!r}"
            )
        if self.graph and not self.catalog:
            raise ConfigError("graph=True needs catalog=True (the graph links songs to artists)")
        for name in (
            "dim",
            "graph_layers",
            "max_length",
            "sasrec_layers",
            "heads",
            "follow_candidates",
            "graph_follow_neighbours",
            "user_neighbours",
            "artist_candidates",
            "epochs",
            "batch_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in (
            "patience",
            "lr_patience",
            "examples_per_epoch",
            "negatives",
            "validation_sessions",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if self.dim % self.heads:
            raise ConfigError(f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.clip > 0):
            raise ConfigError(
                f"need lr > 0, weight_decay >= 0, clip > 0; got {self.lr}, {self.weight_decay}, "
                f"{self.clip}"
            )
        if not 0 < self.lr_factor < 1:
            raise ConfigError(f"lr_factor must be in (0, 1), got {self.lr_factor}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be in 0..2^63-1, got {self.seed}")

    @property
    def input_sizes(self) -> InputSizes:
        return InputSizes(
            self.follow_candidates,
            self.graph_follow_neighbours,
            self.user_neighbours,
            self.artist_candidates,
        )


@register("sasrec", kind="trained", test_settings=_TEST, session="sasrec", **_SEQUENCE_ONLY)
@register("gru4rec", kind="trained", test_settings=_TEST, session="gru", **_SEQUENCE_ONLY)
@register("nextsong-no-transitions", kind="trained", test_settings=_TEST, experts=False)
@register("nextsong-no-time", kind="trained", test_settings=_TEST, time=False)
@register("nextsong-no-session", kind="trained", test_settings=_TEST, session="none")
@register("nextsong-no-graph", kind="trained", test_settings=_TEST, graph=False)
@register("nextsong", kind="trained", test_settings=_TEST)
class NeuralRecommender(Recommender):
    """A `network.NextSongNetwork` behind the recommender contract; scores are log-probabilities
    of the next song (<= 0; -inf for songs of the session's last `max_length`)."""

    Config = NeuralConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.inputs: ModelInputs | None = None
        self._network: Any = None
        self._saved: dict[str, np.ndarray] | None = None  # arrays of a loaded model
        self._scorer: Any = None  # a `serving.NumpyScorer` of a loaded model
        self.training_record: dict[str, Any] = {}
        self._table: Any = None  # (S, d) song embeddings of the current weights, for scoring

    @property
    def network(self) -> Any:
        """The torch `NextSongNetwork`; a loaded model builds it from its arrays on first use
        (scoring a loaded model does not need it: see `serving.py`)."""
        if self._network is None and self._saved is not None:
            self._network = self._load_network(self._saved)
        return self._network

    @network.setter
    def network(self, value: Any) -> None:
        self._network = value
        self._scorer = None  # weights the scorer was not made from

    # -- training ----------------------------------------------------------------------------
    def build(self, data: TrainingData) -> None:
        """Reads the inputs from the training window and makes a fresh network (seeded)."""
        import torch

        from nextsong.models.network import NextSongNetwork

        self.n_songs = data.n_songs
        self.inputs = build_inputs_logged(data, self.config.input_sizes)
        torch.manual_seed(self.config.seed)
        self.network = NextSongNetwork(self.config, self.inputs)
        self._table = None

    def _fit(self, data: TrainingData) -> None:
        from nextsong.train import TrainOptions, fit

        self.build(data)
        self.training_record = fit(self, data, TrainOptions())

    # -- scoring -----------------------------------------------------------------------------
    def arrays(self, batch: SessionBatch) -> dict[str, np.ndarray]:
        """The network's inputs (`session_arrays`) for a batch of sessions-so-far: the last
        `max_length` songs of each."""
        songs, skipped = batch.songs, batch.skipped
        width = min(songs.shape[1], self.config.max_length)
        return session_arrays(
            batch.user_id,
            songs[:, songs.shape[1] - width :],
            skipped[:, skipped.shape[1] - width :],
            batch.now_us,
        )

    def tensors(self, batch: SessionBatch, device: Any = None) -> dict[str, Any]:
        """`arrays` as torch tensors on `device`."""
        return as_tensors(self.arrays(batch), device)

    def _score(self, batch: SessionBatch) -> np.ndarray:
        if self._scorer is not None:
            return self._scorer.log_probs(**self.arrays(batch))
        import torch

        network = self.network
        network.eval()
        device = next(network.parameters()).device
        with torch.no_grad():
            if self._table is None:  # the propagated catalog: once per set of weights
                self._table = network.song_table()
            scores = network.log_probs(self.tensors(batch, device), self._table)
        return scores.float().cpu().numpy()

    # -- persistence -------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        from nextsong.models.serving import serving_arrays

        weights = {
            f"network.{name}": value.detach().cpu().numpy()
            for name, value in self.network.state_dict().items()
        }
        arrays = {**self.inputs.arrays(), **weights, **serving_arrays(self.network)}
        return arrays, {"training": self.training_record}

    def load_state(self, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        """Restores a saved model. One saved with its serving arrays scores through numpy
        (`serving.NumpyScorer`, no torch import); the torch network is built when first asked
        for (to train on, or to compare with). An older save without them loads the network."""
        from nextsong.models.serving import NumpyScorer, has_serving_arrays

        self.inputs = ModelInputs.from_arrays(arrays)
        self._network, self._table = None, None
        self._saved = arrays
        self.training_record = dict(metadata.get("training", {}))
        if has_serving_arrays(arrays, self.config):
            self._scorer = NumpyScorer(self.config, arrays, self.name)
        else:
            self._scorer = None
            self._network = self._load_network(arrays)

    def _load_network(self, arrays: dict[str, np.ndarray]) -> Any:
        import torch

        from nextsong.models.network import NextSongNetwork

        network = NextSongNetwork(self.config, self.inputs)
        prefix = "network."
        weights = {
            key[len(prefix) :]: torch.from_numpy(np.ascontiguousarray(value))
            for key, value in arrays.items()
            if key.startswith(prefix)
        }
        try:
            network.load_state_dict(weights)
        except RuntimeError as error:
            # torch lists every mismatch on its own line; the first says enough on one line.
            details = [line.strip() for line in str(error).splitlines() if line.strip()]
            first = details[1] if len(details) > 1 else details[0] if details else "?"
            raise DataError(
                f"saved weights do not fit model {self.name} (trained by another version of the "
                f"code?): {first}; train it again"
            ) from None
        return network

    def weights_changed(self) -> None:
        """Forgets what was derived from earlier weights: the song embeddings kept for scoring
        and a loaded model's numpy scorer (the trainer calls it)."""
        self._table = None
        self._scorer = None


def build_inputs_logged(data: TrainingData, sizes: InputSizes) -> ModelInputs:
    from nextsong.models.inputs import build_inputs

    inputs = build_inputs(data, sizes)
    log.info(
        "inputs: %d songs, %d listeners, %d catalog edges",
        inputs.n_songs,
        inputs.n_users,
        sum(e.shape[1] for e in inputs.edges.values()),
    )
    return inputs


def session_arrays(
    user: np.ndarray,
    songs: np.ndarray,
    skipped: np.ndarray,
    now_us: np.ndarray,
    target: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Network inputs as int64/bool numpy arrays: user (B,), songs and skipped (B, L)
    right-aligned with -1 padding, the hour and weekday of now_us (B,) (when the next song
    starts), and target (B,) for training."""
    now_us = np.asarray(now_us, dtype=np.int64)
    arrays = {
        "user": np.asarray(user, dtype=np.int64),
        "songs": np.asarray(songs, dtype=np.int64),
        "skipped": np.asarray(skipped, dtype=bool) & (np.asarray(songs) >= 0),
        "hour": (now_us // US_PER_HOUR) % 24,
        "weekday": (now_us // US_PER_DAY + EPOCH_WEEKDAY) % 7,
    }
    if target is not None:
        arrays["target"] = np.asarray(target, dtype=np.int64)
    return arrays


def session_tensors(
    user: np.ndarray,
    songs: np.ndarray,
    skipped: np.ndarray,
    now_us: np.ndarray,
    device: Any = None,
    target: np.ndarray | None = None,
) -> dict[str, Any]:
    """`session_arrays` as torch tensors on `device`."""
    return as_tensors(session_arrays(user, songs, skipped, now_us, target), device)


def as_tensors(arrays: dict[str, np.ndarray], device: Any = None) -> dict[str, Any]:
    import torch

    return {
        name: torch.from_numpy(np.ascontiguousarray(v)).to(device) for name, v in arrays.items()
    }
