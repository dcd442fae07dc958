"""The next songs for a listener's session, with the reasons behind each (`nextsong recommend`).

A request names a listener and optionally the session to continue (by default the listener's
latest session in the world's events, all periods), the hour (by default that session's start
hour, UTC), how many songs (`k`), how many of the listener's most recent songs to leave out, and
how many songs of one artist the list may hold. The model is the best saved run of a model name
(`DIR/models/best/<name>.json`); reasons come from `nextsong.explain`.

`score` is the model's probability that the song is the next one, renormalised over the songs
that may be recommended: the softmax of the model's scores over the catalog after the session's
songs and the left-out recent plays are removed, in [0, 1], summing to 1 over those songs (before
the per-artist limit, which only filters the list). For `nextsong` and the other neural models,
whose scores are log-probabilities, this is exactly their predicted probability renormalised;
count baselines score by back-off counts, whose softmax is sharply peaked: a ranking, not a
calibrated probability.

What a request needs of the listener's history (the latest session and the most recent
distinct songs) is gathered once from the events into `DIR/history/history.safetensors` and
memory-mapped, as the reasons' index is, so a request reads a few rows, never the events table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nextsong.errors import ConfigError, DataError
from nextsong.explain import Catalog, Explainer, Reason, map_safetensors
from nextsong.store import read_json, read_manifest, staged_dir, write_json, write_manifest

log = logging.getLogger(__name__)

DEFAULT_MODEL = "nextsong"
MAX_K = 100
RECENT_MAX = 200  # most recent distinct songs kept per listener for --exclude-recent
HISTORY_KIND = "history"
HISTORY_DIR = "history"
HISTORY_FILE = "history.safetensors"
HISTORY_RECORD = "history.json"
HISTORY_VERSION = 1
US_PER_HOUR = 3_600_000_000
US_PER_DAY = 24 * US_PER_HOUR
NO_SESSION_HOUR = 12  # the default hour of a listener without any session


@dataclass(frozen=True)
class Request:
    """One recommendation request; checked when built (ids are checked against the world by
    `RecommendService`)"""

    user: int
    k: int = 5
    hour: int | None = None
    session: tuple[int, ...] | None = None
    exclude_recent: int = 0
    max_per_artist: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.k <= MAX_K:
            raise ConfigError(f"--k must be in 1..{MAX_K}, got {self.k}")
        if self.hour is not None and not 0 <= self.hour <= 23:
            raise ConfigError(f"--hour must be in 0..23 (UTC), got {self.hour}")
        if not 0 <= self.exclude_recent <= RECENT_MAX:
            raise ConfigError(
                f"--exclude-recent must be in 0..{RECENT_MAX}, got {self.exclude_recent}"
            )
        if self.max_per_artist is not None and self.max_per_artist < 1:
            raise ConfigError(f"--max-per-artist must be at least 1, got {self.max_per_artist}")


def parse_session(text: str | None) -> tuple[int, ...] | None:
    """'12,7,40' -> (12, 7, 40); None stays None."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        songs = tuple(int(part) for part in parts)
    except ValueError:
        raise ConfigError(
            f"--session must be song ids separated by commas (e.g. 12,7,40), got {text!r}"
        ) from None
    if not songs:
        raise ConfigError("--session names no song; give song ids separated by commas")
    return songs


@dataclass(frozen=True)
class Recommendation:
    rank: int
    song_id: int
    title: str
    artist: str
    genre: str
    score: float
    reasons: list[Reason]

    @property
    def short_reason(self) -> str:
        return self.reasons[0].short if self.reasons else "model score only"

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "song_id": self.song_id,
            "title": self.title,
            "artist": self.artist,
            "genre": self.genre,
            "score": self.score,
            "reasons": [reason.to_json() for reason in self.reasons],
        }


@dataclass(frozen=True)
class Recommendations:
    """The answer to a request; `to_json` is the ARCHITECTURE shape, the rest is for display."""

    user: int
    hour: int
    session: list[int]
    recommendations: list[Recommendation]
    session_titles: list[str] = field(default_factory=list)
    session_source: str = "given"  # "given", "latest" or "none"
    session_start: str | None = None  # ISO time of the latest session's first play
    model: str = ""
    run: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "hour": self.hour,
            "session": self.session,
            "recommendations": [item.to_json() for item in self.recommendations],
        }


