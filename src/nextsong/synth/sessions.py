"""Listening sessions: when they start, and the song-by-song walk, vectorised across sessions.

Each session has a start time drawn from its listener's rhythm, an hour (UTC hour of the start)
and a mood (an energy offset); together they give the session's target energy. Songs are then
drawn position by position for all open sessions at once (a Python loop per position, never per
event). The next song comes from a mixture (`config.COMPONENTS`):

- same_artist: another song of the current song's artist, proportional to popularity;
- follows: one of the current song's "often played after" candidates, by their weights;
- taste: a genre from the listener's taste, then a song of it proportional to popularity**bias,
  accepted with the song's energy fit to the session's target (rejection sampling);
- favourites: a favourite artist uniformly, then one of its songs proportional to popularity;
- explore: any song, uniformly.

A drawn song must be released by the time it starts and differ from the current one; otherwise
it is drawn again from the same component, which makes each component's law its base law
restricted to the allowed songs and renormalised. A component with no allowed song (an artist
with no other released song) gets weight zero and the mixture is renormalised. After a skip the
same_artist and follows weights are damped (the session changes direction) and the session is
more likely to end. `oracle.py` computes the exact probabilities of this draw independently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextsong.config import COMPONENTS, WorldConfig
from nextsong.synth.catalog import N_GENRES, Catalog
from nextsong.synth.listeners import Listeners, draw_taste_genre, preferred_energy
from nextsong.synth.sampling import SegmentSampler, draw_columns, draw_rows

US_PER_S = 1_000_000
US_PER_HOUR = 3600 * US_PER_S
SESSIONS_PER_USER_LIMIT = 1_000_000  # session_id = user_id * this + the session's rank
_MAX_DRAW_ROUNDS = 10_000


def energy_fit(config: WorldConfig, energy: np.ndarray, target: np.ndarray) -> np.ndarray:
    """How well a song's energy fits a target, in [floor, 1]: the taste draw's acceptance."""
    behaviour = config.behaviour
    gauss = np.exp(-((energy - target) ** 2) / (2 * behaviour.energy_fit_width**2))
    return behaviour.energy_fit_floor + (1 - behaviour.energy_fit_floor) * gauss


@dataclass(frozen=True)
class Sessions:
    """The sessions of a shard, sorted by listener then start; arrays indexed by session row."""

    listener: np.ndarray  # (N,) local listener index
    session_id: np.ndarray  # (N,) int64
    start_us: np.ndarray  # (N,) int64
    hour: np.ndarray  # (N,) int8, UTC hour of the start
    mood: np.ndarray  # (N,) float64 energy offset
    target_energy: np.ndarray  # (N,) float64 in [0, 1]


def plan_sessions(config: WorldConfig, listeners: Listeners, rng: np.random.Generator) -> Sessions:
    per_week = np.array([kind.sessions_per_week for kind in config.kinds])[listeners.kind]
    expected = per_week * listeners.activity * config.n_days / 7.0
    count = np.minimum(rng.poisson(expected), SESSIONS_PER_USER_LIMIT - 1)
    listener = np.repeat(np.arange(len(listeners)), count)
    day = rng.integers(0, config.n_days, len(listener))
    hour = draw_rows(listeners.rhythm, listener, rng)
    second = rng.integers(0, 3600, len(listener))
    start_us = config.start_us + (day * 86_400 + hour * 3600 + second) * US_PER_S

    order = np.lexsort((start_us, listener))
    listener, start_us, hour = listener[order], start_us[order], hour[order]
    first_row = np.concatenate([[0], np.cumsum(count)])[:-1]
    rank = np.arange(len(listener)) - np.repeat(first_row, count)
    session_id = listeners.user_ids[listener].astype(np.int64) * SESSIONS_PER_USER_LIMIT + rank

    mood = rng.normal(0.0, config.behaviour.session_mood_sd, len(listener))
    preferred = preferred_energy(
        listeners.energy_base[listener],
        listeners.energy_amplitude[listener],
        listeners.energy_peak_hour[listener],
        hour,
    )
    return Sessions(
        listener=listener,
        session_id=session_id,
        start_us=start_us,
        hour=hour.astype(np.int8),
        mood=mood,
        target_energy=np.clip(preferred + mood, 0.0, 1.0),
    )


@dataclass
class WalkState:
    """The open sessions at one position; every array has one entry per open session."""

    listener: np.ndarray  # local listener index
    current: np.ndarray  # song just played, -1 before the first song
    skipped: np.ndarray  # whether the current song was skipped
    target_energy: np.ndarray
    now_us: np.ndarray  # when the next song starts


class NextSongSampler:
    """Draws next songs from the mixture for a batch of open sessions (see the module doc)."""

    def __init__(self, config: WorldConfig, catalog: Catalog, listeners: Listeners):
        self.config = config
        self.catalog = catalog
        self.listeners = listeners
        self.mixture = np.array([kind.mixture for kind in config.kinds])  # (kinds, 5)
        n_songs = catalog.n_songs
        # Songs are numbered artist by artist: artist a's segment is [first[a], first[a + 1]).
        self.by_artist = SegmentSampler(
            np.arange(n_songs), catalog.artist_first_song, catalog.song_popularity
        )
        self.by_genre = [  # per listener kind: popularity ** bias within each genre
            SegmentSampler.by_key(
                catalog.song_genre, N_GENRES, catalog.song_popularity**kind.popularity_bias
            )
            for kind in config.kinds
        ]
        masked_release = np.where(
            catalog.follow_weight > 0,
            catalog.song_release_us[catalog.follow_next],
            np.iinfo(np.int64).max,
        )
        self.follow_first_release = masked_release.min(axis=1)

        # Availability of same_artist: only artists with fewer than two back-catalog songs can
        # lack another released song; their new releases are looked up by (artist, time) key.
        back = catalog.song_release_us < config.start_us
        self.n_back_catalog = np.bincount(catalog.song_artist[back], minlength=catalog.n_artists)
        new = np.flatnonzero(~back)
        self.new_release_keys = np.sort(
            catalog.song_artist[new].astype(np.int64) << 32
            | (catalog.song_release_us[new] - config.start_us) // US_PER_S
        )
        # Favourites as a padded (U, max) matrix, -1 for no artist: membership is a row compare.
        offsets = listeners.favourite_offsets
        counts = np.diff(offsets)
        self.favourites = np.full((len(listeners), max(1, counts.max())), -1, dtype=np.int64)
        column = np.arange(offsets[-1]) - np.repeat(offsets[:-1], counts)
        owner = np.repeat(np.arange(len(listeners)), counts)
        self.favourites[owner, column] = listeners.favourite_artists
        self.favourite_count = counts

    # -- mixture weights -------------------------------------------------------------------
    def released_by_artist(self, artist: np.ndarray, now_us: np.ndarray) -> np.ndarray:
        """How many songs of each artist are released at each time."""
        offset = np.maximum(now_us - self.config.start_us, 0) // US_PER_S
        key = artist.astype(np.int64) << 32
        upto = np.searchsorted(self.new_release_keys, key | offset, side="right")
        return self.n_back_catalog[artist] + upto - np.searchsorted(self.new_release_keys, key)

    def component_weights(self, state: WalkState) -> np.ndarray:
        """(N, 5) mixture weights over COMPONENTS, zero for unavailable components (unnormalised:
        the draw normalises)."""
        behaviour = self.config.behaviour
        kind = self.listeners.kind[state.listener]
        first = state.current < 0
        weights = self.mixture[kind]
        if first.any():
            start_weights = np.zeros(len(COMPONENTS))
            start_weights[[2, 3, 4]] = behaviour.first_song_mixture
            weights[first] = start_weights
        damped = [COMPONENTS.index(name) for name in behaviour.skip_damped]
        weights[np.ix_(state.skipped & ~first, damped)] *= behaviour.skip_damping

        current = np.maximum(state.current, 0)
        artist = self.catalog.song_artist[current]
        check = np.flatnonzero(~first & (self.n_back_catalog[artist] < 2))
        others = self.released_by_artist(artist[check], state.now_us[check]) - 1
        weights[check[others < 1], 0] = 0.0
        weights[first, 0] = 0.0
        weights[:, 1] *= ~first & (self.follow_first_release[current] <= state.now_us)
        return weights

    # -- the draw --------------------------------------------------------------------------
    def draw(self, state: WalkState, rng: np.random.Generator) -> np.ndarray:
        component = draw_columns(self.component_weights(state), rng)
        songs = np.full(len(component), -1, dtype=np.int64)
        pending = np.arange(len(component))
        for _ in range(_MAX_DRAW_ROUNDS):
            if not len(pending):
                return songs
            proposal, accept = self._propose(component[pending], pending, state, rng)
            accept &= self.catalog.song_release_us[proposal] <= state.now_us[pending]
            accept &= proposal != state.current[pending]
            songs[pending[accept]] = proposal[accept]
            pending = pending[~accept]
        raise RuntimeError(f"next-song draw did not converge for {len(pending)} sessions")

    def _propose(
        self,
        component: np.ndarray,
        rows: np.ndarray,
        state: WalkState,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One proposal per row from its component's base law, and a first acceptance mask."""
        catalog, listeners = self.catalog, self.listeners
        proposal = np.zeros(len(rows), dtype=np.int64)
        accept = np.ones(len(rows), dtype=bool)
        listener = state.listener[rows]
        current = np.maximum(state.current[rows], 0)

        pick = np.flatnonzero(component == COMPONENTS.index("same_artist"))
        proposal[pick] = self.by_artist.draw(catalog.song_artist[current[pick]], rng)

        pick = np.flatnonzero(component == COMPONENTS.index("follows"))
        column = draw_columns(self.catalog.follow_weight[current[pick]], rng)
        proposal[pick] = self.catalog.follow_next[current[pick], column]

        taste = component == COMPONENTS.index("taste")
        for kind_index, by_genre in enumerate(self.by_genre):
            pick = np.flatnonzero(taste & (listeners.kind[listener] == kind_index))
            if not len(pick):
                continue
            genre = self._taste_genre(listener[pick], rng)
            song = by_genre.draw(genre, rng)
            target = state.target_energy[rows[pick]]
            fit = energy_fit(self.config, catalog.song_energy[song], target)
            proposal[pick] = song
            accept[pick] = (catalog.song_genre[song] == genre) & (rng.random(len(song)) < fit)

        pick = np.flatnonzero(component == COMPONENTS.index("favourites"))
        owner = listener[pick]
        slot = (rng.random(len(pick)) * self.favourite_count[owner]).astype(np.int64)
        proposal[pick] = self.by_artist.draw(self.favourites[owner, slot], rng)

        pick = np.flatnonzero(component == COMPONENTS.index("explore"))
        proposal[pick] = rng.integers(0, catalog.n_songs, len(pick))
        return proposal, accept

    def _taste_genre(self, listener: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return draw_taste_genre(
            self.listeners.taste_genres[listener],
            self.listeners.taste_weights[listener],
            self.config.behaviour.taste_floor,
            rng,
        )

    # -- skips -----------------------------------------------------------------------------
    def skip_probability(self, state: WalkState, song: np.ndarray) -> np.ndarray:
        behaviour = self.config.behaviour
        catalog = self.catalog
        kind = self.listeners.kind[state.listener]
        tolerance = np.array([k.skip_tolerance for k in self.config.kinds])[kind]
        taste = self.listeners.taste[state.listener, catalog.song_genre[song]]
        misfit = np.abs(catalog.song_energy[song] - state.target_energy)
        favourite = self.is_favourite(state.listener, catalog.song_artist[song])
        logit = (
            behaviour.skip_bias
            - tolerance
            - behaviour.skip_taste_weight * np.log(N_GENRES * taste)
            + behaviour.skip_misfit_weight * misfit
            - behaviour.skip_favourite_bonus * favourite
        )
        return 1.0 / (1.0 + np.exp(-logit))

    def is_favourite(self, listener: np.ndarray, artist: np.ndarray) -> np.ndarray:
        return (self.favourites[listener] == artist[:, None]).any(axis=1)


@dataclass(frozen=True)
class Events:
    """Plays of a shard in contract order (listener, session, position)."""

    user_id: np.ndarray
    session_id: np.ndarray
    position: np.ndarray
    song_id: np.ndarray
    ts_us: np.ndarray
    ms_played: np.ndarray
    skipped: np.ndarray


def simulate(
    config: WorldConfig,
    catalog: Catalog,
    listeners: Listeners,
    sessions: Sessions,
    rng: np.random.Generator,
) -> Events:
    """Walks every session to its end, one position at a time for all open sessions."""
    behaviour = config.behaviour
    sampler = NextSongSampler(config, catalog, listeners)
    end_probability = 1.0 / np.array([kind.mean_session_length for kind in config.kinds])

    open_rows = np.arange(len(sessions.listener))
    state = WalkState(
        listener=sessions.listener.copy(),
        current=np.full(len(open_rows), -1, dtype=np.int64),
        skipped=np.zeros(len(open_rows), dtype=bool),
        target_energy=sessions.target_energy.copy(),
        now_us=sessions.start_us.copy(),
    )
    steps: list[tuple[np.ndarray, ...]] = []
    for position in range(behaviour.max_session_length):
        if not len(open_rows):
            break
        song = sampler.draw(state, rng)
        skipped = rng.random(len(song)) < sampler.skip_probability(state, song)
        duration = catalog.song_duration_ms[song]
        skip_ms = rng.integers(behaviour.skip_min_ms, behaviour.skip_max_ms, len(song))
        played = np.where(skipped, np.minimum(skip_ms, duration), duration)
        steps.append((open_rows, np.full(len(song), position), song, state.now_us, played, skipped))

        # End or go on: a skip makes the end more likely.
        end = end_probability[listeners.kind[state.listener]]
        end = np.where(skipped, np.minimum(1.0, end * behaviour.skip_end_factor), end)
        go_on = rng.random(len(song)) >= end
        gap_us = rng.integers(0, behaviour.gap_max_ms, len(song)) * 1000
        next_now = state.now_us + played.astype(np.int64) * 1000 + gap_us
        open_rows = open_rows[go_on]
        state = WalkState(
            listener=state.listener[go_on],
            current=song[go_on],
            skipped=skipped[go_on],
            target_energy=state.target_energy[go_on],
            now_us=next_now[go_on],
        )

    # Scatter every step into place: a session's events are contiguous, in position order.
    all_rows = np.concatenate([step[0] for step in steps])
    length = np.bincount(all_rows, minlength=len(sessions.listener))
    first_index = np.concatenate([[0], np.cumsum(length)[:-1]])
    columns = [np.empty(len(all_rows), dtype=steps[0][k].dtype) for k in range(1, 6)]
    for rows, position, *values in steps:
        index = first_index[rows] + position
        for column, value in zip(columns, (position, *values), strict=True):
            column[index] = value
    position, song, ts, played, skipped = columns
    session_row = np.repeat(np.arange(len(length)), length)
    return Events(
        user_id=listeners.user_ids[sessions.listener[session_row]],
        session_id=sessions.session_id[session_row],
        position=position.astype(np.int32),
        song_id=song.astype(np.int32),
        ts_us=ts,
        ms_played=played.astype(np.int32),
        skipped=skipped,
    )
