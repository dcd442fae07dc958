"""Benchmark: how fast `nextsong recommend` answers, cold and warm.

Takes a world with edges (`--data DIR`; by default `data/synthetic` when it has them, else a
`default` world, seed 7, generated with its split and edges into a temporary folder) and a model:
the best run of `--model` (default `nextsong` when it has a run, else `transitions`, which is then
fitted and saved as a run with `save_baseline_run`). It measures

- cold start: the wall time of the whole command `nextsong recommend --user 0` in a fresh process
  (the first run, which builds the explanation and history indexes if they are missing, and the
  median of three later runs);
- per request, in process: `RecommendService.recommend` for `--requests` listeners drawn with a
  fixed seed (k = 10, their latest session at its hour, reasons for every song): p50 and p99;
- batch throughput: `recommend_many` on batches of `--batch` requests (one model call per batch,
  then reasons per request): requests per second.

One thread (OMP_NUM_THREADS=1). Prints a table and writes `bench-results/recommend_latency.json`.

Run: `.venv/bin/python benchmarks/recommend_latency.py [--data DIR] [--model NAME]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _world import prepare_world

os.environ.setdefault("OMP_NUM_THREADS", "1")

RESULTS = Path("bench-results") / "recommend_latency.json"


def prepare_model(world: Path, name: str | None) -> tuple[str, str]:
    """(model name, how its run came about)."""
    from nextsong.models import runs
    from nextsong.recommend import save_baseline_run

    if name is None:
        name = "nextsong" if runs.read_best(world, "nextsong") else "transitions"
    if runs.read_best(world, name) is None:
        run = save_baseline_run(world, name)
        return name, f"fitted here as a baseline run ({run.name})"
    return name, f"its best run ({runs.best_run(world, name).name})"


def cold_start(world: Path, model: str) -> list[float]:
    command = [
        str(Path(sys.executable).with_name("nextsong")),
        "recommend", "--data", str(world), "--user", "0", "--model", model,
    ]  # fmt: skip
    times = []
    for _ in range(4):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def in_process(world: Path, model: str, requests: int, batch: int, seed: int) -> dict:
    import numpy as np

    from nextsong.recommend import RecommendService, Request

    started = time.perf_counter()
    service = RecommendService(world, model)
    open_seconds = time.perf_counter() - started
    users = np.random.default_rng(seed).integers(0, service.history.n_users, requests)
    asks = [Request(user=int(user), k=10) for user in users]
    for ask in asks[:20]:  # warm the page cache and the allocator
        service.recommend(ask)

    latencies = []
    for ask in asks:
        started = time.perf_counter()
        service.recommend(ask)
        latencies.append(time.perf_counter() - started)
    explain = []
    for ask in asks[:200]:
        answer = service.recommend(ask)
        started = time.perf_counter()
        service.explainer.explain(
            ask.user, answer.session, answer.hour, [r.song_id for r in answer.recommendations]
        )
        explain.append(time.perf_counter() - started)
    started = time.perf_counter()
    for start in range(0, requests, batch):
        service.recommend_many(asks[start : start + batch])
    batch_seconds = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {
        "open_seconds": round(open_seconds, 3),
        "requests": requests,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "explain_p50_ms": round(float(np.percentile(np.asarray(explain) * 1000, 50)), 2),
        "batch": batch,
        "batch_requests_per_second": round(requests / batch_seconds, 1),
        "users": service.history.n_users,
        "songs": service.catalog.n_songs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    world, scratch = prepare_world(args.data, "recommend-latency", graph=False)
    try:
        model, origin = prepare_model(world, args.model)
        cold = cold_start(world, model)
        figures = in_process(world, model, args.requests, args.batch, args.seed)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    figures.update(
        world=str(world),
        model=model,
        model_run=origin,
        threads=int(os.environ["OMP_NUM_THREADS"]),
        cold_first_seconds=round(cold[0], 2),
        cold_seconds=round(statistics.median(cold[1:]), 2),
    )
    rows = [
        ("world", f"{world} ({figures['users']:,} listeners, {figures['songs']:,} songs)"),
        ("model", f"{model}: {origin}"),
        ("cold start, first run (builds indexes if missing)", f"{cold[0]:.2f} s"),
        ("cold start, median of 3 later runs", f"{figures['cold_seconds']:.2f} s"),
        ("open in process (model, catalog, indexes)", f"{figures['open_seconds']:.2f} s"),
        (f"per request, p50 / p99 ({args.requests} listeners, k=10)",
         f"{figures['p50_ms']:.1f} / {figures['p99_ms']:.1f} ms"),
        ("of which reasons, p50", f"{figures['explain_p50_ms']:.1f} ms"),
        (f"batch throughput (batches of {args.batch})",
         f"{figures['batch_requests_per_second']:,.0f} requests/s"),
        ("threads", str(figures["threads"])),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
