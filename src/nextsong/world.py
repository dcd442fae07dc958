"""A world on disk (generated or imported): its manifest and its validated tables.

`load_world` is the one way later steps open a world: it checks the manifest (kind, schema
version, checksums), then each table against its schema in `schema.py`, and that ids are dense
(row i of `songs` is song_id i), so ids can index tensors directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from nextsong import schema
from nextsong.errors import DataError
from nextsong.store import read_manifest, read_table

WORLD_KIND = "world"


@dataclass(frozen=True)
class World:
    path: Path
    manifest: dict[str, Any]
    genres: pa.Table
    artists: pa.Table
    songs: pa.Table
    users: pa.Table
    events: pa.Table

    @property
    def has_truth(self) -> bool:
        return (self.path / "truth").is_dir()

    @property
    def period_start(self) -> datetime:
        return datetime.fromisoformat(self.manifest["period"]["start"])

    @property
    def period_end(self) -> datetime:
        return datetime.fromisoformat(self.manifest["period"]["end"])


def load_world(path: Path | str, verify: bool = True) -> World:
    """Opens the world at `path`, raising DataError naming what is missing or wrong."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"no world at {path}: run `nextsong generate --out {path}` first")
    manifest = read_manifest(path, WORLD_KIND, verify=verify)
    if "period" not in manifest:
        raise DataError(f"{path}/manifest.json has no 'period' (start and end of the data)")
    tables = {}
    for name, table_schema in schema.WORLD_TABLES.items():
        table = read_table(schema.table_path(path, name))
        tables[name] = schema.check_table(table, table_schema, name)
    for name, column in (("genres", "genre_id"), ("artists", "artist_id"), ("songs", "song_id")):
        schema.check_ids(tables[name], column, name)
    schema.check_ids(tables["users"], "user_id", "users")
    if tables["events"].num_rows == 0:
        raise DataError(f"world {path} has no events")
    return World(path=path, manifest=manifest, **tables)


def source_checksums(manifest: dict[str, Any], tables: tuple[str, ...]) -> dict[str, str]:
    """The sha256 of the files of `tables` (one file each, or a folder of parts) in a manifest.

    Artifacts derived from a world record these, so that a world re-generated or edited since is
    detected when the artifact is loaded (`check_sources`).
    """
    files = manifest.get("files", {})
    picked = {name: digest for name, digest in files.items() if _table_of(name) in tables}
    missing = sorted(set(tables) - {_table_of(name) for name in picked})
    if missing:
        raise DataError(f"the world's manifest lists no file for table {missing[0]!r}")
    return dict(sorted(picked.items()))


def check_sources(recorded: dict[str, str], manifest: dict[str, Any], artifact: str) -> None:
    """Raises DataError unless the world files `recorded` by `artifact` are this world's files."""
    tables = tuple(sorted({_table_of(name) for name in recorded}))
    current = source_checksums(manifest, tables)
    for name in sorted(set(current) | set(recorded)):
        if current.get(name) != recorded.get(name):
            raise DataError(
                f"{artifact} does not match its world: {name} has changed since it was built "
                f"(re-generated or edited world); rebuild it"
            )


def _table_of(file_name: str) -> str:
    """'events.parquet' and 'events/part-00003.parquet' -> 'events'."""
    return file_name.split("/")[0].removesuffix(".parquet")
