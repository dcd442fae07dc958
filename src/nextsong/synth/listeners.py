"""Synthetic listeners and their hidden state: kind, taste, favourites, daily rhythm, energy.

A listener is casual, regular or power (`config.KINDS`). Taste concentrates on a few genres, the
first drawn by how common genres are, the others by similarity to it (a rock fan's second genre is
likely punk or alternative), with a small floor on every genre. Favourite artists are drawn by
taste (a genre) then popularity (an artist of it), without replacement. The daily rhythm is one
or two peaks of activity (morning, lunch, evening, night). The preferred energy follows the hour,
base + amplitude * cos(2 pi (h - peak) / 24), lowest about twelve hours before the evening peak,
so mornings are calmer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextsong.config import WorldConfig
from nextsong.synth.catalog import N_GENRES, Catalog, genre_similarity
from nextsong.synth.sampling import SegmentSampler, draw_columns

# Typical activity peaks (hour of day, UTC) and how likely each is as a listener's main peak.
RHYTHM_PEAKS = np.array([8.0, 12.5, 18.5, 22.5])
RHYTHM_PEAK_SHARE = np.array([0.25, 0.15, 0.40, 0.20])
_FAVOURITE_ROUNDS = 1_000


@dataclass(frozen=True)
class Listeners:
    """Hidden state of a contiguous range of listeners; arrays are indexed by local position."""

    user_ids: np.ndarray  # (U,) int32, global ids
    kind: np.ndarray  # (U,) int8, index into config.kinds
    activity: np.ndarray  # (U,) float64, multiplies the kind's sessions per week
    taste: np.ndarray  # (U, G) float64, rows sum to 1
    # The same taste as a mixture: floor/G on every genre + (1 - floor) * weights on chosen.
    taste_genres: np.ndarray  # (U, k) int64, the genres the taste concentrates on
    taste_weights: np.ndarray  # (U, k) float64, rows sum to 1
    favourite_offsets: np.ndarray  # (U + 1,) int64 into favourite_artists
    favourite_artists: np.ndarray  # (F,) int32, sorted within each listener
    rhythm: np.ndarray  # (U, 24) float64, rows sum to 1: share of sessions starting each hour
    energy_base: np.ndarray  # (U,)
    energy_amplitude: np.ndarray  # (U,)
    energy_peak_hour: np.ndarray  # (U,)

    def __len__(self) -> int:
        return len(self.user_ids)


def preferred_energy(
    base: np.ndarray, amplitude: np.ndarray, peak_hour: np.ndarray, hour: np.ndarray
) -> np.ndarray:
    """The energy a listener prefers at an hour of the day, before the session's mood."""
    return base + amplitude * np.cos(2 * np.pi * (hour - peak_hour) / 24.0)


