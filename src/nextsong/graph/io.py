"""Saving and loading the graph: tensors in safetensors, metadata in JSON, never pickle.

`DIR/graph/` holds `tensors.safetensors` (node features and the forward relations; the reverses
are rebuilt on loading by `add_reverses`, which halves the file), `graph.json` (node counts,
feature names, relations with their attribute names, the split and the world files it came
from) and `manifest.json` (checksums, split, sources). Loading checks the checksums, that the
graph was built from the world now in `DIR` with the split settings now in `DIR`, and that every
tensor has the shape and type the metadata says.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nextsong.errors import DataError
from nextsong.graph.build import NODE_TYPES, RELATIONS, add_reverses
from nextsong.split import check_split_settings
from nextsong.store import read_json, read_manifest, staged_dir, write_json, write_manifest
from nextsong.world import WORLD_KIND, check_sources

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

log = logging.getLogger(__name__)

GRAPH_KIND = "graph"
GRAPH_DIR = "graph"
TENSORS = "tensors.safetensors"
METADATA = "graph.json"


def save_graph(graph: HeteroData, metadata: dict[str, Any], folder: Path | str) -> Path:
    """Writes `graph` and its `metadata` to `folder/graph/` (replacing it once complete)."""
    from safetensors.torch import save_file

    path = Path(folder) / GRAPH_DIR
    tensors = {}
    for info in metadata["node_types"]:
        tensors[f"{info['node_type']}.x"] = graph[info["node_type"]].x
    for relation in metadata["relations"]:
        edge_type = tuple(relation["edge_type"])
        store = graph[edge_type]
        for name in _edge_tensor_names(relation):
            tensors[f"{_key(edge_type)}.{name}"] = store[name]
    with staged_dir(path, force=True) as stage:
        save_file({key: value.contiguous() for key, value in tensors.items()}, stage / TENSORS)
        write_json(stage / METADATA, metadata)
        write_manifest(stage, GRAPH_KIND, split=metadata["split"], sources=metadata["sources"])
    log.info("graph saved to %s (%d tensors)", path, len(tensors))
    return path


def load_graph(folder: Path | str) -> tuple[HeteroData, dict[str, Any]]:
    """The graph saved in `folder/graph/` and its metadata, checked against the world in `folder`.

    Raises DataError if the graph is missing, corrupt, or was built from another world or with
    other split settings than those `folder` holds now.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    path = folder / GRAPH_DIR
    if not path.is_dir():
        raise DataError(f"no graph in {folder}: run `nextsong graph --data {folder}` first")
    manifest = read_manifest(path, GRAPH_KIND)
    world_manifest = read_manifest(folder, WORLD_KIND, verify=False)
    check_sources(manifest.get("sources", {}), world_manifest, f"the graph in {path}")
    check_split_settings(manifest.get("split", {}), folder, f"the graph in {path}")
    metadata = read_json(path / METADATA)
    _check_layout(metadata, path / METADATA)
    try:
        tensors = load_file(path / TENSORS)
    except (SafetensorError, OSError) as error:
        raise DataError(f"{path / TENSORS} is not a readable safetensors file: {error}") from None
    return _assemble(tensors, metadata), metadata


def _check_layout(metadata: Any, path: Path) -> None:
    """The metadata must describe the node types and relations this code builds, in order."""
    try:
        nodes = [info["node_type"] for info in metadata["node_types"]]
        relations = [tuple(relation["edge_type"]) for relation in metadata["relations"]]
    except (KeyError, TypeError):
        raise DataError(f"{path} is not a nextsong graph description: rebuild the graph") from None
    if nodes != list(NODE_TYPES) or relations != list(RELATIONS):
        raise DataError(
            f"{path} holds node types {nodes} and relations {relations}; this nextsong builds "
            f"{list(NODE_TYPES)} and {list(RELATIONS)}: rebuild the graph"
        )


def _assemble(tensors: dict[str, Any], metadata: dict[str, Any]) -> HeteroData:
    """A HeteroData from the saved tensors, each checked against its shape in the metadata."""
    import torch
    from torch_geometric.data import HeteroData

    graph = HeteroData()
    for info in metadata["node_types"]:
        node, count = info["node_type"], info["count"]
        graph[node].x = _tensor(tensors, f"{node}.x", (count, len(info["features"])), torch.float32)
        graph[node].num_nodes = count
    for relation in metadata["relations"]:
        edge_type = tuple(relation["edge_type"])
        count, key = relation["count"], _key(edge_type)
        store = graph[edge_type]
        store.edge_index = _tensor(tensors, f"{key}.edge_index", (2, count), torch.int64)
        store.edge_weight = _tensor(tensors, f"{key}.edge_weight", (count,), torch.float32)
        if relation["edge_attr"]:
            shape = (count, len(relation["edge_attr"]))
            store.edge_attr = _tensor(tensors, f"{key}.edge_attr", shape, torch.float32)
    return add_reverses(graph)


def _tensor(tensors: dict[str, Any], key: str, shape: tuple[int, ...], dtype: Any) -> Any:
    if key not in tensors:
        raise DataError(f"the graph's {TENSORS} has no tensor {key!r}")
    value = tensors[key]
    if tuple(value.shape) != shape or value.dtype != dtype:
        raise DataError(
            f"the graph's tensor {key!r} is {value.dtype} {tuple(value.shape)}, "
            f"expected {dtype} {shape}"
        )
    return value


def _edge_tensor_names(relation: dict[str, Any]) -> tuple[str, ...]:
    names = ("edge_index", "edge_weight")
    return (*names, "edge_attr") if relation["edge_attr"] else names


def _key(edge_type: tuple[str, ...]) -> str:
    return "__".join(edge_type)
