"""The synthetic catalog: genres, artists, songs, and the hidden "often played after" structure.

Genres come in families (rock, metal, electronic...) and carry a base energy and a latent vector;
genres of a family have close vectors, which gives the similarity structure. Artists have a
primary genre and a heavy-tailed (Pareto) popularity. Songs are numbered artist by artist (the
songs of artist a are a contiguous id range), take mostly their artist's genre, and have an energy
near their genre's, a log-normal duration, a release time, a popularity and a latent vector.
Every song has `follow_candidates` songs that often come after it, weighted by the softmax of
latent similarity: this is the planted "A is often followed by B" signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextsong.config import WorldConfig
from nextsong.synth.names import artist_names, song_titles
from nextsong.synth.sampling import RowSampler, SegmentSampler, draw_rows

# (name, family, base energy 0 calm .. 1 energetic)
GENRES: tuple[tuple[str, str, float], ...] = (
    ("classic rock", "rock", 0.62),
    ("indie rock", "rock", 0.58),
    ("alternative", "rock", 0.60),
    ("punk", "rock", 0.82),
    ("hard rock", "rock", 0.78),
    ("heavy metal", "metal", 0.88),
    ("thrash metal", "metal", 0.93),
    ("metalcore", "metal", 0.90),
    ("house", "electronic", 0.74),
    ("techno", "electronic", 0.86),
    ("trance", "electronic", 0.80),
    ("drum and bass", "electronic", 0.88),
    ("dubstep", "electronic", 0.84),
    ("hip hop", "hip hop", 0.66),
    ("trap", "hip hop", 0.70),
    ("boom bap", "hip hop", 0.60),
    ("pop", "pop", 0.64),
    ("dance pop", "pop", 0.74),
    ("k-pop", "pop", 0.72),
    ("r&b", "soul", 0.50),
    ("soul", "soul", 0.46),
    ("funk", "soul", 0.66),
    ("jazz", "jazz", 0.38),
    ("bebop", "jazz", 0.52),
    ("smooth jazz", "jazz", 0.28),
    ("classical", "classical", 0.20),
    ("baroque", "classical", 0.26),
    ("piano", "classical", 0.14),
    ("ambient", "chill", 0.08),
    ("lo-fi", "chill", 0.22),
    ("folk", "folk", 0.34),
    ("country", "folk", 0.48),
    ("bluegrass", "folk", 0.56),
    ("reggae", "latin and world", 0.46),
    ("reggaeton", "latin and world", 0.76),
)
N_GENRES = len(GENRES)
FAMILIES = tuple(dict.fromkeys(family for _, family, _ in GENRES))
YEAR_US = 365 * 86_400 * 1_000_000
_CHUNK = 32_768


@dataclass(frozen=True)
class Catalog:
    """Every array is indexed by id: genre_id, artist_id or song_id."""

    genre_names: list[str]
    genre_family: np.ndarray  # (G,) int, index into FAMILIES
    genre_energy: np.ndarray  # (G,) float64
    genre_latent: np.ndarray  # (G, d) unit vectors
    artist_names: list[str]
    artist_genre: np.ndarray  # (A,) int32
    artist_popularity: np.ndarray  # (A,) float64, Pareto
    artist_first_song: np.ndarray  # (A + 1,) song id offsets: artist a owns [first[a], first[a+1])
    song_titles: list[str]
    song_artist: np.ndarray  # (S,) int32, non-decreasing
    song_genre: np.ndarray  # (S,) int32
    song_energy: np.ndarray  # (S,) float32
    song_duration_ms: np.ndarray  # (S,) int32
    song_release_us: np.ndarray  # (S,) int64, microseconds since the epoch
    song_popularity: np.ndarray  # (S,) float64
    song_latent: np.ndarray  # (S, d) unit vectors
    follow_next: np.ndarray  # (S, M) int32 candidate next songs
    follow_weight: np.ndarray  # (S, M) float64, rows sum to 1, 0 where candidate is the song

    @property
    def n_songs(self) -> int:
        return len(self.song_artist)

    @property
    def n_artists(self) -> int:
        return len(self.artist_genre)


def genre_similarity(genre_latent: np.ndarray) -> np.ndarray:
    """(G, G) cosine similarity of genre vectors: about 0.8 within a family, near 0 across."""
    return genre_latent @ genre_latent.T


def build_catalog(config: WorldConfig, rng: np.random.Generator) -> Catalog:
    behaviour = config.behaviour
    d = behaviour.latent_dim

    # Genres: a latent vector per family, each genre close to its family's.
    family_of = np.array([FAMILIES.index(family) for _, family, _ in GENRES])
    family_latent = _unit(rng.standard_normal((len(FAMILIES), d)))
    genre_latent = _unit(family_latent[family_of] + 0.5 * rng.standard_normal((N_GENRES, d)))
    genre_energy = np.array([energy for _, _, energy in GENRES])
    genre_weight = rng.dirichlet(np.full(N_GENRES, 2.0))  # how common each genre is

    # Artists: genre by the genre weights, Pareto popularity, a latent near their genre.
    n_artists, n_songs = config.n_artists, config.n_songs
    artist_genre = rng.choice(N_GENRES, size=n_artists, p=genre_weight).astype(np.int32)
    artist_popularity = 1.0 + rng.pareto(1.2, n_artists)
    artist_latent = genre_latent[artist_genre] + 0.6 * rng.standard_normal((n_artists, d))

    # Songs per artist: one at least, the rest shared by popularity (popular artists release more).
    extra = rng.multinomial(n_songs - n_artists, _normalise(np.sqrt(artist_popularity)))
    songs_per_artist = 1 + extra
    artist_first_song = np.concatenate([[0], np.cumsum(songs_per_artist)]).astype(np.int64)
    song_artist = np.repeat(np.arange(n_artists, dtype=np.int32), songs_per_artist)

    # Genre: mostly the artist's, else one drawn by similarity to it.
    similarity = genre_similarity(genre_latent)
    other = draw_rows(np.exp(4.0 * similarity), artist_genre[song_artist], rng)
    keep = rng.random(n_songs) < behaviour.own_genre_share
    song_genre = np.where(keep, artist_genre[song_artist], other).astype(np.int32)

    song_energy = np.clip(genre_energy[song_genre] + 0.1 * rng.standard_normal(n_songs), 0, 1)
    duration_s = rng.lognormal(np.log(210.0), 0.28, n_songs).clip(60, 900)
    song_popularity = artist_popularity[song_artist] * rng.lognormal(0.0, 0.8, n_songs)
    song_latent = _unit(
        artist_latent[song_artist]
        + 0.5 * genre_latent[song_genre]
        + 0.7 * rng.standard_normal((n_songs, d))
    )
    song_release_us = _release_times(config, song_artist, artist_first_song, rng)
    follow_next, follow_weight = _follow_candidates(
        config, song_genre, song_popularity, song_latent, similarity, rng
    )
    return Catalog(
        genre_names=[name for name, _, _ in GENRES],
        genre_family=family_of,
        genre_energy=genre_energy,
        genre_latent=genre_latent,
        artist_names=artist_names(n_artists, rng),
        artist_genre=artist_genre,
        artist_popularity=artist_popularity,
        artist_first_song=artist_first_song,
        song_titles=song_titles(n_songs, rng),
        song_artist=song_artist,
        song_genre=song_genre,
        song_energy=song_energy.astype(np.float32),
        song_duration_ms=(duration_s * 1000).astype(np.int32),
        song_release_us=song_release_us,
        song_popularity=song_popularity,
        song_latent=song_latent,
        follow_next=follow_next,
        follow_weight=follow_weight,
    )


def _release_times(
    config: WorldConfig,
    song_artist: np.ndarray,
    artist_first_song: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Back catalog before the period (exponential age); a few songs released during it.

    An artist's first song is always back catalog, so every artist has a playable song at all
    times; new releases are drawn among the other songs.
    """
    n_songs = len(song_artist)
    age = 86_400 * 1_000_000 + rng.exponential(2.0 * YEAR_US, n_songs)
    release = config.start_us - age.astype(np.int64)
    later_songs = np.setdiff1d(np.arange(n_songs), artist_first_song[:-1])
    n_new = min(len(later_songs), round(config.behaviour.new_release_share * n_songs))
    new = rng.choice(later_songs, size=n_new, replace=False)
    release[new] = rng.integers(config.start_us, config.end_us, n_new)
    # Whole seconds, so timestamps survive any round trip exactly.
    return release // 1_000_000 * 1_000_000