# -- the listener history index ------------------------------------------------------------------
def build_history(folder: Path | str) -> Path:
    """Writes `folder/history/`: each listener's latest session (songs, skip flags, start and
    the end of its last play) and their `RECENT_MAX` most recently played distinct songs."""
    import polars as pl

    from nextsong import schema
    from nextsong.world import WORLD_KIND, source_checksums

    folder = Path(folder)
    world = read_manifest(folder, WORLD_KIND, verify=False)
    n_users = int(world["counts"]["users"])
    path = schema.table_path(folder, "events")
    source = path / "*.parquet" if path.is_dir() else path
    events = pl.scan_parquet(source).select(
        "user_id", "session_id", "position", "song_id", "ts", "ms_played", "skipped"
    )
    latest = (
        events.group_by("session_id")
        .agg(pl.col("user_id").first(), pl.col("ts").min().alias("start"))
        .sort("start", "session_id")
        .group_by("user_id")
        .agg(pl.col("session_id").last())
    )
    session = (
        events.join(latest, on=["user_id", "session_id"], how="semi")
        .sort("user_id", "position")
        .collect()
    )
    recent = (
        events.group_by("user_id", "song_id")
        .agg(pl.col("ts").max().alias("last"))
        .sort("user_id", pl.col("last"), "song_id", descending=[False, True, False])
        .filter(pl.int_range(pl.len()).over("user_id") < RECENT_MAX)
        .collect()
    )
    users = session["user_id"].to_numpy()
    ts = session["ts"].dt.epoch("us").to_numpy()
    ends = ts + session["ms_played"].to_numpy().astype(np.int64) * 1000
    next_us = np.full(n_users, -1, dtype=np.int64)
    first = np.full(n_users, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, users, ts)
    start_us = np.where(first == np.iinfo(np.int64).max, -1, first)
    np.maximum.at(next_us, users, ends)
    arrays = {
        "session.indptr": _offsets(users, n_users),
        "session.song": session["song_id"].to_numpy().astype(np.int32),
        "session.skipped": session["skipped"].to_numpy().astype(np.uint8),
        "session.start_us": start_us,
        "session.next_us": next_us,
        "recent.indptr": _offsets(recent["user_id"].to_numpy(), n_users),
        "recent.song": recent["song_id"].to_numpy().astype(np.int32),
    }
    from safetensors.numpy import save_file

    out = folder / HISTORY_DIR
    with staged_dir(out, force=True) as stage:
        save_file(
            {k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(stage / HISTORY_FILE)
        )
        write_json(
            stage / HISTORY_RECORD,
            {
                "version": HISTORY_VERSION,
                "n_users": n_users,
                "recent_max": RECENT_MAX,
                "sources": source_checksums(world, ("events", "users")),
            },
        )
        write_manifest(stage, HISTORY_KIND)
    log.info("listening history of %s: %d listeners", folder, n_users)
    return out


def _offsets(rows: np.ndarray, n_rows: int) -> np.ndarray:
    return np.r_[0, np.cumsum(np.bincount(rows, minlength=n_rows))].astype(np.int64)


class History:
    """Memory-mapped `DIR/history/`, built first if missing or older than the world's events."""

    def __init__(self, folder: Path | str) -> None:
        from nextsong.world import WORLD_KIND, check_sources

        folder = Path(folder)
        path = folder / HISTORY_DIR
        world = read_manifest(folder, WORLD_KIND, verify=False)
        try:
            read_manifest(path, HISTORY_KIND, verify=False)
            record = read_json(path / HISTORY_RECORD)
            if record.get("version") != HISTORY_VERSION:
                raise DataError("old history version")
            check_sources(record.get("sources", {}), world, str(path))
        except DataError:
            log.info("building the listening history of %s", folder)
            build_history(folder)
        read_manifest(path, HISTORY_KIND)
        self.arrays = map_safetensors(path / HISTORY_FILE)
        self.n_users = len(self.arrays["session.start_us"])

    def latest_session(self, user: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(songs, skipped flags, start, end of its last play) of the listener's latest session;
        empty arrays and -1 times for a listener without one. Times in us since epoch, UTC."""
        a = self.arrays
        start, end = (int(x) for x in a["session.indptr"][user : user + 2])
        return (
            np.asarray(a["session.song"][start:end], dtype=np.int64),
            np.asarray(a["session.skipped"][start:end], dtype=bool),
            int(a["session.start_us"][user]),
            int(a["session.next_us"][user]),
        )

    def recent(self, user: int, n: int) -> np.ndarray:
        """The listener's `n` most recently played distinct songs, most recent first."""
        start = int(self.arrays["recent.indptr"][user])
        end = int(self.arrays["recent.indptr"][user + 1])
        return np.asarray(self.arrays["recent.song"][start : min(end, start + n)], dtype=np.int64)


# -- models ------------------------------------------------------------------------------------
def load_best_model(data: Path | str, name: str = DEFAULT_MODEL) -> tuple[Any, Path]:
    """The fitted model of the best run of `name` and its folder; a ConfigError saying what to
    run first when there is none."""
    from nextsong.models import registry, runs

    data = Path(data)
    run = runs.best_run(data, name)
    if run is None:
        spec = registry.get(name)  # an unknown name fails here, listing the known ones
        if spec.kind == "baseline":
            hint = (
                f"baselines are fitted, not trained: save one with "
                f'`python -c "from nextsong.recommend import save_baseline_run; '
                f"save_baseline_run('{data}', '{name}')\"` first"
            )
        else:
            flag = "" if name == DEFAULT_MODEL else f" --model {name}"
            hint = f"run `nextsong train --data {data}{flag}` first"
        raise ConfigError(f"no trained run of model {name!r} in {runs.models_dir(data)}: {hint}")
    return registry.load_model(run), run


def save_baseline_run(data: Path | str, name: str = "transitions") -> Path:
    """Fits baseline `name` on the training window of `data`, saves it as a run and marks it
    the best of its name (the most recent fit wins: metric `fitted_at`, unix seconds)."""
    from nextsong.models import registry, runs
    from nextsong.models.base import TrainingData
    from nextsong.split import make_split, read_split_config, split_events
    from nextsong.world import load_world

    spec = registry.get(name)
    if spec.kind != "baseline":
        names = ", ".join(s.name for s in registry.specs("baseline"))
        raise ConfigError(f"{name!r} is a {spec.kind} model, not a baseline ({names})")
    world = load_world(data)
    split = make_split(world, read_split_config(data))
    training = TrainingData.from_world(world, split_events(world, split), split)
    model = spec.create().fit(training)
    run = runs.new_run_dir(data, name)
    model.save(run)
    runs.mark_if_better(data, name, run, "fitted_at", time.time(), higher_is_better=True)
    return run


# -- the service -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    session: np.ndarray  # (L,) songs of the session to continue
    skipped: np.ndarray  # (L,)
    source: str
    start: str | None
    hour: int
    now_us: int
    left_out: np.ndarray  # recent plays to leave out


class RecommendService:
    """Opens a world's model, catalog, listening history and reasons once; answers requests.

    Args:
        data: the world folder.
        model: the model name whose best run is used (default `nextsong`).
    """

    def __init__(self, data: Path | str, model: str = DEFAULT_MODEL) -> None:
        self.data = Path(data)
        self.model, self.run = load_best_model(self.data, model)
        self.catalog = Catalog.load(self.data)
        if self.model.n_songs != self.catalog.n_songs:
            raise DataError(
                f"run {self.run} was trained on {self.model.n_songs} songs, {self.data} has "
                f"{self.catalog.n_songs}: train {model} again on this world"
            )
        self.history = History(self.data)
        self.explainer = Explainer.open(self.data, self.catalog)
        self.period_end_us = _period_end_us(self.data)

    def recommend(self, request: Request) -> Recommendations:
        return self.recommend_many([request])[0]

    def recommend_many(self, requests: list[Request]) -> list[Recommendations]:
        """Answers a batch: one model call for every request, then reasons request by request."""
        from nextsong.models.base import SessionBatch, exclude_session_songs

        contexts = [self._context(request) for request in requests]
        batch = SessionBatch.from_sessions(
            [request.user for request in requests],
            [context.session.tolist() for context in contexts],
            [context.now_us for context in contexts],
            skipped=[context.skipped.tolist() for context in contexts],
        )
        scores = exclude_session_songs(self.model.score(batch).astype(np.float64), batch.songs)
        for row, context in enumerate(contexts):
            scores[row, context.left_out] = -np.inf
        probabilities = softmax_rows(scores)
        return [
            self._answer(request, context, probabilities[row])
            for row, (request, context) in enumerate(zip(requests, contexts, strict=True))
        ]

    def _context(self, request: Request) -> _Context:
        n_users, n_songs = self.history.n_users, self.catalog.n_songs
        if not 0 <= request.user < n_users:
            raise ConfigError(
                f"user {request.user} is not in {self.data} (valid: 0..{n_users - 1})"
            )
        songs, skipped, start_us, next_us = self.history.latest_session(request.user)
        source = "latest" if len(songs) else "none"
        if request.session is not None:
            unknown = [song for song in request.session if not 0 <= song < n_songs]
            if unknown:
                raise ConfigError(
                    f"song {unknown[0]} in --session is not in the catalog of {self.data} "
                    f"(valid song ids: 0..{n_songs - 1})"
                )
            songs = np.asarray(request.session, dtype=np.int64)
            skipped = np.zeros(len(songs), dtype=bool)
            source = "given"
        hour = request.hour
        if hour is None:
            hour = int(start_us // US_PER_HOUR % 24) if start_us >= 0 else NO_SESSION_HOUR
        base = next_us if next_us >= 0 else self.period_end_us
        now_us = base // US_PER_DAY * US_PER_DAY + hour * US_PER_HOUR + base % US_PER_HOUR
        started = datetime.fromtimestamp(start_us / 1e6, UTC).isoformat() if start_us >= 0 else None
        return _Context(
            session=songs,
            skipped=skipped,
            source=source,
            start=started if source == "latest" else None,
            hour=hour,
            now_us=int(now_us),
            left_out=self.history.recent(request.user, request.exclude_recent),
        )

    def _answer(
        self, request: Request, context: _Context, probabilities: np.ndarray
    ) -> Recommendations:
        songs = pick(probabilities, request.k, self.catalog.song_artist, request.max_per_artist)
        session = context.session.tolist()
        reasons = self.explainer.explain(request.user, session, context.hour, songs.tolist())
        catalog = self.catalog
        items = [
            Recommendation(
                rank=rank,
                song_id=int(song),
                title=str(catalog.title[song]),
                artist=catalog.artist_of(song),
                genre=catalog.genre_of(song),
                score=float(probabilities[song]),
                reasons=reasons[rank - 1],
            )
            for rank, song in enumerate(songs, start=1)
        ]
        return Recommendations(
            user=request.user,
            hour=context.hour,
            session=session,
            recommendations=items,
            session_titles=[str(catalog.title[song]) for song in session],
            session_source=context.source,
            session_start=context.start,
            model=self.model.name,
            run=self.run.name,
        )


def softmax_rows(scores: np.ndarray) -> np.ndarray:
    """(B, S) float64 softmax of each row over its finite entries; -inf entries get 0."""
    finite = np.isfinite(scores)
    top = np.max(np.where(finite, scores, -np.inf), axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    weights = np.where(finite, np.exp(np.where(finite, scores, 0.0) - top), 0.0)
    total = weights.sum(axis=1, keepdims=True)
    return weights / np.where(total > 0, total, 1.0)


def pick(
    probabilities: np.ndarray, k: int, song_artist: np.ndarray, max_per_artist: int | None
) -> np.ndarray:
    """Up to k song ids by probability (ties: smaller id), at most `max_per_artist` per artist,
    never a song of probability 0 (left out)."""
    allowed = np.flatnonzero(probabilities > 0)
    wanted = k if max_per_artist is None else min(len(allowed), k * 8 + 64)
    while True:
        if wanted < len(allowed):  # every song tied with the wanted-th best comes along
            kth = np.partition(probabilities[allowed], len(allowed) - wanted)[-wanted]
            shortlist = allowed[probabilities[allowed] >= kth]
        else:
            shortlist = allowed
        order = shortlist[np.lexsort((shortlist, -probabilities[shortlist]))]
        if max_per_artist is None:
            return order[:k]
        artist = song_artist[order]
        seen: dict[int, int] = {}
        chosen = []
        for song, owner in zip(order.tolist(), artist.tolist(), strict=True):
            if seen.get(owner, 0) < max_per_artist:
                seen[owner] = seen.get(owner, 0) + 1
                chosen.append(song)
                if len(chosen) == k:
                    return np.asarray(chosen, dtype=np.int64)
        if len(shortlist) == len(allowed):
            return np.asarray(chosen, dtype=np.int64)
        wanted = len(allowed)  # the shortlist was too short for the per-artist limit


def _period_end_us(folder: Path) -> int:
    from nextsong.world import WORLD_KIND

    manifest = read_manifest(folder, WORLD_KIND, verify=False)
    try:
        end = datetime.fromisoformat(manifest["period"]["end"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{folder}/manifest.json has no valid period end") from None
    return round(end.timestamp() * 1_000_000)
