"""The torch modules of the neural models: graph encoder, session encoder, experts and their mix.

The next-song distribution is a gated mixture of three experts (the way a listener's next song is
a mixture of reasons), each a distribution over songs:

    P(j | session, user, time) = pi_n softmax_j(q . e_j + b_j + psi . phi_j)      (neural)
                               + pi_f softmax over the last song's successors      (follows)
                               + pi_a softmax over the last song's artist's songs (same artist)
                               + pi_h softmax over the listener's most played songs (history)

- e_j (S, d): song embeddings. An id embedding (zero for songs never played in training), plus
  the song's artist, genre and features (`catalog`), refined by a heterogeneous graph encoder
  (`graph`: PyG `HeteroConv` of `SAGEConv` over song-artist-genre and the strongest song->song
  transitions, Hamilton et al. 2017), so a song new in the test period is placed by its artist
  and genre.
- q (B, d): the query, a mix of the session (`session`: a GRU as in GRU4Rec, Hidasi et al.
  2016, or a self-attention encoder as in SASRec, Kang and McAuley 2018, over the last
  `max_length` songs with their skip flags and recency), the listener's long-term taste (`user`:
  an id embedding, features, and a weighted mean of their most played songs through a PyG
  `GraphConv`) and the time (`time`: hour-of-day harmonics and day of week).
- psi . phi_j: an explicit energy and popularity fit: phi_j (S, 9) are radial basis functions of
  the song's energy and its log plays; psi (B, 9) is a bilinear function of the listener (and
  session) and the hour harmonics, so "calm in the morning, energetic at night" is an inner
  product rather than something the MLP must discover.
- follows / same artist / history (`experts`): softmaxes over the last song's most frequent
  training successors (their log counts, with and without skips, and q . e_j), over its
  artist's most played songs (their log plays and q . e_j) and over the listener's own most
  played songs (their log plays and q . e_j), read from the training graph. This is the
  first-order item-to-item signal of FPMC (Rendle et al. 2010) and the re-listening of
  favourites in a pointer-style mixture (as RepeatNet mixes repeat and explore, Ren et al.
  2019); the gate pi sees q, whether the last song was skipped and how many candidates each
  expert has.

Songs in the session's window are ruled out of every expert (as the evaluation removes them).
The loss is the negative log of the mixture's probability of the target: a full softmax over
the catalog for the neural expert, exact softmaxes over candidates for the others.

Shapes: B sessions, L songs per session window (right-aligned, -1 padded), S songs, d dims.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional

from nextsong.models.inputs import (
    CATALOG_RELATIONS,
    ENERGY_CENTRES,
    ENERGY_WIDTH,
    EXPERTS,
    HOUR_BASIS,
    MASKED,
    ModelInputs,
    edge_key,
)

if TYPE_CHECKING:
    from nextsong.models.neural import NeuralConfig

SESSION_ENCODERS = ("gru", "sasrec", "none")


def hour_basis(hour: Tensor, time: bool) -> Tensor:
    """(B, HOUR_BASIS) harmonics of the hour of day; only the constant without `time`."""
    angle = 2 * math.pi * hour.float() / 24
    basis = torch.stack(
        [torch.ones_like(angle), angle.cos(), angle.sin(), (2 * angle).cos(), (2 * angle).sin()],
        dim=1,
    )
    return basis if time else basis * (torch.arange(HOUR_BASIS) == 0).to(basis)


class GraphEncoder(nn.Module):
    """`layers` rounds of heterogeneous message passing (PyG HeteroConv of SAGEConv, mean
    aggregation, summed over relations) over the catalog graph, with residual connections.
    Only songs are read from the last round, so it keeps only the relations into songs."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        from torch_geometric.nn import HeteroConv, SAGEConv

        def round_of(relations: tuple[tuple[str, str, str], ...]) -> HeteroConv:
            convs = {rel: SAGEConv((dim, dim), dim, root_weight=False) for rel in relations}
            with warnings.catch_warnings():  # artists and genres are not read after the last
                warnings.filterwarnings("ignore", message="There exist node types")
                return HeteroConv(convs, aggr="sum")

        into_songs = tuple(rel for rel in CATALOG_RELATIONS if rel[2] == "song")
        self.convs = nn.ModuleList(
            round_of(CATALOG_RELATIONS if layer < layers - 1 else into_songs)
            for layer in range(layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))

    def forward(self, x: dict[str, Tensor], adjacency: dict[Any, Tensor]) -> dict[str, Tensor]:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            out = conv(x, adjacency)
            x = {
                node: value + functional.gelu(norm(out[node])) if node in out else value
                for node, value in x.items()
            }
        return x


