"""The world a benchmark measures: the one given, else `data/synthetic` when it has the steps
the benchmark needs, else a default world generated (with split, edges and, if asked, the graph)
into a temporary folder that the caller deletes. Not a benchmark itself (run.py skips `_` files).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

DEFAULT_DATA = Path("data/synthetic")


def prepare_world(data: Path | None, prefix: str, graph: bool) -> tuple[Path, Path | None]:
    """The world to measure and a temporary folder to delete afterwards (or None)."""
    if data is not None:
        return data, None
    needed = "graph" if graph else "edges"
    if (DEFAULT_DATA / needed / "manifest.json").exists():
        return DEFAULT_DATA, None
    from nextsong.config import world_config
    from nextsong.graph.edges import build_edges
    from nextsong.split import write_split
    from nextsong.synth.generate import generate_world

    scratch = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    world = scratch / "default"
    print(f"generating a default world in {world} (about a minute)", flush=True)
    generate_world(world_config("default", seed=7), world)
    write_split(world)
    build_edges(world)
    if graph:
        from nextsong.graph.build import build_graph
        from nextsong.graph.io import save_graph

        save_graph(*build_graph(world), world)
    return world, scratch
