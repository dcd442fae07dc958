"""Benchmark: how fast the synthetic world is generated, how much memory it takes, and whether
the cost grows linearly with the number of events.

Each measurement runs in a fresh process (so its peak memory is its own) on one thread. Reports,
for the `small` and `default` presets, events per second of the whole `generate` (catalog,
listeners, sessions, Parquet writing) and of the session walk alone, with the peak resident
memory; then the default catalog with 1x, 4x and 16x the listeners (so about 1x, 4x, 16x the
events). Run: `.venv/bin/python benchmarks/generate_speed.py` (also part of `make bench`).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path("bench-results") / "generate_speed.json"
SCALING_USERS = (1_250, 5_000, 20_000)


def measure(preset: str, users: int | None) -> dict:
    """Runs in the child process: generate one world and time its steps."""
    from nextsong.config import world_config
    from nextsong.synth.catalog import build_catalog
    from nextsong.synth.generate import catalog_rng, generate_world, shard_rng
    from nextsong.synth.listeners import build_listeners
    from nextsong.synth.sessions import plan_sessions, simulate

    config = world_config(preset, n_users=users)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        manifest = generate_world(config, Path(folder) / "world")
        whole = time.perf_counter() - started
    # The walk alone, on the same (deterministic) listeners and sessions.
    catalog = build_catalog(config, catalog_rng(config))
    rng = shard_rng(config, 0)
    listeners = build_listeners(config, catalog, config.shard_users(0), rng)
    sessions = plan_sessions(config, listeners, rng)
    started = time.perf_counter()
    events = simulate(config, catalog, listeners, sessions, rng)
    walk = time.perf_counter() - started
    assert len(events.ts_us) == manifest["counts"]["events"]
    return {
        "preset": preset,
        "users": config.n_users,
        "events": manifest["counts"]["events"],
        "generate_s": whole,
        "walk_s": walk,
        "events_per_s": manifest["counts"]["events"] / whole,
        "walk_events_per_s": manifest["counts"]["events"] / walk,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(preset: str, users: int | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--child", preset, str(users or 0)]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    rows = [run_child("small", None), run_child("default", None)]
    scaling = [run_child("default", users) for users in SCALING_USERS]
    print("generation, one thread (whole = catalog + listeners + walk + Parquet writing)")
    print(f"{'preset':<10}{'users':>8}{'events':>12}{'whole s':>9}{'ev/s whole':>12}"
          f"{'ev/s walk':>12}{'peak MB':>9}")  # fmt: skip
    for row in rows + scaling:
        print(
            f"{row['preset']:<10}{row['users']:>8}{row['events']:>12,}{row['generate_s']:>9.2f}"
            f"{row['events_per_s']:>12,.0f}{row['walk_events_per_s']:>12,.0f}"
            f"{row['peak_rss_mb']:>9.0f}"
        )
    base = scaling[0]
    print("scaling (default catalog): time per event relative to 1x")
    for row in scaling:
        ratio = row["events"] / base["events"]
        per_event = (row["generate_s"] / row["events"]) / (base["generate_s"] / base["events"])
        print(f"  {ratio:5.1f}x events: {per_event:.2f}x time per event")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"presets": rows, "scaling": scaling}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]) or None)))
    else:
        main()
