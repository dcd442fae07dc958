"""Typed, validated settings: world presets, listener kinds and the generator's behaviour.

A `WorldConfig` is built from a preset name (tiny, small, default, large), validated when built,
and saved into the world it produced (`truth/params.json` and `manifest.json`), so the oracle and
every later step read the parameters of the world they look at, not the code's current defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nextsong.errors import ConfigError

# Mixture components of the next-song draw, in the order of every weight vector below.
COMPONENTS = ("same_artist", "follows", "taste", "favourites", "explore")


@dataclass(frozen=True)
class ListenerKind:
    """One of the three kinds of listener and the behaviour that sets them apart.

    `mixture` weighs, in `COMPONENTS` order, how the next song is drawn: another song of the
    current artist; a song that often follows the current one; the listener's genre taste weighted
    by popularity and by how the song's energy fits the hour; a favourite artist; anything at all.
    """

    name: str
    share: float  # fraction of all listeners
    sessions_per_week: float  # mean, before each listener's own activity factor
    mean_session_length: float  # songs; sessions end with probability 1/length after each song
    popularity_bias: float  # exponent on song popularity in taste and favourite draws
    skip_tolerance: float  # lowers the skip logit: tolerant listeners skip less
    mixture: tuple[float, float, float, float, float]

    @property
    def exploration(self) -> float:
        return self.mixture[COMPONENTS.index("explore")]


KINDS: tuple[ListenerKind, ...] = (
    ListenerKind("casual", 0.50, 2.0, 6.0, 1.0, 0.0, (0.15, 0.40, 0.25, 0.16, 0.04)),
    ListenerKind("regular", 0.35, 6.0, 12.0, 0.8, 0.3, (0.12, 0.40, 0.28, 0.13, 0.07)),
    ListenerKind("power", 0.15, 14.0, 25.0, 0.5, 0.6, (0.10, 0.36, 0.30, 0.12, 0.12)),
)


@dataclass(frozen=True)
class Behaviour:
    """Constants of the listening model shared by every listener (documented in the README)."""

    # The first song of a session: taste, favourites, explore (the other components need a song).
    first_song_mixture: tuple[float, float, float] = (0.6, 0.3, 0.1)
    # After a skip the session changes direction: these components are damped by this factor...
    skip_damped: tuple[str, ...] = ("same_artist", "follows")
    skip_damping: float = 0.3
    # ...and the session is this many times more likely to end.
    skip_end_factor: float = 2.5
    max_session_length: int = 200
    # Energy fit of a song to the moment: floor + (1 - floor) * exp(-(e - target)^2 / 2 width^2).
    energy_fit_width: float = 0.15
    energy_fit_floor: float = 0.15
    # Listener energy by hour: base + amplitude * cos(2 pi (hour - peak_hour) / 24).
    energy_base_mean: float = 0.5
    energy_base_sd: float = 0.08
    energy_amplitude_mean: float = 0.18
    energy_amplitude_sd: float = 0.05
    energy_peak_hour_mean: float = 21.0
    energy_peak_hour_sd: float = 1.5
    session_mood_sd: float = 0.08
    # Skip logit = bias - tolerance - taste_weight * log(35 * taste[genre]) + misfit * |e - target|
    # - favourite_bonus if the artist is a favourite.
    skip_bias: float = -1.6
    skip_taste_weight: float = 0.6
    skip_misfit_weight: float = 5.0
    skip_favourite_bonus: float = 0.8
    skip_min_ms: int = 4_000
    skip_max_ms: int = 40_000
    gap_max_ms: int = 5_000  # silence between two songs of a session
    # Catalog.
    follow_candidates: int = 20  # "often played after" candidates per song
    follow_temperature: float = 0.12  # softmax temperature over latent similarity
    latent_dim: int = 16
    new_release_share: float = 0.04  # songs released during the simulated period
    own_genre_share: float = 0.85  # songs in their artist's genre
    taste_genres: int = 3  # genres a listener's taste concentrates on
    taste_floor: float = 0.02  # mass spread over all genres (nobody is fully closed)
    favourite_artists: tuple[int, int] = (3, 12)  # min, max favourites per listener


@dataclass(frozen=True)
class WorldConfig:
    """The size and seed of a synthetic world; `Behaviour` holds how its listeners act."""

    preset: str
    n_users: int
    n_artists: int
    n_songs: int
    n_days: int
    n_shards: int = 1
    seed: int = 7
    start: str = "2026-01-05T00:00:00+00:00"  # a Monday, UTC
    kinds: tuple[ListenerKind, ...] = KINDS
    behaviour: Behaviour = field(default_factory=Behaviour)

    def __post_init__(self) -> None:
        for name in ("n_users", "n_artists", "n_songs", "n_days", "n_shards"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.n_songs < self.n_artists:
            raise ConfigError(
                f"n_songs ({self.n_songs}) must be at least n_artists ({self.n_artists})"
            )
        if self.n_shards > self.n_users:
            raise ConfigError(f"n_shards ({self.n_shards}) exceeds n_users ({self.n_users})")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be in 0..2^63-1, got {self.seed}")
        shares = sum(kind.share for kind in self.kinds)
        if abs(shares - 1.0) > 1e-9:
            raise ConfigError(f"listener kind shares must sum to 1, got {shares}")

    @property
    def start_datetime(self) -> datetime:
        return datetime.fromisoformat(self.start).astimezone(UTC)

    @property
    def start_us(self) -> int:
        return int(self.start_datetime.timestamp()) * 1_000_000

    @property
    def end_us(self) -> int:
        return self.start_us + self.n_days * 86_400 * 1_000_000

    def shard_users(self, shard: int) -> range:
        """The listener ids of one shard: contiguous ranges of near-equal size."""
        lo = self.n_users * shard // self.n_shards
        hi = self.n_users * (shard + 1) // self.n_shards
        return range(lo, hi)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WorldConfig:
        raw = dict(raw)
        raw["kinds"] = tuple(
            ListenerKind(**{**kind, "mixture": tuple(kind["mixture"])}) for kind in raw["kinds"]
        )
        behaviour = dict(raw["behaviour"])
        for name, value in behaviour.items():
            if isinstance(value, list):
                behaviour[name] = tuple(value)
        raw["behaviour"] = Behaviour(**behaviour)
        return cls(**raw)


PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"n_users": 300, "n_artists": 120, "n_songs": 1_200, "n_days": 28},
    "small": {"n_users": 1_000, "n_artists": 500, "n_songs": 5_000, "n_days": 30},
    "default": {"n_users": 10_000, "n_artists": 2_000, "n_songs": 20_000, "n_days": 56},
    "large": {
        "n_users": 1_000_000,
        "n_artists": 50_000,
        "n_songs": 500_000,
        "n_days": 56,
        "n_shards": 64,
    },
}


def world_config(preset: str = "default", seed: int = 7, **overrides: int) -> WorldConfig:
    """The settings of a preset, with optional size overrides (validated)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    sizes = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return WorldConfig(preset=preset, seed=seed, **sizes)