def _follow_candidates(
    config: WorldConfig,
    song_genre: np.ndarray,
    song_popularity: np.ndarray,
    song_latent: np.ndarray,
    similarity: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """For each song, M candidate next songs and their weights (rows sum to 1).

    Candidates are drawn by genre (the song's own, or one similar to it) and then by popularity
    within that genre; their weights are a softmax of latent similarity at a low temperature, so
    a few candidates dominate: the song-to-song habit a model can learn from co-occurrence.
    """
    behaviour = config.behaviour
    n_songs, m = len(song_genre), behaviour.follow_candidates
    by_genre = SegmentSampler.by_key(song_genre, N_GENRES, np.sqrt(song_popularity))
    genre_sampler = RowSampler(np.exp(6.0 * similarity))  # mostly the same family
    candidates = np.empty((n_songs, m), dtype=np.int32)
    weight = np.empty((n_songs, m), dtype=np.float64)
    # In chunks of songs: the (chunk, M, d) latent gather is the memory peak.
    for lo in range(0, n_songs, _CHUNK):
        songs = np.arange(lo, min(lo + _CHUNK, n_songs))
        target_genre = genre_sampler.draw(np.repeat(song_genre[songs], m), rng)
        target_genre = target_genre.reshape(len(songs), m)
        chosen = by_genre.draw(target_genre, rng)
        empty = song_genre[chosen] != target_genre  # a genre without songs
        chosen = np.where(empty, rng.integers(0, n_songs, chosen.shape), chosen)

        affinity = np.einsum("sd,smd->sm", song_latent[songs], song_latent[chosen])
        logits = affinity / behaviour.follow_temperature
        logits[chosen == songs[:, None]] = -np.inf  # never the song itself
        chunk_weight = np.exp(logits - logits.max(axis=1, keepdims=True))
        candidates[songs] = chosen
        weight[songs] = chunk_weight / chunk_weight.sum(axis=1, keepdims=True)
    return candidates, weight


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / x.sum()