class SessionEncoder(nn.Module):
    """The session so far, (B, L, d) song vectors with skip and recency embeddings, to (B, d)."""

    def __init__(self, kind: str, dim: int, max_length: int, layers: int, heads: int, dropout):
        super().__init__()
        self.kind = kind
        self.skip = nn.Embedding(2, dim)
        self.recency = nn.Embedding(max_length, dim)
        nn.init.normal_(self.skip.weight, std=0.05)
        nn.init.normal_(self.recency.weight, std=0.05)
        self.dropout = nn.Dropout(dropout)
        if kind == "gru":
            self.rnn = nn.GRU(dim, dim, batch_first=True)
        else:
            layer = nn.TransformerEncoderLayer(
                dim, heads, 2 * dim, dropout, activation="gelu", batch_first=True, norm_first=True
            )
            self.attention = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(dim)

    def forward(self, vectors: Tensor, skipped: Tensor, valid: Tensor) -> Tensor:
        width = vectors.shape[1]
        recency = (width - 1 - torch.arange(width)).clamp(max=self.recency.num_embeddings - 1)
        x = vectors + self.skip(skipped.long()) + self.recency(recency)[None]
        x = self.dropout(x * valid[..., None])  # (B, L, d)
        length = valid.sum(dim=1)
        if self.kind == "gru":
            # Left-align the right-aligned rows so the packed GRU ends on each row's last song.
            column = (torch.arange(width)[None, :] + (width - length)[:, None]).clamp(max=width - 1)
            left = x.gather(1, column[..., None].expand(-1, -1, x.shape[2]))
            packed = nn.utils.rnn.pack_padded_sequence(
                left, length.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            _, hidden = self.rnn(packed)
            out = hidden[-1]  # (B, d)
        else:
            mask = ~valid
            mask[:, -1] = False  # an empty session attends to its (zero) last slot, not nothing
            out = self.norm(self.attention(x, src_key_padding_mask=mask)[:, -1])
        return out * (length > 0)[:, None]


class NextSongNetwork(nn.Module):
    """The mixture of the module docstring. `forward` returns the training loss of a batch;
    `log_probs` the (B, S) log-probabilities of every song as the next one."""

    def __init__(self, config: NeuralConfig, inputs: ModelInputs) -> None:
        super().__init__()
        self.config = config
        d = config.dim
        self._register_inputs(inputs)
        n_songs, n_users = inputs.n_songs, inputs.n_users
        n_artists, n_genres = inputs.artist_x.shape[0], inputs.genre_x.shape[0]

        self.song_id = _embedding(n_songs, d)
        self.song_bias = nn.Parameter(torch.zeros(n_songs))
        if config.catalog:
            self.artist = _embedding(n_artists, d)
            self.genre = _embedding(n_genres + 1, d)  # the last row: unknown genre
            self.song_features = nn.Linear(inputs.song_x.shape[1], d)
            self.fit_query = nn.Linear(2 * d, (ENERGY_CENTRES + 1) * HOUR_BASIS)
            nn.init.zeros_(self.fit_query.weight)
            nn.init.zeros_(self.fit_query.bias)
        if config.graph:
            from torch_geometric.nn import GraphConv

            self.artist_features = nn.Linear(inputs.artist_x.shape[1], d)
            self.genre_features = nn.Linear(inputs.genre_x.shape[1], d)
            self.encoder = GraphEncoder(d, config.graph_layers)
            self.user_conv = GraphConv((d, d), d, aggr="mean")
        if config.user:
            self.user_id = _embedding(n_users, d)
            self.user_features = nn.Linear(inputs.user_x.shape[1], d)
        if config.session != "none":
            self.session = SessionEncoder(
                config.session,
                d,
                config.max_length,
                config.sasrec_layers,
                config.heads,
                config.dropout,
            )
        if config.time:
            self.hour = nn.Linear(HOUR_BASIS - 1, d)
            self.weekday = _embedding(7, d)
        self.mix = nn.Sequential(
            nn.Linear(3 * d, 2 * d), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(2 * d, d)
        )
        if config.experts:
            self.follow_score = nn.Linear(4, 1)
            self.follow_query = nn.Linear(d, d)
            self.artist_popularity = nn.Parameter(torch.ones(1))
            self.artist_query = nn.Linear(d, d)
            self.history_plays = nn.Parameter(torch.ones(1))
            self.history_query = nn.Linear(d, d)
            # q, the last song's skip flag, whether the session has started, and log(1 +
            # candidates) of each item-to-item expert (`_experts`).
            self.gate = nn.Linear(d + 2 + len(EXPERTS) - 1, len(EXPERTS))

    # -- inputs ------------------------------------------------------------------------------
    def _register_inputs(self, inputs: ModelInputs) -> None:
        """Inputs as non-persistent buffers (saved apart from the weights, see `neural.py`)."""
        for name in (
            "song_artist",
            "song_genre",
            "song_known",
            "song_x",
            "user_x",
            "artist_x",
            "genre_x",
            "user_songs",
            "user_song_weight",
            "follow_next",
            "follow_attr",
            "artist_songs",
            "song_log_plays",
        ):
            self.register_buffer(name, torch.from_numpy(getattr(inputs, name)), persistent=False)
        centres = torch.linspace(0, 1, ENERGY_CENTRES)
        energy = torch.from_numpy(inputs.song_energy)
        rbf = torch.exp(-((energy[:, None] - centres[None, :]) ** 2) / (2 * ENERGY_WIDTH**2))
        phi = torch.cat([rbf, torch.from_numpy(inputs.song_log_plays)[:, None]], dim=1)
        self.register_buffer("song_fit", phi, persistent=False)  # (S, ENERGY_CENTRES + 1)
        self.edge_types = []
        for edge_type in CATALOG_RELATIONS:
            # Kept as destination-sorted CSR parts; the sparse tensor is assembled per call.
            src, dst = torch.from_numpy(inputs.edges[edge_key(edge_type)])
            order = torch.argsort(dst * (src.max() + 1 if len(src) else 1) + src)
            key = edge_key(edge_type)
            n_dst = {"song": inputs.n_songs, "artist": inputs.artist_x.shape[0]}.get(
                edge_type[2], inputs.genre_x.shape[0]
            )
            counts = torch.bincount(dst, minlength=n_dst)
            crow = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
            self.register_buffer(f"{key}__crow", crow, persistent=False)
            self.register_buffer(f"{key}__col", src[order].contiguous(), persistent=False)
            self.edge_types.append(edge_type)

    def _adjacency(self) -> dict[Any, Tensor]:
        """(N_dst, N_src) sparse CSR adjacency of each catalog relation."""
        sizes = {
            "song": self.song_x.shape[0],
            "artist": self.artist_x.shape[0],
            "genre": self.genre_x.shape[0],
        }
        out = {}
        for edge_type in self.edge_types:
            key = edge_key(edge_type)
            crow, col = getattr(self, f"{key}__crow"), getattr(self, f"{key}__col")
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
                out[edge_type] = torch.sparse_csr_tensor(
                    crow,
                    col,
                    torch.ones(len(col), device=col.device),
                    (sizes[edge_type[2]], sizes[edge_type[0]]),
                    check_invariants=False,
                )
        return out

    # -- embeddings --------------------------------------------------------------------------
    def song_table(self) -> Tensor:
        """(S, d) embeddings of every song (input of the session encoder and output side)."""
        songs = self.song_id.weight * self.song_known[:, None]
        if self.config.catalog:
            songs = songs + self.artist(self.song_artist) + self.genre(self.song_genre)
            songs = songs + self.song_features(self.song_x)
        if self.config.graph:
            nodes = {
                "song": songs,
                "artist": self.artist.weight + self.artist_features(self.artist_x),
                "genre": self.genre.weight[:-1] + self.genre_features(self.genre_x),
            }
            songs = self.encoder(nodes, self._adjacency())["song"]
        return songs

    def user_vector(self, user: Tensor, table: Tensor, in_session: Tensor | None = None) -> Tensor:
        """(B, d) long-term taste; zero for listeners unseen in training (cold start).
        `in_session` as in `_experts`: in training, the session's own plays are left out."""
        n_users = self.user_x.shape[0]
        known = (user >= 0) & (user < n_users)
        row = user.clamp(0, n_users - 1)
        vector = self.user_id(row) + self.user_features(self.user_x[row])
        if self.config.graph:
            # A bipartite batch graph: each listener's most played songs -> the listener.
            neighbours, weight = self.user_songs[row], self.user_song_weight[row]  # (B, M)
            if in_session is not None:
                neighbours, weight = _outside_session(neighbours, weight, in_session)
            owner, slot = torch.nonzero(neighbours >= 0, as_tuple=True)
            edge_index = torch.stack([neighbours[owner, slot], owner])  # (2, E) song -> row
            weight = weight[owner, slot]
            vector = vector + self.user_conv((table, vector), edge_index, weight)
        return vector * known[:, None]

    # -- the mixture -------------------------------------------------------------------------
    def _parts(self, batch: dict[str, Tensor], table: Tensor | None = None) -> dict[str, Tensor]:
        config = self.config
        songs, skipped = batch["songs"], batch["skipped"]  # (B, L)
        b, d = len(songs), config.dim
        valid = songs >= 0
        table = self.song_table() if table is None else table  # (S, d)
        zeros = table.new_zeros(b, d)

        session = zeros
        if config.session != "none" and songs.shape[1]:
            session = self.session(table[songs.clamp(min=0)], skipped, valid)
        in_session = batch.get("history_in_session")
        user = self.user_vector(batch["user"], table, in_session) if config.user else zeros
        when = hour_basis(batch["hour"], config.time)  # (B, HOUR_BASIS)
        time = self.hour(when[:, 1:]) + self.weekday(batch["weekday"]) if config.time else zeros
        query = session + user + time + self.mix(torch.cat([session, user, time], dim=1))

        fit = None
        if config.catalog:
            fit = self.fit_query(torch.cat([user, session], dim=1))
            fit = (fit.view(b, -1, HOUR_BASIS) * when[:, None, :]).sum(dim=2)  # (B, 9)
        parts = {"query": query, "fit": fit, "table": table}
        if config.experts:
            parts.update(
                self._experts(songs, skipped, valid, batch["user"], query, table, in_session)
            )
        return parts

    def _bias(self) -> Tensor:
        """(S,) per-song logit bias, 0 for songs never played in training: as negatives they
        would only ever be pushed down, and a new release must start from its embedding."""
        return self.song_bias * self.song_known

    def _neural_logits(self, parts: dict[str, Any], rows: Tensor | None = None) -> Tensor:
        """(B, S) neural-expert logits of every song, or (B, N) of the songs `rows` (N,)."""
        table, bias = parts["table"], self._bias()
        fit_table = self.song_fit
        if rows is not None:
            table, bias, fit_table = table[rows], bias[rows], fit_table[rows]
        logits = torch.addmm(bias, parts["query"], table.T)
        if parts["fit"] is not None:
            logits = logits.addmm(parts["fit"], fit_table.T)
        return logits

    def _target_logit(self, parts: dict[str, Any], target: Tensor) -> Tensor:
        """(B,) neural-expert logit of each row's target."""
        logit = (parts["query"] * parts["table"][target]).sum(dim=1) + self._bias()[target]
        if parts["fit"] is not None:
            logit = logit + (parts["fit"] * self.song_fit[target]).sum(dim=1)
        return logit

    @staticmethod
    def _exclude_window(logits: Tensor, songs: Tensor) -> Tensor:
        """Sets the logits of the songs of each row's window to -inf, in place."""
        rows, cols = torch.nonzero(songs >= 0, as_tuple=True)
        logits[rows, songs[rows, cols]] = -math.inf
        return logits

    def _experts(
        self,
        songs: Tensor,
        skipped: Tensor,
        valid: Tensor,
        user: Tensor,
        query: Tensor,
        table: Tensor,
        in_session: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """`in_session` (B, M), in training only: plays of each history candidate in the
        session being predicted, from the target on (`train.Examples.plays_from_target_on`),
        taken off the listener's counts."""
        b = len(songs)
        started = valid[:, -1] if songs.shape[1] else torch.zeros(b, dtype=torch.bool)
        last = songs[:, -1].clamp(min=0) if songs.shape[1] else torch.zeros(b, dtype=torch.long)
        last_skipped = (skipped[:, -1] if songs.shape[1] else started).float() * started

        def candidates(ids: Tensor, allowed: Tensor) -> tuple[Tensor, Tensor]:
            seen = torch.zeros_like(ids, dtype=torch.bool)
            if songs.shape[1]:
                seen = (ids[:, :, None] == songs[:, None, :]).any(dim=2)
            ok = (ids >= 0) & ~seen & allowed[:, None]
            return ids.clamp(min=0), ok

        follow, follow_ok = candidates(self.follow_next[last], started)  # (B, K)
        attr = self.follow_attr[last]  # (B, K, 2)
        attr = torch.cat([attr, attr * last_skipped[:, None, None]], dim=2)
        follow_logit = self.follow_score(attr)[..., 0] + _dot(
            table[follow], self.follow_query(query)
        )
        same, same_ok = candidates(self.artist_songs[self.song_artist[last]], started)  # (B, Ka)
        same_logit = self.artist_popularity * self.song_log_plays[same] + _dot(
            table[same], self.artist_query(query)
        )

        n_users = self.user_x.shape[0]
        known = (user >= 0) & (user < n_users)
        row = user.clamp(0, n_users - 1)
        mine, mine_weight = self.user_songs[row], self.user_song_weight[row]  # (B, M)
        if in_session is not None:
            mine, mine_weight = _outside_session(mine, mine_weight, in_session)
        mine, mine_ok = candidates(mine, known)
        mine_logit = self.history_plays * mine_weight + _dot(table[mine], self.history_query(query))

        oks = (follow_ok, same_ok, mine_ok)
        signals = torch.stack(
            [last_skipped, started.float(), *(ok.float().sum(1).log1p() for ok in oks)], 1
        )
        gate = self.gate(torch.cat([query, signals], dim=1))  # (B, 4)
        available = torch.stack([torch.ones_like(started), *(ok.any(dim=1) for ok in oks)], 1)
        logits = (follow_logit, same_logit, mine_logit)
        ids = (follow, same, mine)
        return {
            "gate": gate.masked_fill(~available, -math.inf).log_softmax(dim=1),
            # Per expert: candidate ids (B, K), which are allowed (B, K), log-probs (B, K).
            "experts": [
                (i, ok, logit.masked_fill(~ok, MASKED).log_softmax(dim=1))
                for i, ok, logit in zip(ids, oks, logits, strict=True)
            ],
        }

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Mean negative log-likelihood of `batch["target"]` (B,) under the mixture.

        With `batch["negatives"]` (N,) songs drawn with probabilities q and
        `batch["negative_log_q"]` (N,) = log(N q), the neural expert's normaliser is the
        sampled-softmax estimate logsumexp(target logit, logits of the negatives - log(N q))
        (the logQ correction of Jean et al. 2015 and Yi et al. 2019) instead of the full sum.
        """
        parts = self._parts(batch)
        target = batch["target"]
        target_logit = self._target_logit(parts, target)
        if "negatives" in batch:
            sampled = self._neural_logits(parts, batch["negatives"]) - batch["negative_log_q"]
            normaliser = torch.cat([target_logit[:, None], sampled], dim=1).logsumexp(dim=1)
        else:
            logits = self._exclude_window(self._neural_logits(parts), batch["songs"])
            normaliser = logits.logsumexp(dim=1)
        log_p = target_logit - normaliser
        if not self.config.experts:
            return -log_p.mean()
        terms = [parts["gate"][:, 0] + log_p]
        for slot, (ids, ok, log_q) in enumerate(parts["experts"], start=1):
            match = (ids == target[:, None]) & ok
            at = match.float().argmax(dim=1, keepdim=True)
            found = torch.where(match.any(dim=1), log_q.gather(1, at)[:, 0], -math.inf)
            terms.append(parts["gate"][:, slot] + found)
        return -torch.stack(terms, dim=1).logsumexp(dim=1).mean()

    def log_probs(self, batch: dict[str, Tensor], table: Tensor | None = None) -> Tensor:
        """(B, S) log-probability of every song being next; -inf for songs in the window.
        `table` is `song_table()` when the caller keeps it (it depends only on the weights)."""
        parts = self._parts(batch, table)
        neural = self._exclude_window(self._neural_logits(parts), batch["songs"]).log_softmax(1)
        if not self.config.experts:
            return neural
        # The experts are sparse: each adds its K candidates into the dense neural term in place
        # (log(p + q) = logaddexp), rather than as (B, S) tensors that are -inf almost everywhere.
        # "amax" with the current values keeps a ruled-out candidate (-inf) from changing a cell.
        mixture = parts["gate"][:, :1] + neural
        for slot, (ids, ok, log_q) in enumerate(parts["experts"], start=1):
            value = parts["gate"][:, slot : slot + 1] + log_q
            added = torch.logaddexp(mixture.gather(1, ids), value).masked_fill(~ok, -math.inf)
            mixture.scatter_reduce_(1, ids, added, reduce="amax")
        return mixture


def _outside_session(songs: Tensor, log_plays: Tensor, in_session: Tensor) -> tuple[Tensor, Tensor]:
    """A listener's top songs (B, M; -1 padded) and log1p of their plays without the plays
    `in_session` (B, M); a song left with none becomes padding."""
    plays = log_plays.expm1() - in_session
    return songs.masked_fill(plays < 0.5, -1), plays.clamp(min=0).log1p()


def _dot(candidates: Tensor, query: Tensor) -> Tensor:
    """(B, K) inner products of candidate vectors (B, K, d) with each row's query (B, d)."""
    return torch.bmm(candidates, query[:, :, None])[..., 0]


def _embedding(rows: int, dim: int) -> nn.Embedding:
    table = nn.Embedding(rows, dim)
    nn.init.normal_(table.weight, std=0.05)
    return table