def build_listeners(
    config: WorldConfig, catalog: Catalog, user_ids: range, rng: np.random.Generator
) -> Listeners:
    behaviour = config.behaviour
    n = len(user_ids)
    shares = np.array([kind.share for kind in config.kinds])
    kind = rng.choice(len(shares), size=n, p=shares).astype(np.int8)
    activity = rng.lognormal(-0.125, 0.5, n)

    # Taste: genres drawn one after another, each favouring genres similar to the first.
    genre_mass = np.bincount(catalog.song_genre, catalog.song_popularity, minlength=N_GENRES)
    log_prior = np.log(genre_mass + 1e-9) * 0.5
    similarity = genre_similarity(catalog.genre_latent)
    chosen = np.empty((n, behaviour.taste_genres), dtype=np.int64)
    logits = log_prior + rng.gumbel(size=(n, N_GENRES))
    chosen[:, 0] = logits.argmax(axis=1)
    for pick in range(1, behaviour.taste_genres):
        logits = log_prior + 3.0 * similarity[chosen[:, 0]] + rng.gumbel(size=(n, N_GENRES))
        logits[np.arange(n)[:, None], chosen[:, :pick]] = -np.inf
        chosen[:, pick] = logits.argmax(axis=1)
    weights = rng.dirichlet(np.linspace(3.0, 1.0, behaviour.taste_genres), size=n)
    taste = np.full((n, N_GENRES), behaviour.taste_floor / N_GENRES)
    np.add.at(taste, (np.arange(n)[:, None], chosen), (1 - behaviour.taste_floor) * weights)

    offsets, favourites = _favourites(config, catalog, chosen, weights, rng)

    # Rhythm: a main peak and, for most listeners, a second one; von Mises bumps over 24 hours.
    hours = np.arange(24)
    main = rng.choice(len(RHYTHM_PEAKS), size=n, p=RHYTHM_PEAK_SHARE)
    second = rng.choice(len(RHYTHM_PEAKS), size=n, p=RHYTHM_PEAK_SHARE)
    peaks = np.stack([RHYTHM_PEAKS[main], RHYTHM_PEAKS[second]], axis=1)
    peaks += rng.normal(0.0, 1.0, peaks.shape)
    peak_weight = np.stack([np.ones(n), rng.uniform(0.0, 0.8, n)], axis=1)
    bumps = np.exp(2.5 * np.cos(2 * np.pi * (hours[None, None, :] - peaks[:, :, None]) / 24))
    rhythm = 0.02 * bumps.max() / 24 + (peak_weight[:, :, None] * bumps).sum(axis=1)
    rhythm /= rhythm.sum(axis=1, keepdims=True)

    return Listeners(
        user_ids=np.asarray(user_ids, dtype=np.int32),
        kind=kind,
        activity=activity,
        taste=taste,
        taste_genres=chosen,
        taste_weights=weights,
        favourite_offsets=offsets,
        favourite_artists=favourites,
        rhythm=rhythm,
        energy_base=rng.normal(behaviour.energy_base_mean, behaviour.energy_base_sd, n),
        energy_amplitude=np.abs(
            rng.normal(behaviour.energy_amplitude_mean, behaviour.energy_amplitude_sd, n)
        ),
        energy_peak_hour=rng.normal(
            behaviour.energy_peak_hour_mean, behaviour.energy_peak_hour_sd, n
        ),
    )


def draw_taste_genre(
    taste_genres: np.ndarray,
    taste_weights: np.ndarray,
    floor: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A genre per row from tastes given as the mixture they are built from: with probability
    `floor` any genre uniformly, else one of the row's chosen genres by its weight."""
    chosen = draw_columns(taste_weights, rng)
    genre = np.take_along_axis(taste_genres, chosen[:, None], axis=1)[:, 0]
    uniform = rng.random(len(genre)) < floor
    return np.where(uniform, rng.integers(0, N_GENRES, len(genre)), genre)


def _favourites(
    config: WorldConfig,
    catalog: Catalog,
    taste_genres: np.ndarray,
    taste_weights: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Favourite artists: a genre from the listener's taste, then an artist of that genre by
    popularity, repeated without replacement (a repeat is drawn again) until the listener has
    their number of favourites."""
    low, high = config.behaviour.favourite_artists
    n, n_artists = len(taste_genres), catalog.n_artists
    count = np.minimum(rng.integers(low, high + 1, n), n_artists)
    by_genre = SegmentSampler.by_key(catalog.artist_genre, N_GENRES, catalog.artist_popularity)
    owners, artists = [], []
    pending = np.arange(n)
    for _ in range(_FAVOURITE_ROUNDS):
        # Twice the wanted number per round, in draw order; the first distinct ones are kept.
        owner = np.repeat(pending, 2 * high)
        genre = draw_taste_genre(
            taste_genres[owner], taste_weights[owner], config.behaviour.taste_floor, rng
        )
        artist = by_genre.draw(genre, rng)
        valid = catalog.artist_genre[artist] == genre  # a genre without artists draws again
        owners.append(owner[valid])
        artists.append(artist[valid])
        owner, artist = np.concatenate(owners), np.concatenate(artists)
        key = owner.astype(np.int64) * n_artists + artist
        _, first = np.unique(key, return_index=True)
        first = np.sort(first)  # distinct (listener, artist) pairs in draw order
        have = np.bincount(owner[first], minlength=n)
        pending = np.flatnonzero(have < count)
        if not len(pending):
            break
    else:
        raise RuntimeError(f"{len(pending)} listeners could not get their favourite artists")
    order = first[np.argsort(owner[first], kind="stable")]
    rank = np.arange(len(order)) - np.repeat(np.cumsum(have) - have, have)
    kept = order[rank < count[owner[order]]]
    kept = kept[np.lexsort((artist[kept], owner[kept]))]  # sorted within each listener
    offsets = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
    return offsets, artist[kept].astype(np.int32)
