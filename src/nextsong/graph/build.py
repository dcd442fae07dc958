"""The heterogeneous music graph: listeners, songs, artists and genres, from the training window.

Node types and their rows: `user`, `song`, `artist`, `genre`; row i of a node type is the entity
with id i (the world's ids are dense, checked by `load_world`), so `song_index == song_id` here and
no other mapping exists. Every user, song, artist and genre of the world is a node, including
listeners with no training play and songs released after the training window (they have catalog
edges and no plays: a model can still place them by artist and genre).

Relations (source, relation, destination), each with `edge_index` (2, E) int64, `edge_weight`
(E,) float32 and, where it has attributes, `edge_attr` (E, k) float32:

- user -listened-> song: weight log1p(plays); attributes `RELATION_ATTRS` (log1p of plays,
  completed plays, skips; log1p of days from the last play to the end of the training window);
- song -by-> artist, song -in-> genre: weight 1;
- artist -in-> genre: weight = the share of the artist's songs in the genre; attributes that
  share and whether the genre is the artist's own;
- song -followed_by-> song: weight log1p(transitions); attributes log1p of transitions and of
  transitions with neither song skipped;
- the reverse of each, named `rev_<relation>` with the same weights and attributes.

Node features (`x`, (N, F) float32, names in `FEATURES`) are what a real service knows at the end
of the training window: nothing from `truth/`, no event of validation or test. Ages and recency
are measured at the training cut-off (`train_end`) and never negative: a song released later
counts as brand new (age 0), the way it looks when it reaches listeners.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from nextsong.errors import ConfigError
from nextsong.graph.edges import Edges, load_edges
from nextsong.world import World, load_world

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

log = logging.getLogger(__name__)

NODE_TYPES = ("user", "song", "artist", "genre")
US_PER_DAY = 86_400 * 1_000_000
HOURS = 24

FEATURES: dict[str, tuple[str, ...]] = {
    "user": (
        "log_plays",
        "log_sessions",
        "log_songs",
        "skip_share",
        "log_account_days",
        *(f"hour_{hour:02d}_share" for hour in range(HOURS)),
    ),
    "song": (
        "energy",
        "duration_min",
        "log_age_days",
        "log_plays",
        "log_listeners",
        "skip_share",
    ),
    "artist": ("log_plays", "log_listeners", "log_songs"),
    "genre": ("log_plays", "log_songs", "log_artists"),
}

# Forward relations; `add_reverses` adds ('dst', 'rev_<relation>', 'src') for each.
RELATIONS: tuple[tuple[str, str, str], ...] = (
    ("user", "listened", "song"),
    ("song", "by", "artist"),
    ("song", "in", "genre"),
    ("artist", "in", "genre"),
    ("song", "followed_by", "song"),
)
RELATION_ATTRS: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("user", "listened", "song"): (
        "log_plays",
        "log_completed",
        "log_skips",
        "log_days_since_last_play",
    ),
    ("song", "by", "artist"): (),
    ("song", "in", "genre"): (),
    ("artist", "in", "genre"): ("song_share", "primary"),
    ("song", "followed_by", "song"): ("log_transitions", "log_transitions_unskipped"),
}


@dataclass(frozen=True)
class GraphConfig:
    """`min_transitions`: song -followed_by-> song edges seen fewer times in training are left
    out (1 keeps every observed transition)."""

    min_transitions: int = 1

    def __post_init__(self) -> None:
        value = self.min_transitions
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"min_transitions must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class Relation:
    """One relation's arrays: edge_index (2, E) int64, weight (E,), attr (E, k) float32."""

    edge_type: tuple[str, str, str]
    edge_index: np.ndarray
    weight: np.ndarray
    attr: np.ndarray | None


@dataclass(frozen=True)
class GraphParts:
    """Everything the graph holds, as numpy arrays, before it becomes a HeteroData."""

    features: dict[str, np.ndarray]  # node type -> (N, F) float32
    relations: list[Relation]
    metadata: dict[str, Any]


def graph_parts(world: World, edges: Edges, config: GraphConfig | None = None) -> GraphParts:
    """Node features and forward relations of the training-window graph, as numpy arrays."""
    config = config or GraphConfig()
    tables = {name: pl.from_arrow(table) for name, table in edges.tables.items()}
    train_end = datetime.fromisoformat(edges.split["train_end"])
    train_end_us = round(train_end.timestamp() * 1_000_000)
    counts = {
        "user": world.users.num_rows,
        "song": world.songs.num_rows,
        "artist": world.artists.num_rows,
        "genre": world.genres.num_rows,
    }
    features = {
        "user": _user_features(world, tables, counts["user"], train_end_us),
        "song": _song_features(world, tables, counts["song"], train_end_us),
        "artist": _artist_features(tables, counts["artist"]),
        "genre": _genre_features(world, tables, counts["genre"]),
    }
    relations = _relations(tables, train_end_us, config)
    metadata = {
        # Lists, not mappings: the order of node types and relations is part of the graph.
        "node_types": [
            {"node_type": node, "count": counts[node], "features": list(FEATURES[node])}
            for node in NODE_TYPES
        ],
        "relations": [
            {
                "edge_type": list(relation.edge_type),
                "count": int(relation.edge_index.shape[1]),
                "edge_attr": list(RELATION_ATTRS[relation.edge_type]),
            }
            for relation in relations
        ],
        "reverses": "rev_<relation>, rebuilt from the forward relations (add_reverses)",
        "config": dataclasses.asdict(config),
        "edges_config": edges.manifest["config"],
        "split": edges.split,
        "sources": edges.manifest["sources"],
    }
    return GraphParts(features=features, relations=relations, metadata=metadata)


