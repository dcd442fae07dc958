"""Scoring a saved neural model with numpy alone: the fast path of `recommend` and `evaluate`.

Importing torch and PyTorch Geometric takes 3 to 5 seconds on the target machine, longer than the
whole cold-start budget of `nextsong recommend` (3 s). Everything in `network.NextSongNetwork`
that depends only on the weights is therefore computed once when a model is saved and stored
beside the weights (`serving_arrays`):

- `serving.song_table` (S, d): the song embeddings after the graph encoder (`song_table()`);
- `serving.song_bias` (S,): the per-song logit bias, zero for songs never played in training;
- `serving.song_fit` (S, 9): the energy/popularity basis of each song;
- `serving.user` (U, d): each listener's long-term taste (`user_vector()`), when the model has it.

What depends on the request (the session encoder, the time context, the query mix, the energy
fit, the three item-to-item experts and the gate) is `NumpyScorer.log_probs`, the same arithmetic
as `NextSongNetwork.log_probs` in eval mode, written with numpy and scipy's `erf` for GELU. The
two must agree: `tests/test_recommender_contract.py` saves every registered neural model, loads
it back (which scores through this module) and compares the scores with the torch ones; a change
to the network's forward pass that is not mirrored here fails that test.

Shapes follow `network.py`: B sessions, L songs per window (right-aligned, -1 padded), S songs,
d dims.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from nextsong.errors import DataError
from nextsong.models.inputs import ENERGY_CENTRES, EXPERTS, HOUR_BASIS, MASKED

if TYPE_CHECKING:
    from nextsong.models.neural import NeuralConfig

PREFIX = "serving."
WEIGHTS = "network."
LAYER_NORM_EPS = 1e-5  # torch's default for LayerNorm and TransformerEncoderLayer
USER_CHUNK = 4096  # listeners whose taste vectors are computed at once when saving


def serving_arrays(network: Any) -> dict[str, np.ndarray]:
    """The weight-only parts of `network` (a `NextSongNetwork`) as numpy arrays, in eval mode."""
    import torch

    was_training = network.training
    network.eval()
    with torch.no_grad():
        table = network.song_table()
        arrays = {
            "song_table": table,
            "song_bias": network._bias(),
            "song_fit": network.song_fit,
        }
        if network.config.user:
            n_users = network.user_x.shape[0]
            arrays["user"] = torch.cat(
                [
                    network.user_vector(torch.arange(lo, min(lo + USER_CHUNK, n_users)), table)
                    for lo in range(0, n_users, USER_CHUNK)
                ]
            )
    network.train(was_training)
    return {PREFIX + k: v.detach().cpu().numpy().astype(np.float32) for k, v in arrays.items()}


def has_serving_arrays(arrays: dict[str, np.ndarray], config: NeuralConfig) -> bool:
    needed = {"song_table", "song_bias", "song_fit"} | ({"user"} if config.user else set())
    return all(PREFIX + name in arrays for name in needed)


def expected_shapes(config: NeuralConfig, n_songs: int, n_users: int) -> dict[str, tuple]:
    """The shape of every array the numpy path reads, by the model's config: a saved model is
    checked against it when loaded, so a mismatch is a one-line error, not a numpy traceback."""
    d = config.dim
    shapes: dict[str, tuple] = {
        PREFIX + "song_table": (n_songs, d),
        PREFIX + "song_bias": (n_songs,),
        PREFIX + "song_fit": (n_songs, ENERGY_CENTRES + 1),
        WEIGHTS + "song_bias": (n_songs,),
        WEIGHTS + "mix.0.weight": (2 * d, 3 * d),
        WEIGHTS + "mix.0.bias": (2 * d,),
        WEIGHTS + "mix.3.weight": (d, 2 * d),
        WEIGHTS + "mix.3.bias": (d,),
    }
    if config.user:
        shapes[PREFIX + "user"] = (n_users, d)
    if config.catalog:
        shapes[WEIGHTS + "fit_query.weight"] = ((ENERGY_CENTRES + 1) * HOUR_BASIS, 2 * d)
        shapes[WEIGHTS + "fit_query.bias"] = ((ENERGY_CENTRES + 1) * HOUR_BASIS,)
    if config.time:
        shapes.update({WEIGHTS + "hour.weight": (d, HOUR_BASIS - 1), WEIGHTS + "hour.bias": (d,)})
        shapes[WEIGHTS + "weekday.weight"] = (7, d)
    if config.session != "none":
        shapes[WEIGHTS + "session.skip.weight"] = (2, d)
        shapes[WEIGHTS + "session.recency.weight"] = (config.max_length, d)
    if config.session == "gru":
        for side in ("ih", "hh"):
            shapes[WEIGHTS + f"session.rnn.weight_{side}_l0"] = (3 * d, d)
            shapes[WEIGHTS + f"session.rnn.bias_{side}_l0"] = (3 * d,)
    if config.session == "sasrec":
        shapes.update({WEIGHTS + "session.norm.weight": (d,), WEIGHTS + "session.norm.bias": (d,)})
        for layer in range(config.sasrec_layers):
            p = WEIGHTS + f"session.attention.layers.{layer}."
            linears = {
                "self_attn.out_proj": (d, d),
                "linear1": (2 * d, d),
                "linear2": (d, 2 * d),
                "norm1": (d,),
                "norm2": (d,),
            }
            for part, shape in linears.items():
                shapes[p + part + ".weight"] = shape
                shapes[p + part + ".bias"] = (shape[0],)
            shapes[p + "self_attn.in_proj_weight"] = (3 * d, d)
            shapes[p + "self_attn.in_proj_bias"] = (3 * d,)
    if config.experts:
        shapes[WEIGHTS + "follow_score.weight"] = (1, 4)
        shapes[WEIGHTS + "follow_score.bias"] = (1,)
        for part in ("follow_query", "artist_query", "history_query"):
            shapes[WEIGHTS + part + ".weight"] = (d, d)
            shapes[WEIGHTS + part + ".bias"] = (d,)
        shapes[WEIGHTS + "artist_popularity"] = (1,)
        shapes[WEIGHTS + "history_plays"] = (1,)
        shapes[WEIGHTS + "gate.weight"] = (len(EXPERTS), d + 2 + len(EXPERTS) - 1)
        shapes[WEIGHTS + "gate.bias"] = (len(EXPERTS),)
    return shapes


class NumpyScorer:
    """`NextSongNetwork.log_probs` in eval mode over the arrays of a saved model."""

    def __init__(self, config: NeuralConfig, arrays: dict[str, np.ndarray], name: str) -> None:
        self.config = config
        self.a = arrays  # the saved arrays: inputs.*, network.* and serving.*
        n_songs = len(self._array("inputs.song_artist"))
        n_users = len(self._array("inputs.user_x"))
        for key, shape in expected_shapes(config, n_songs, n_users).items():
            found = tuple(self._array(key).shape)
            if found != shape:
                raise DataError(
                    f"saved weights do not fit model {name} (trained by another version of the "
                    f"code?): {key} has shape {found}, the model expects {shape}; train it again"
                )
        self.table = self._array(PREFIX + "song_table")
        self.bias = self._array(PREFIX + "song_bias")
        self.fit_basis = self._array(PREFIX + "song_fit")
        self.users = self._array(PREFIX + "user") if config.user else None

    def _array(self, name: str) -> np.ndarray:
        if name not in self.a:
            raise DataError(f"saved model has no array {name!r}: train it again")
        return np.asarray(self.a[name])

    def _w(self, name: str) -> np.ndarray:
        return self._array(WEIGHTS + name)

    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        return x @ self._w(f"{name}.weight").T + self._w(f"{name}.bias")

    # -- the request-dependent parts ---------------------------------------------------------
    def log_probs(
        self,
        user: np.ndarray,
        songs: np.ndarray,
        skipped: np.ndarray,
        hour: np.ndarray,
        weekday: np.ndarray,
    ) -> np.ndarray:
        """(B, S) float32 log-probability of every song being next; -inf for window songs.
        Inputs as `neural.session_arrays` makes them."""
        config = self.config
        b, d = len(songs), config.dim
        valid = songs >= 0
        zeros = np.zeros((b, d), dtype=np.float32)

        session = zeros
        if config.session != "none" and songs.shape[1]:
            vectors = self.table[np.maximum(songs, 0)]
            session = self._session(vectors, skipped, valid)
        user_vector = self._user(user) if config.user else zeros
        when = _hour_basis(hour, config.time)
        time = zeros
        if config.time:
            time = self._linear("hour", when[:, 1:]) + self._w("weekday.weight")[weekday]
        joined = np.concatenate([session, user_vector, time], axis=1)
        hidden = _gelu(self._linear("mix.0", joined))
        query = session + user_vector + time + self._linear("mix.3", hidden)

        logits = query @ self.table.T + self.bias
        if config.catalog:
            fit = self._linear("fit_query", np.concatenate([user_vector, session], axis=1))
            fit = (fit.reshape(b, -1, HOUR_BASIS) * when[:, None, :]).sum(axis=2)
            logits += fit @ self.fit_basis.T
        rows, cols = np.nonzero(valid)
        logits[rows, songs[rows, cols]] = -np.inf
        neural = _log_softmax(logits)
        if not config.experts:
            return neural
        return self._mixture(neural, songs, skipped, valid, user, query)

    def _user(self, user: np.ndarray) -> np.ndarray:
        n_users = self.users.shape[0]
        known = (user >= 0) & (user < n_users)
        return self.users[np.clip(user, 0, n_users - 1)] * known[:, None]

    def _session(self, vectors: np.ndarray, skipped: np.ndarray, valid: np.ndarray) -> np.ndarray:
        width = vectors.shape[1]
        recency_rows = self._w("session.recency.weight")
        recency = np.minimum(width - 1 - np.arange(width), recency_rows.shape[0] - 1)
        x = vectors + self._w("session.skip.weight")[skipped.astype(np.int64)]
        x = (x + recency_rows[recency][None]) * valid[..., None]
        length = valid.sum(axis=1)
        encode = self._gru if self.config.session == "gru" else self._attention
        out = encode(x, valid)
        return (out * (length > 0)[:, None]).astype(np.float32)

    def _gru(self, x: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """torch.nn.GRU (one layer) over each row's valid, right-aligned steps: the state stays
        zero through the padding, as the packed sequence of the torch path skips it."""
        w_ih, w_hh = self._w("session.rnn.weight_ih_l0"), self._w("session.rnn.weight_hh_l0")
        b_ih, b_hh = self._w("session.rnn.bias_ih_l0"), self._w("session.rnn.bias_hh_l0")
        d = w_hh.shape[1]
        inputs = x @ w_ih.T + b_ih  # (B, L, 3d): the input side of every step at once
        h = np.zeros((x.shape[0], d), dtype=np.float32)
        for step in range(x.shape[1]):
            recurrent = h @ w_hh.T + b_hh
            i_r, i_z, i_n = np.split(inputs[:, step], 3, axis=1)
            h_r, h_z, h_n = np.split(recurrent, 3, axis=1)
            r, z = _sigmoid(i_r + h_r), _sigmoid(i_z + h_z)
            n = np.tanh(i_n + r * h_n)
            h = np.where(valid[:, step, None], (1 - z) * n + z * h, h)
        return h

    def _attention(self, x: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """torch.nn.TransformerEncoder of pre-norm layers (norm_first, GELU) with a key padding
        mask, then the final LayerNorm of the last position."""
        heads = self.config.heads
        b, width, d = x.shape
        ignore = ~valid
        ignore[:, -1] = False  # as the torch path: an empty session attends to its last slot
        mask = np.where(ignore, -np.inf, 0.0).astype(np.float32)[:, None, None, :]  # (B,1,1,L)
        for layer in range(self.config.sasrec_layers):
            p = f"session.attention.layers.{layer}."
            y = _layer_norm(x, self._w(p + "norm1.weight"), self._w(p + "norm1.bias"))
            qkv = y @ self._w(p + "self_attn.in_proj_weight").T + self._w(
                p + "self_attn.in_proj_bias"
            )
            q, k, v = (
                part.reshape(b, width, heads, d // heads).transpose(0, 2, 1, 3)
                for part in np.split(qkv, 3, axis=2)
            )  # each (B, H, L, d/H)
            weights = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d // heads) + mask
            attended = (_softmax(weights) @ v).transpose(0, 2, 1, 3).reshape(b, width, d)
            x = x + self._linear(p + "self_attn.out_proj", attended)
            y = _layer_norm(x, self._w(p + "norm2.weight"), self._w(p + "norm2.bias"))
            x = x + self._linear(p + "linear2", _gelu(self._linear(p + "linear1", y)))
        return _layer_norm(x[:, -1], self._w("session.norm.weight"), self._w("session.norm.bias"))

    def _mixture(
        self,
        neural: np.ndarray,
        songs: np.ndarray,
        skipped: np.ndarray,
        valid: np.ndarray,
        user: np.ndarray,
        query: np.ndarray,
    ) -> np.ndarray:
        """The gated mixture of the neural expert with the follows, same-artist and history
        experts (`NextSongNetwork._experts`), added into `neural` in place."""
        b = len(songs)
        inputs = {name: np.asarray(self.a[f"inputs.{name}"]) for name in _EXPERT_INPUTS}
        started = valid[:, -1] if songs.shape[1] else np.zeros(b, dtype=bool)
        last = np.maximum(songs[:, -1], 0) if songs.shape[1] else np.zeros(b, dtype=np.int64)
        last_skipped = (skipped[:, -1] if songs.shape[1] else started).astype(np.float32)
        last_skipped = last_skipped * started

        def candidates(ids: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            seen = np.zeros(ids.shape, dtype=bool)
            if songs.shape[1]:
                seen = (ids[:, :, None] == songs[:, None, :]).any(axis=2)
            return np.maximum(ids, 0), (ids >= 0) & ~seen & allowed[:, None]

        def dot(ids: np.ndarray, name: str) -> np.ndarray:
            return np.einsum("bkd,bd->bk", self.table[ids], self._linear(name, query))

        follow, follow_ok = candidates(inputs["follow_next"][last], started)
        attr = inputs["follow_attr"][last]
        attr = np.concatenate([attr, attr * last_skipped[:, None, None]], axis=2)
        follow_logit = self._linear("follow_score", attr)[..., 0] + dot(follow, "follow_query")
        same, same_ok = candidates(inputs["artist_songs"][inputs["song_artist"][last]], started)
        same_logit = self._w("artist_popularity")[0] * inputs["song_log_plays"][same]
        same_logit = same_logit + dot(same, "artist_query")
        n_users = inputs["user_songs"].shape[0]
        known = (user >= 0) & (user < n_users)
        row = np.clip(user, 0, n_users - 1)
        mine, mine_ok = candidates(inputs["user_songs"][row], known)
        mine_logit = self._w("history_plays")[0] * inputs["user_song_weight"][row]
        mine_logit = mine_logit + dot(mine, "history_query")

        oks = (follow_ok, same_ok, mine_ok)
        signals = np.stack(
            [last_skipped, started.astype(np.float32), *(np.log1p(ok.sum(1)) for ok in oks)], 1
        ).astype(np.float32)
        gate = self._linear("gate", np.concatenate([query, signals], axis=1))
        available = np.stack([np.ones(b, dtype=bool), *(ok.any(axis=1) for ok in oks)], 1)
        gate = _log_softmax(np.where(available, gate, -np.inf))

        mixture = neural + gate[:, :1]
        for slot, (ids, ok, logit) in enumerate(
            zip((follow, same, mine), oks, (follow_logit, same_logit, mine_logit), strict=True),
            start=1,
        ):
            log_q = _log_softmax(np.where(ok, logit, np.float32(MASKED)))
            rows, cols = np.nonzero(ok)
            value = gate[rows, slot] + log_q[rows, cols]
            rows, songs_of, value = _max_per_cell(rows, ids[rows, cols], value, neural.shape[1])
            mixture[rows, songs_of] = np.logaddexp(mixture[rows, songs_of], value)
        return mixture.astype(np.float32)


_EXPERT_INPUTS = (
    "follow_next",
    "follow_attr",
    "artist_songs",
    "song_artist",
    "song_log_plays",
    "user_songs",
    "user_song_weight",
)


def _max_per_cell(
    rows: np.ndarray, cols: np.ndarray, value: np.ndarray, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One entry per (row, col) with the largest value (the torch path's scatter "amax")."""
    cell = rows.astype(np.int64) * n_cols + cols
    order = np.lexsort((-value, cell))
    first = np.ones(len(order), dtype=bool)
    first[1:] = cell[order][1:] != cell[order][:-1]
    keep = order[first]
    return rows[keep], cols[keep], value[keep]


def _hour_basis(hour: np.ndarray, time: bool) -> np.ndarray:
    angle = 2 * np.pi * hour.astype(np.float32) / 24
    basis = np.stack(
        [np.ones_like(angle), np.cos(angle), np.sin(angle), np.cos(2 * angle), np.sin(2 * angle)],
        axis=1,
    ).astype(np.float32)
    if not time:
        basis[:, 1:] = 0
    return basis


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact GELU (torch's default), x * Phi(x)."""
    from scipy.special import erf

    return (0.5 * x * (1 + erf(x / np.float32(math.sqrt(2))))).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYER_NORM_EPS) * weight + bias


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax; -inf entries stay -inf (a row has at least one finite entry)."""
    top = x.max(axis=1, keepdims=True)
    shifted = x - top
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
