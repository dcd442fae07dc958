"""Real listening histories as a world: `import_world(format, paths, out, config)`.

Each format has its module (spotify, listenbrainz, lastfm) that reads records into a `PlayLog`;
`build` turns the plays into the world's tables; this module writes them, with the same files
and manifest as a generated world (no `truth/`), so every later step runs on it unchanged. The
manifest's `import` block says what was read, what was left out and why, and the rules applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nextsong import __version__
from nextsong.errors import ConfigError, DataError
from nextsong.ingest import lastfm, listenbrainz, spotify
from nextsong.ingest.build import Built, ImportConfig, build_tables, read_genres
from nextsong.ingest.common import LEFT_OUT, PlayLog, gc_paused
from nextsong.store import staged_dir, write_manifest, write_table
from nextsong.world import WORLD_KIND

__all__ = ["FORMATS", "ImportConfig", "import_world", "read_plays"]

log = logging.getLogger(__name__)

Reader = Callable[[Iterable[Path], str | None, PlayLog], None]
FORMATS: dict[str, Reader] = {
    module.FORMAT: module.read for module in (spotify, listenbrainz, lastfm)
}  # in the order of build.FORMAT_NAMES, which ImportConfig checks (a test keeps them equal)


def read_plays(format_name: str, paths: Iterable[Path], user: str | None = None) -> PlayLog:
    """Every play of the export files (or folders per listener) in `paths`, with the tallies."""
    if format_name not in FORMATS:
        raise ConfigError(f"unknown format {format_name!r}; valid formats: {', '.join(FORMATS)}")
    plays = PlayLog()
    with gc_paused():
        FORMATS[format_name](list(paths), user, plays)
    return plays


def import_world(
    paths: Iterable[Path],
    out: Path,
    config: ImportConfig,
    force: bool = False,
) -> dict[str, Any]:
    """Reads the exports, builds the world and writes it to `out` (aside, then renamed: never a
    partial world); returns the manifest."""
    paths = list(paths)
    plays = read_plays(config.format, paths, config.user)
    if not len(plays):
        reasons = ", ".join(f"{n:,} {why}" for why, n in sorted(plays.left_out.items()))
        raise DataError(
            f"no plays of songs in {', '.join(map(str, paths))}: {plays.records:,} records read"
            f"{'; left out: ' + reasons if reasons else ''}"
        )
    genre_of = read_genres(Path(config.genres_file)) if config.genres_file else None
    built = build_tables(plays.frame(), config, genre_of)
    log.info("imported %d plays into %d sessions", len(plays), built.sessions)
    with staged_dir(out, force=force) as stage:
        for name, table in built.tables.items():
            write_table(stage / f"{name}.parquet", table)
        manifest = write_manifest(
            stage,
            WORLD_KIND,
            generator=f"nextsong {__version__} import",
            preset=None,
            seed=None,
            period={"start": built.period_start.isoformat(), "end": built.period_end.isoformat()},
            counts={name: table.num_rows for name, table in built.tables.items()}
            | {"sessions": built.sessions},
            shards=1,
            **{"import": _summary(plays, built, config)},
        )
    return manifest


def _summary(plays: PlayLog, built: Built, config: ImportConfig) -> dict[str, Any]:
    left_out = dict.fromkeys(LEFT_OUT, 0) | dict(plays.left_out)
    left_out["unidentified"] += built.unidentified
    left_out["duplicate"] += built.duplicates
    return {
        "config": config.to_dict(),
        "files": sorted(plays.files),
        "records": plays.records,
        "plays": built.tables["events"].num_rows,
        "left_out": left_out,
        "invalid_examples": plays.invalid_examples,
    }