def to_hetero(parts: GraphParts) -> HeteroData:
    """The PyG HeteroData of `parts`, reverses included."""
    import torch
    from torch_geometric.data import HeteroData

    graph = HeteroData()
    for node, x in parts.features.items():
        graph[node].x = torch.from_numpy(x)  # (N, F)
        graph[node].num_nodes = x.shape[0]
    for relation in parts.relations:
        store = graph[relation.edge_type]
        store.edge_index = torch.from_numpy(relation.edge_index)  # (2, E)
        store.edge_weight = torch.from_numpy(relation.weight)  # (E,)
        if relation.attr is not None:
            store.edge_attr = torch.from_numpy(relation.attr)  # (E, k)
    return add_reverses(graph)


def add_reverses(graph: HeteroData) -> HeteroData:
    """Adds ('dst', 'rev_<rel>', 'src') for every forward relation, sharing its weight and
    attribute tensors (a song -followed_by-> song edge A->B becomes B -rev_followed_by-> A)."""
    for src, relation, dst in RELATIONS:
        store = graph[src, relation, dst]
        reverse = graph[dst, f"rev_{relation}", src]
        reverse.edge_index = store.edge_index.flip(0).contiguous()
        reverse.edge_weight = store.edge_weight
        if "edge_attr" in store:
            reverse.edge_attr = store.edge_attr
    return graph


def build_graph(
    folder: Path | str, config: GraphConfig | None = None
) -> tuple[HeteroData, dict[str, Any]]:
    """Loads the world and its edges from `folder` and returns the graph and its metadata."""
    world = load_world(folder)
    parts = graph_parts(world, load_edges(folder, world), config)
    return to_hetero(parts), parts.metadata


def graph_summary(graph: HeteroData) -> dict[str, Any]:
    """Nodes, features and isolated nodes per type; edges and mean degrees per relation."""
    connected = {node: np.zeros(graph[node].num_nodes, dtype=bool) for node in graph.node_types}
    relations = []
    for edge_type in graph.edge_types:
        src, _, dst = edge_type
        index = graph[edge_type].edge_index.numpy()
        connected[src][index[0]] = True
        connected[dst][index[1]] = True
        count = index.shape[1]
        relations.append(
            {
                "edge_type": list(edge_type),
                "edges": count,
                "mean_out_degree": count / max(graph[src].num_nodes, 1),
                "mean_in_degree": count / max(graph[dst].num_nodes, 1),
            }
        )
    nodes = [
        {
            "node_type": node,
            "nodes": graph[node].num_nodes,
            "features": graph[node].x.shape[1],
            "isolated": int((~connected[node]).sum()),
        }
        for node in graph.node_types
    ]
    return {"nodes": nodes, "relations": relations}


# -- node features -----------------------------------------------------------------------------
def _user_features(
    world: World, tables: dict[str, pl.DataFrame], n_users: int, train_end_us: int
) -> np.ndarray:
    activity = _dense(
        tables["user_song"],
        "user_id",
        n_users,
        plays=pl.col("plays").sum(),
        skips=pl.col("skips").sum(),
        songs=pl.len(),
    )
    sessions = _dense(tables["user_hour"], "user_id", n_users, sessions=pl.col("sessions").sum())
    hours = tables["user_hour"]
    hour_plays = np.zeros((n_users, HOURS))  # (U, 24)
    hour_plays[hours["user_id"].to_numpy(), hours["hour"].to_numpy()] = hours["plays"].to_numpy()
    signup_us = _us(world.users.column("signup_ts"))
    account_days = np.maximum(train_end_us - signup_us, 0) / US_PER_DAY
    plays = activity["plays"]
    columns = [
        np.log1p(plays),
        np.log1p(sessions["sessions"]),
        np.log1p(activity["songs"]),
        _share(activity["skips"], plays),
        np.log1p(account_days),
    ]
    return _stack([*columns, *_share(hour_plays, plays[:, None]).T])


def _song_features(
    world: World, tables: dict[str, pl.DataFrame], n_songs: int, train_end_us: int
) -> np.ndarray:
    played = _dense(
        tables["user_song"],
        "song_id",
        n_songs,
        plays=pl.col("plays").sum(),
        skips=pl.col("skips").sum(),
        listeners=pl.len(),
    )
    songs = world.songs
    age_days = np.maximum(train_end_us - _us(songs.column("release_ts")), 0) / US_PER_DAY
    return _stack(
        [
            songs.column("energy").to_numpy(),
            songs.column("duration_ms").to_numpy() / 60_000,
            np.log1p(age_days),
            np.log1p(played["plays"]),
            np.log1p(played["listeners"]),
            _share(played["skips"], played["plays"]),
        ]
    )


