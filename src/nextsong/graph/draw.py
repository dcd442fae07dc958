"""A picture of one listener's neighbourhood in the graph: the listener, songs, artists, genres.

Nodes lie on rings around the listener: their most played songs of the training window (inner
ring), the artists of those songs, then the genres (outer ring). Songs are ordered by genre and
artist, each artist sits at the mean angle of its songs and each genre at the mean angle of its
artists, so edges stay short and the picture reads like a tree. Line width follows plays; thin
dashed lines join two shown songs when one followed the other in training sessions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nextsong import schema
from nextsong.errors import ConfigError
from nextsong.store import read_table

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

log = logging.getLogger(__name__)

RINGS = {"song": 1.6, "artist": 2.5, "genre": 3.5}
COLOURS = {"user": "#222222", "song": "#1f77b4", "artist": "#ff7f0e", "genre": "#2ca02c"}


def draw_user(
    graph: HeteroData, folder: Path | str, user: int, out: Path, max_songs: int = 24
) -> Path:
    """Draws listener `user`'s neighbourhood into the PNG `out`; names come from `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_users = graph["user"].num_nodes
    if not 0 <= user < n_users:
        raise ConfigError(f"--draw-user {user}: valid listeners are 0..{n_users - 1}")
    songs, plays = _top_songs(graph, user, max_songs)
    names = _names(Path(folder))
    song_artist = _targets(graph, ("song", "by", "artist"), graph["song"].num_nodes)
    song_genre = _targets(graph, ("song", "in", "genre"), graph["song"].num_nodes)

    artist_genre = _primary_genres(graph)
    # Order songs by their artist's genre, then artist: an artist's songs are neighbours.
    order = np.lexsort((songs, song_artist[songs], artist_genre[song_artist[songs]]))
    songs, plays = songs[order], plays[order]
    song_angle = 2 * np.pi * np.arange(len(songs)) / len(songs)
    artists, artist_angle = _mean_angles(song_artist[songs], song_angle)
    genres, genre_angle = _mean_angles(song_genre[songs], song_angle)

    figure, axes = plt.subplots(figsize=(11, 11))
    for song, angle, count in zip(songs, song_angle, plays, strict=True):
        song_xy = _point("song", angle)
        axes.plot(
            [0, song_xy[0]], [0, song_xy[1]], color="#bbbbbb", lw=0.5 + np.log1p(count), zorder=1
        )
        artist_xy = _point("artist", artist_angle[artists == song_artist[song]][0])
        axes.plot(*zip(song_xy, artist_xy, strict=True), color=COLOURS["artist"], lw=0.6)
        genre_xy = _point("genre", genre_angle[genres == song_genre[song]][0])
        axes.plot(*zip(song_xy, genre_xy, strict=True), color=COLOURS["genre"], lw=0.3, alpha=0.4)
    _draw_nodes(axes, "song", song_angle, [names["song"][s] for s in songs], 7, inward=True)
    _draw_nodes(axes, "artist", artist_angle, [names["artist"][a] for a in artists], 7)
    _draw_nodes(axes, "genre", genre_angle, [names["genre"][g] for g in genres], 9)
    axes.scatter([0], [0], s=500, color=COLOURS["user"], zorder=3)
    axes.annotate(
        f"listener {user}",
        (0, 0),
        xytext=(0, -22),
        textcoords="offset points",
        ha="center",
        fontsize=10,
    )
    total = int((graph["user", "listened", "song"].edge_index[0] == user).sum())
    axes.set_title(
        f"listener {user}: {len(songs)} of {total} songs played in training (most played), "
        f"{len(artists)} artists, {len(genres)} genres"
    )
    for node, colour in COLOURS.items():
        axes.scatter([], [], color=colour, label=node)
    axes.legend(loc="lower right", frameon=False)
    axes.set_xlim(-4.6, 4.6)
    axes.set_ylim(-4.6, 4.6)
    axes.set_aspect("equal")
    axes.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(figure)
    log.info("drew listener %d into %s", user, out)
    return out


def _top_songs(graph: HeteroData, user: int, max_songs: int) -> tuple[np.ndarray, np.ndarray]:
    """The listener's `max_songs` most played songs (ties: lower song_id) and their plays."""
    store = graph["user", "listened", "song"]
    mine = (store.edge_index[0] == user).numpy()
    if not mine.any():
        raise ConfigError(
            f"--draw-user {user}: this listener played nothing in the training window"
        )
    songs = store.edge_index[1].numpy()[mine]
    plays = np.expm1(store.edge_attr[:, 0].numpy()[mine]).round()  # log_plays -> plays
    top = np.lexsort((songs, -plays))[:max_songs]
    return songs[top], plays[top]


def _targets(graph: HeteroData, edge_type: tuple[str, str, str], size: int) -> np.ndarray:
    """For a relation where every source has one target (song -by-> artist): target per source."""
    index = graph[edge_type].edge_index.numpy()
    target = np.full(size, -1, dtype=np.int64)
    target[index[0]] = index[1]
    return target


def _primary_genres(graph: HeteroData) -> np.ndarray:
    """Each artist's own genre: its artist -in-> genre edge marked primary."""
    store = graph["artist", "in", "genre"]
    primary = (store.edge_attr[:, 1] > 0).numpy()
    index = store.edge_index.numpy()[:, primary]
    genre = np.full(graph["artist"].num_nodes, -1, dtype=np.int64)
    genre[index[0]] = index[1]
    return genre


def _mean_angles(groups: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct group and the circular mean of its members' angles."""
    unique = np.unique(groups)
    means = np.array(
        [
            np.arctan2(np.sin(angles[groups == g]).mean(), np.cos(angles[groups == g]).mean())
            for g in unique
        ]
    )
    return unique, means


def _point(ring: str, angle: float) -> tuple[float, float]:
    radius = RINGS[ring]
    return radius * np.cos(angle), radius * np.sin(angle)


def _draw_nodes(
    axes, ring: str, angles: np.ndarray, labels: list[str], size: int, inward: bool = False
) -> None:
    """Nodes on a ring, each labelled along its radius (outside the ring, or inside)."""
    xs, ys = zip(*(_point(ring, a) for a in angles), strict=True)
    axes.scatter(xs, ys, s=12 * size, color=COLOURS[ring], zorder=3)
    for x, y, angle, label in zip(xs, ys, angles, labels, strict=True):
        degrees = np.degrees(angle) % 360
        flip = 90 < degrees < 270
        outward_left = flip == inward  # text runs away from the centre, or towards it
        scale = 0.95 if inward else 1.05
        axes.text(
            x * scale,
            y * scale,
            label[:18] if inward else label[:24],
            fontsize=size,
            rotation=degrees + 180 if flip else degrees,
            rotation_mode="anchor",
            ha="left" if outward_left else "right",
            va="center",
            zorder=4,
        )


def _names(folder: Path) -> dict[str, list[str]]:
    """Titles and names by id, read from the world's catalog tables."""
    tables = {
        "song": ("songs", schema.SONGS, "title"),
        "artist": ("artists", schema.ARTISTS, "name"),
        "genre": ("genres", schema.GENRES, "name"),
    }
    return {
        node: schema.check_table(read_table(schema.table_path(folder, name)), table_schema, name)
        .column(column)
        .to_pylist()
        for node, (name, table_schema, column) in tables.items()
    }
