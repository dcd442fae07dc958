"""Artifacts on disk: atomic writes, manifests with checksums, and checked loading.

Every step writes its output aside (a temporary file or folder in the same directory) and renames
it into place only when complete, so an interrupted run never leaves a partial artifact where a
finished one is expected. Every artifact folder carries a `manifest.json` with a schema version and
the sha256 of each file, checked when the artifact is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from nextsong.errors import ConfigError, DataError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_HASH_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)  # mkstemp makes files private; artifacts are ordinary files
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, payload: Any) -> None:
    write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid JSON: {error}") from None


def write_table(path: Path, table: pa.Table) -> None:
    """Writes a Parquet file atomically, with stable settings so equal tables give equal bytes."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)


@contextlib.contextmanager
def staged_dir(final: Path, force: bool = False) -> Iterator[Path]:
    """Builds a folder aside and moves it to `final` only when the block succeeds.

    `final` must not exist, or be empty, unless `force` is set: then the old folder is replaced
    only after the new one is complete, so a failure keeps the old one intact.
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise ConfigError(f"--out {final} exists and is not a folder")
    if final.exists() and any(final.iterdir()) and not force:
        raise ConfigError(f"--out {final} is not empty; pass --force to replace it")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        stage.chmod(0o755)
    except OSError as error:
        raise ConfigError(f"--out {final} is not writable: {error.strerror}") from None
    try:
        yield stage
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(stage, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_manifest(folder: Path, kind: str, **fields: Any) -> dict[str, Any]:
    """Writes `folder/manifest.json` with the sha256 of every file below it.

    The manifest itself and hidden paths (work in progress such as shard markers) are left out.
    """
    folder = Path(folder)
    files = {
        path.relative_to(folder).as_posix(): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and path.name != MANIFEST
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    }
    manifest = {"schema_version": SCHEMA_VERSION, "kind": kind, **fields, "files": files}
    write_json(folder / MANIFEST, manifest)
    return manifest


def read_manifest(folder: Path, kind: str, verify: bool = True) -> dict[str, Any]:
    """Loads and checks a manifest: its kind, schema version, and (if `verify`) every checksum."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        raise DataError(f"{folder} has no {MANIFEST}: not a nextsong {kind} (or not finished)")
    manifest = read_json(folder / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        found = manifest.get("kind") if isinstance(manifest, dict) else type(manifest).__name__
        raise DataError(f"{folder / MANIFEST} describes a {found!r}, expected a {kind!r}")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DataError(
            f"{folder / MANIFEST} has schema_version {manifest.get('schema_version')!r}; "
            f"this nextsong reads {SCHEMA_VERSION}: rebuild it"
        )
    if verify:
        for name, expected in manifest.get("files", {}).items():
            path = folder / name
            if not path.exists():
                raise DataError(f"{path} is listed in the manifest but missing")
            if sha256_file(path) != expected:
                raise DataError(f"{path} does not match its manifest checksum (corrupt or edited)")
    return manifest


def read_table(path: Path) -> pa.Table:
    """Reads a Parquet file, or a folder of Parquet parts, with a clear error if unreadable."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"missing table {path}")
    try:
        if path.is_dir():
            parts = sorted(path.glob("*.parquet"))
            if not parts:
                raise DataError(f"table folder {path} holds no .parquet parts")
            return pa.concat_tables(pq.read_table(part) for part in parts)
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{path} is not a readable Parquet table: {error}") from None
