"""What the neural models read from the training window, as fixed arrays: the model's inputs.

Built once from the training graph (`DIR/graph/`, written by `nextsong graph`; built in memory
from the training events when the folder has none or it was cut at another time) and stored
inside every saved model, so a loaded model needs nothing but its own folder:

- the catalog: each song's artist and genre, standardised node features of songs, listeners,
  artists and genres, and whether a song was played in training (`song_known`: a song new in the
  test period has no trained id embedding and is placed by its artist, genre and features);
- the graph the encoder propagates over, pruned to the strongest `k` in-edges of each node
  (`catalog_edges`): song -by-> artist and back, song -in-> genre and back, artist -in-> genre
  and back, song -followed_by-> song both ways (the `follow_neighbours` most frequent);
- each listener's most played training songs (`user_songs`, (U, M) with weights): the
  neighbourhood a listener's long-term taste is aggregated from, one batch of listeners at a time;
- each song's most frequent successors in training (`follow_next`, (S, K), with log counts in
  `follow_attr`, (S, K, 2)) and each artist's most played songs (`artist_songs`, (A, Ka)): the
  candidates of the item-to-item experts.

Keeping the strongest neighbours by weight (as PinSage keeps the most visited) bounds the work per
node, so the catalog side is propagated in full at every step without a sampler.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nextsong.errors import DataError

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

    from nextsong.models.base import TrainingData

log = logging.getLogger(__name__)

US_PER_HOUR = 3_600_000_000
US_PER_DAY = 86_400_000_000
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; weekdays count from Monday = 0

# Sizes of the network's parts, shared by the torch network (`network.py`) and its numpy mirror
# (`serving.py`); kept here because this module imports no torch.
ENERGY_CENTRES = 8
ENERGY_WIDTH = 0.1
HOUR_BASIS = 5  # 1, cos h, sin h, cos 2h, sin 2h (h in units of a day)
EXPERTS = ("neural", "follows", "same_artist", "history")
MASKED = -1e9  # a finite "ruled out" logit inside an expert's softmax (no NaN on empty rows)

# Relations the graph encoder propagates over, as (source, relation, destination) in the graph.
CATALOG_RELATIONS: tuple[tuple[str, str, str], ...] = (
    ("song", "by", "artist"),
    ("artist", "rev_by", "song"),
    ("song", "in", "genre"),
    ("genre", "rev_in", "song"),
    ("artist", "in", "genre"),
    ("genre", "rev_in", "artist"),
    ("song", "followed_by", "song"),
    ("song", "rev_followed_by", "song"),
)


@dataclass(frozen=True)
class InputSizes:
    """How much of each input to keep (saved in the model's config)."""

    follow_candidates: int = 50  # successors of a song the follows expert chooses among
    graph_follow_neighbours: int = 5  # song -> song edges per song the encoder propagates over
    user_neighbours: int = 50  # most played songs a listener's taste is aggregated from
    artist_candidates: int = 50  # most played songs of an artist the same-artist expert keeps


@dataclass
class ModelInputs:
    """The arrays of the module docstring; every field is a numpy array."""

    song_artist: np.ndarray  # (S,) int64
    song_genre: np.ndarray  # (S,) int64; G (one past the last genre) for an unknown genre
    song_known: np.ndarray  # (S,) float32, 1 if played in training
    song_energy: np.ndarray  # (S,) float32 in [0, 1]
    song_log_plays: np.ndarray  # (S,) float32, standardised log1p(training plays)
    song_x: np.ndarray  # (S, Fs) float32 standardised
    user_x: np.ndarray  # (U, Fu)
    artist_x: np.ndarray  # (A, Fa)
    genre_x: np.ndarray  # (G, Fg)
    user_songs: np.ndarray  # (U, M) int64, -1 padded
    user_song_weight: np.ndarray  # (U, M) float32, log1p(plays), 0 at padding
    follow_next: np.ndarray  # (S, K) int64, -1 padded, most frequent first
    follow_attr: np.ndarray  # (S, K, 2) float32: log1p transitions, log1p unskipped
    artist_songs: np.ndarray  # (A, Ka) int64, -1 padded
    edges: dict[str, np.ndarray]  # "src__rel__dst" -> (2, E) int64, pruned

    @property
    def n_users(self) -> int:
        return self.user_x.shape[0]

    @property
    def n_songs(self) -> int:
        return self.song_x.shape[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat named arrays (for safetensors); `from_arrays` inverts it."""
        out = {f"inputs.{f.name}": getattr(self, f.name) for f in fields(self) if f.name != "edges"}
        out.update({f"inputs.edges.{key}": value for key, value in self.edges.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ModelInputs:
        prefix = "inputs.edges."
        edges = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        try:
            values = {f.name: arrays[f"inputs.{f.name}"] for f in fields(cls) if f.name != "edges"}
        except KeyError as missing:
            raise DataError(f"saved model inputs lack {missing}: not a neural model") from None
        return cls(**values, edges=edges)


# Song features that only a song's plays (or its time on the catalog) tell.
UNKNOWN_AT_RELEASE = ("log_age_days", "log_plays", "log_listeners", "skip_share")


def _columns(node: str, names: tuple[str, ...]) -> list[int]:
    from nextsong.graph.build import FEATURES

    return [FEATURES[node].index(name) for name in names]


def edge_key(edge_type: tuple[str, str, str]) -> str:
    return "__".join(edge_type)


def build_inputs(data: TrainingData, sizes: InputSizes) -> ModelInputs:
    """The model inputs of the training window of `data` (see the module docstring)."""
    graph = training_graph(data)
    songs = data.songs
    n_artists = data.artists.height
    song_artist = songs["artist_id"].to_numpy().astype(np.int64)

    listened = graph["user", "listened", "song"]
    src, dst = listened.edge_index.numpy()
    weight = listened.edge_weight.numpy()
    user_songs, user_weight = _top_table(
        src, dst, weight, data.n_users, sizes.user_neighbours, weight[:, None]
    )
    follows = graph["song", "followed_by", "song"]
    src, dst = follows.edge_index.numpy()
    attr = follows.edge_attr.numpy()  # (E, 2) log1p transitions, log1p unskipped
    follow_next, follow_attr = _top_table(
        src, dst, attr[:, 0], data.n_songs, sizes.follow_candidates, attr
    )
    play_counts = data.play_counts
    known = play_counts > 0
    song_x = _standardise(graph["song"].x.numpy())
    # A song never played in training looks, by its play figures and age, like a song nobody
    # plays: training would learn exactly that (it is never a training target). New releases
    # get the catalog's mean instead (0 once standardised), so they are placed by artist,
    # genre, energy and duration.
    song_x[np.ix_(~known, _columns("song", UNKNOWN_AT_RELEASE))] = 0.0
    log_plays = _standardise(np.log1p(play_counts.astype(np.float64))[:, None])[:, 0]
    log_plays[~known] = 0.0
    genre_ids = songs["genre_id"].to_numpy().astype(np.int64)
    return ModelInputs(
        song_artist=song_artist,
        # An unknown genre (-1, a world imported without genres) becomes the extra last row.
        song_genre=np.where(genre_ids < 0, graph["genre"].num_nodes, genre_ids),
        song_known=known.astype(np.float32),
        song_energy=songs["energy"].to_numpy().astype(np.float32),
        song_log_plays=log_plays,
        song_x=song_x,
        user_x=_standardise(graph["user"].x.numpy()),
        artist_x=_standardise(graph["artist"].x.numpy()),
        genre_x=_standardise(graph["genre"].x.numpy()),
        user_songs=user_songs,
        user_song_weight=user_weight[:, :, 0],
        follow_next=follow_next,
        follow_attr=follow_attr,
        artist_songs=_members(song_artist, n_artists, play_counts, sizes.artist_candidates),
        edges=_catalog_edges(graph, sizes),
    )


def training_graph(data: TrainingData) -> HeteroData:
    """The heterogeneous graph of the training window: `DIR/graph/` when it was built for the
    same cut-off as `data`, otherwise built in memory from the world's training events."""
    from nextsong.graph.io import GRAPH_DIR, load_graph

    folder = Path(data.world_path)
    if (folder / GRAPH_DIR).is_dir():
        graph, metadata = load_graph(folder)
        same_cut = _cut_off_us(metadata["split"]["train_end"]) == data.train_end_us
        if same_cut and _plays(graph) == data.train.height:
            log.info("using the graph of %s", folder / GRAPH_DIR)
            return graph
        # Another cut-off, or plays that are not exactly the training events (a graph built by
        # an older `nextsong graph`): never learn from it, the validation period could leak in.
        log.warning(
            "the graph in %s does not hold exactly the training events (%d plays, %d events); "
            "building one in memory",
            folder / GRAPH_DIR,
            _plays(graph),
            data.train.height,
        )
    return _graph_in_memory(folder, data.train_end_us)


def _plays(graph: HeteroData) -> int:
    """Plays on the graph's listened edges (their first attribute is log1p of plays)."""
    attr = graph["user", "listened", "song"].edge_attr[:, 0].double()
    return int(attr.expm1().round().sum())


def _graph_in_memory(folder: Path, train_end_us: int) -> HeteroData:
    from dataclasses import asdict

    import polars as pl

    from nextsong.graph.build import graph_parts, to_hetero
    from nextsong.graph.edges import Edges, EdgesConfig, compute_edges
    from nextsong.split import make_split, read_split_config
    from nextsong.world import load_world

    world = load_world(folder)
    split = make_split(world, read_split_config(folder))
    if split.train_end_us != train_end_us:
        raise DataError(
            f"the training data ends at {train_end_us} us but {folder}'s split ends training at "
            f"{split.train_end_us} us: build the model from the world's own split"
        )
    tables = compute_edges(
        pl.from_arrow(world.events).lazy(),
        pl.from_arrow(world.songs),
        pl.from_arrow(world.artists),
        split,
    )
    edges = Edges(
        path=folder,
        manifest={"split": split.to_dict(), "sources": {}, "config": asdict(EdgesConfig())},
        tables={name: frame.to_arrow() for name, frame in tables.items()},
    )
    return to_hetero(graph_parts(world, edges))


def _cut_off_us(iso: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(iso).timestamp() * 1_000_000)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:  # no node of this type (a world imported without genres)
        return x.astype(np.float32)
    sd = x.std(axis=0)
    return ((x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def _members(owner: np.ndarray, n_owners: int, weight: np.ndarray, k: int) -> np.ndarray:
    """(n_owners, <= k) int64: for each owner its (at most k) heaviest members i (owner[i] ==
    row), heaviest first, -1 padded."""
    order, rank = _rank_within(owner, np.asarray(weight, dtype=np.float64))
    keep = rank < k
    table = np.full((n_owners, max(int(rank[keep].max(initial=0)) + 1, 1)), -1, dtype=np.int64)
    table[owner[order][keep], rank[keep]] = order[keep]
    return table


def _rank_within(group: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A permutation sorting by group then weight descending (ties by position), and the 0-based
    rank of each sorted entry within its group."""
    order = np.lexsort((np.arange(len(group)), -weight, group))
    group = group[order]
    start = np.r_[0, np.flatnonzero(group[1:] != group[:-1]) + 1]
    counts = np.diff(np.r_[start, len(group)])
    rank = np.arange(len(group)) - np.repeat(start, counts)
    return order, rank


def _top_table(
    src: np.ndarray, dst: np.ndarray, weight: np.ndarray, n_src: int, k: int, attr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each source node, the destinations of its k heaviest edges as a (n_src, k) table
    padded with -1, heaviest first, and their (n_src, k, F) attributes (0 at padding)."""
    order, rank = _rank_within(src, weight)
    keep = rank < k
    rows, cols = src[order][keep], rank[keep]
    table = np.full((n_src, k), -1, dtype=np.int64)
    attrs = np.zeros((n_src, k, attr.shape[1]), dtype=np.float32)
    table[rows, cols] = dst[order][keep]
    attrs[rows, cols] = attr[order][keep]
    return table, attrs


def _catalog_edges(graph: Any, sizes: InputSizes) -> dict[str, np.ndarray]:
    """The relations of `CATALOG_RELATIONS`; song -> song edges pruned to the
    `graph_follow_neighbours` most frequent per source (and their reverses)."""
    edges = {}
    for edge_type in CATALOG_RELATIONS:
        _, relation, _ = edge_type
        if relation in ("followed_by", "rev_followed_by"):
            continue
        edges[edge_key(edge_type)] = graph[edge_type].edge_index.numpy().astype(np.int64)
    follows = graph["song", "followed_by", "song"]
    index = follows.edge_index.numpy()
    order, rank = _rank_within(index[0], follows.edge_weight.numpy())
    kept = index[:, order[rank < sizes.graph_follow_neighbours]].astype(np.int64)
    edges[edge_key(("song", "followed_by", "song"))] = kept
    edges[edge_key(("song", "rev_followed_by", "song"))] = kept[::-1].copy()
    return edges
