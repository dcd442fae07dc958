"""Arrow schemas of the world's tables and the one checker that validates them.

The tables and their columns are the contract in ARCHITECTURE.md; every reader goes through
`check_table`, so a wrong or missing column fails the same way everywhere, naming the table, the
column, the type found and the type expected.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from nextsong.errors import DataError

TIMESTAMP = pa.timestamp("us", tz="UTC")

GENRES = pa.schema([("genre_id", pa.int32()), ("name", pa.string())])

ARTISTS = pa.schema([("artist_id", pa.int32()), ("name", pa.string()), ("genre_id", pa.int32())])

SONGS = pa.schema(
    [
        ("song_id", pa.int32()),
        ("title", pa.string()),
        ("artist_id", pa.int32()),
        ("genre_id", pa.int32()),
        ("duration_ms", pa.int32()),
        ("energy", pa.float32()),
        ("release_ts", TIMESTAMP),
    ]
)

# Only what a real service knows about a listener: no archetype, taste or rhythm (see truth/).
USERS = pa.schema([("user_id", pa.int32()), ("name", pa.string()), ("signup_ts", TIMESTAMP)])

EVENTS = pa.schema(
    [
        ("user_id", pa.int32()),
        ("session_id", pa.int64()),
        ("position", pa.int32()),
        ("song_id", pa.int32()),
        ("ts", TIMESTAMP),
        ("ms_played", pa.int32()),
        ("skipped", pa.bool_()),
    ]
)

WORLD_TABLES: dict[str, pa.Schema] = {
    "genres": GENRES,
    "artists": ARTISTS,
    "songs": SONGS,
    "users": USERS,
    "events": EVENTS,
}


def check_table(table: pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    """Returns `table` with exactly `schema`'s columns, or raises DataError naming the problem.

    Extra columns are dropped (an imported world may carry more); missing columns, wrong types
    and nulls in a required column are errors.
    """
    for field in schema:
        if field.name not in table.column_names:
            raise DataError(f"table {name!r} has no column {field.name!r} ({field.type})")
        found = table.schema.field(field.name).type
        if found != field.type:
            raise DataError(
                f"table {name!r} column {field.name!r} has type {found}, expected {field.type}"
            )
        if table.column(field.name).null_count:
            raise DataError(f"table {name!r} column {field.name!r} has null values")
    return table.select(schema.names)


def check_ids(table: pa.Table, column: str, name: str) -> None:
    """Checks that an id column holds the dense range 0..n-1 in order (row = id)."""
    ids = table.column(column)
    if len(ids) and not pc.all(pc.equal(ids, pa.array(range(len(ids)), ids.type))).as_py():
        raise DataError(f"table {name!r}: {column} must be 0..{len(ids) - 1} in order")


def table_path(world: Path, name: str) -> Path:
    """The file of a table, or its folder of parts when the world was written in shards."""
    single = Path(world) / f"{name}.parquet"
    return single if single.exists() else Path(world) / name