def _artist_features(tables: dict[str, pl.DataFrame], n_artists: int) -> np.ndarray:
    plays = tables["user_song"].join(tables["song_artist"], on="song_id")
    played = _dense(
        plays,
        "artist_id",
        n_artists,
        plays=pl.col("plays").sum(),
        listeners=pl.col("user_id").n_unique(),
    )
    songs = _dense(tables["song_artist"], "artist_id", n_artists, songs=pl.len())
    return _stack(
        [np.log1p(played["plays"]), np.log1p(played["listeners"]), np.log1p(songs["songs"])]
    )


def _genre_features(world: World, tables: dict[str, pl.DataFrame], n_genres: int) -> np.ndarray:
    plays = _dense(tables["user_genre"], "genre_id", n_genres, plays=pl.col("plays").sum())
    songs = _dense(tables["song_genre"], "genre_id", n_genres, songs=pl.len())
    known = pl.from_arrow(world.artists).filter(pl.col("genre_id") >= 0)
    artists = _dense(known, "genre_id", n_genres, artists=pl.len())
    return _stack(
        [np.log1p(plays["plays"]), np.log1p(songs["songs"]), np.log1p(artists["artists"])]
    )


# -- relations ---------------------------------------------------------------------------------
def _relations(
    tables: dict[str, pl.DataFrame], train_end_us: int, config: GraphConfig
) -> list[Relation]:
    user_song = _numpy(tables["user_song"])
    days_since = np.maximum(train_end_us - user_song["last_play_ts"], 0) / US_PER_DAY
    listened = Relation(
        ("user", "listened", "song"),
        _index(user_song["user_id"], user_song["song_id"]),
        _f32(np.log1p(user_song["plays"])),
        _stack(
            [
                np.log1p(user_song["plays"]),
                np.log1p(user_song["completed"]),
                np.log1p(user_song["skips"]),
                np.log1p(days_since),
            ]
        ),
    )
    song_artist, song_genre = _numpy(tables["song_artist"]), _numpy(tables["song_genre"])
    by = _unweighted(("song", "by", "artist"), song_artist["song_id"], song_artist["artist_id"])
    song_in = _unweighted(("song", "in", "genre"), song_genre["song_id"], song_genre["genre_id"])
    artist_genre = _numpy(
        tables["artist_genre"].with_columns(
            (pl.col("songs") / pl.col("songs").sum().over("artist_id")).alias("share")
        )
    )
    artist_in = Relation(
        ("artist", "in", "genre"),
        _index(artist_genre["artist_id"], artist_genre["genre_id"]),
        _f32(artist_genre["share"]),
        _stack([artist_genre["share"], artist_genre["primary"]]),
    )
    song_song = _numpy(tables["song_song"].filter(pl.col("transitions") >= config.min_transitions))
    followed = Relation(
        ("song", "followed_by", "song"),
        _index(song_song["song_id"], song_song["next_song_id"]),
        _f32(np.log1p(song_song["transitions"])),
        _stack([np.log1p(song_song["transitions"]), np.log1p(song_song["transitions_unskipped"])]),
    )
    return [listened, by, song_in, artist_in, followed]


# -- helpers -----------------------------------------------------------------------------------
def _dense(frame: pl.DataFrame, key: str, size: int, **aggs: pl.Expr) -> dict[str, np.ndarray]:
    """Aggregates of `frame` per `key` as float64 arrays of length `size` (0 for absent keys)."""
    grouped = frame.group_by(key).agg(**aggs)
    rows = grouped[key].to_numpy()
    dense = {}
    for name in aggs:
        values = np.zeros(size)
        values[rows] = grouped[name].to_numpy()
        dense[name] = values
    return dense


def _numpy(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """A frame's columns as numpy arrays; timestamps as int64 microseconds since the epoch."""
    return {
        name: frame[name].dt.epoch("us").to_numpy()
        if dtype == pl.Datetime
        else frame[name].to_numpy()
        for name, dtype in frame.schema.items()
    }


def _us(column: pa.ChunkedArray) -> np.ndarray:
    return column.cast(pa.int64()).to_numpy()


def _share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """part / whole, 0 where whole is 0."""
    part = np.asarray(part, dtype=np.float64)
    whole = np.broadcast_to(np.asarray(whole, dtype=np.float64), part.shape)
    return np.divide(part, whole, out=np.zeros_like(part), where=whole > 0)


def _index(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return np.stack([src.astype(np.int64), dst.astype(np.int64)])  # (2, E)


def _unweighted(edge_type: tuple[str, str, str], src: np.ndarray, dst: np.ndarray) -> Relation:
    return Relation(edge_type, _index(src, dst), np.ones(len(src), dtype=np.float32), None)


def _stack(columns: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.stack(columns, axis=1), dtype=np.float32)


def _f32(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32)
