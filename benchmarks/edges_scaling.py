"""Benchmark: the cost of `nextsong edges` grows linearly with the training events.

Takes one world (an existing one with `--data DIR`, or else a generated `default`-catalog world
with 2,500 listeners, about a quarter of the default world) and times `compute_edges` on its
events replicated 1x, 2x and 4x: each copy is the same listening by other listeners (user ids
and session ids shifted), so the training events, the user-song pairs and the listeners grow by
exactly the factor while the catalog stays the same. Each factor runs in a fresh process on one
thread, so its peak memory is its own; the time excludes loading and replicating, and is the
best of two runs. Linearity is judged on CPU time, which other work on a shared machine barely
changes (wall time is printed too). Prints a table and writes `bench-results/edges_scaling.json`.

Run: `.venv/bin/python benchmarks/edges_scaling.py [--data DIR] [--factors 1,2,4]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path("bench-results") / "edges_scaling.json"
GENERATED = {"preset": "default", "n_users": 2_500}
REPEATS = 2


def measure(world_path: Path, factor: int) -> dict:
    """Runs in the child process: edges of the world's events replicated `factor` times."""
    import polars as pl

    from nextsong.graph.edges import compute_edges
    from nextsong.split import make_split
    from nextsong.world import load_world

    world = load_world(world_path)
    split = make_split(world)
    events = pl.from_arrow(world.events)
    users = world.users.num_rows
    sessions = events["session_id"].max() + 1
    replicated = pl.concat(
        events.with_columns(
            pl.col("user_id") + copy * users, pl.col("session_id") + copy * sessions
        )
        for copy in range(factor)
    ).rechunk()
    songs, artists = pl.from_arrow(world.songs), pl.from_arrow(world.artists)
    times, cpu_times = [], []
    for _ in range(REPEATS):
        started, cpu_started = time.perf_counter(), time.process_time()
        tables = compute_edges(replicated.lazy(), songs, artists, split)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    train_events = int(tables["user_song"]["plays"].sum())
    return {
        "factor": factor,
        "events": replicated.height,
        "train_events": train_events,
        "rows": {name: table.height for name, table in tables.items()},
        "seconds": min(times),
        "cpu_seconds": min(cpu_times),
        "train_events_per_cpu_s": train_events / min(cpu_times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(world: Path, factor: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1"}
    command = [sys.executable, __file__, "--child", str(world), str(factor)]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def generated_world(folder: Path) -> Path:
    from nextsong.config import world_config
    from nextsong.synth.generate import generate_world

    path = folder / "world"
    preset = GENERATED["preset"]
    generate_world(world_config(preset, n_users=GENERATED["n_users"]), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="world to use (default: generate one)")
    parser.add_argument("--factors", default="1,2,4", help="replication factors, e.g. 1,2,4")
    options = parser.parse_args()
    factors = [int(factor) for factor in options.factors.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        world = options.data or generated_world(Path(folder))
        rows = [run_child(world, factor) for factor in factors]

    print(f"edges of {options.data or GENERATED}, one thread, best of {REPEATS}")
    print(f"{'factor':>6}{'train events':>14}{'user-song':>11}{'wall s':>8}{'cpu s':>8}"
          f"{'train ev/cpu s':>16}{'cpu s / (1x cpu s * f)':>24}{'peak MB':>9}")  # fmt: skip
    base = rows[0]
    for row in rows:
        linear = (row["cpu_seconds"] / base["cpu_seconds"]) / (row["factor"] / base["factor"])
        print(
            f"{row['factor']:>6}{row['train_events']:>14,}{row['rows']['user_song']:>11,}"
            f"{row['seconds']:>8.2f}{row['cpu_seconds']:>8.2f}"
            f"{row['train_events_per_cpu_s']:>16,.0f}{linear:>24.2f}{row['peak_rss_mb']:>9.0f}"
        )
    print("a last column near 1 at every factor: the cost is linear in the training events")
    RESULTS.parent.mkdir(exist_ok=True)
    payload = {"world": str(options.data or GENERATED), "repeats": REPEATS, "rows": rows}
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(measure(Path(sys.argv[2]), int(sys.argv[3]))))
    else:
        main()
