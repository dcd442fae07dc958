"""The flow after `import`: split, edges and graph run on worlds imported from every format.

The fixtures span three to four days, so the split is one day of test and one of validation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nextsong.ingest import ImportConfig, import_world
from nextsong.split import SplitConfig, write_split

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
INPUTS = {
    "spotify": [FIXTURES / "spotify" / "alice", FIXTURES / "spotify" / "bob"],
    "listenbrainz": [FIXTURES / "listenbrainz"],
    "lastfm": [FIXTURES / "lastfm" / "erin", FIXTURES / "lastfm" / "frank"],
}
SHORT = SplitConfig(test_days=1, validation_days=1)


def _flow(world: Path) -> tuple[dict[str, Any], Any, Any]:
    """Runs split, edges and graph on `world`; returns the split's payload, edges and graph."""
    from nextsong.graph.build import build_graph
    from nextsong.graph.edges import build_edges

    split = write_split(world, SHORT)
    edges = build_edges(world)
    graph, _metadata = build_graph(world)
    return split, edges, graph


@pytest.mark.parametrize("format_name", sorted(INPUTS))
def test_split_edges_and_graph_run_on_an_imported_world(format_name: str, tmp_path: Path) -> None:
    world = tmp_path / "world"
    genres = str(FIXTURES / "genres.csv")
    manifest = import_world(
        INPUTS[format_name], world, ImportConfig(format_name, genres_file=genres)
    )
    split, edges, graph = _flow(world)
    counts = split["counts"]
    assert (
        sum(counts[period]["events"] for period in ("train", "validation", "test"))
        == (manifest["counts"]["events"])
    )
    assert counts["train"]["events"] > 0
    assert edges.manifest["train"]["events"] == counts["train"]["events"]
    assert graph["song"].num_nodes == manifest["counts"]["songs"]
    assert graph["user"].num_nodes == manifest["counts"]["users"]
    assert graph["genre"].num_nodes == manifest["counts"]["genres"]


def test_graph_runs_on_a_world_without_genres(tmp_path: Path) -> None:
    """Unknown genres (genre_id -1) give no genre edge and no genre node."""
    world = tmp_path / "world"
    import_world(INPUTS["spotify"], world, ImportConfig("spotify"))
    _split, edges, graph = _flow(world)
    assert edges.tables["song_genre"].num_rows == 0
    assert edges.tables["user_genre"].num_rows == 0
    assert graph["genre"].num_nodes == 0
    assert graph["song", "in", "genre"].edge_index.shape[1] == 0
    assert graph["song"].num_nodes > 0


def test_evaluate_runs_on_a_catalog_smaller_than_k(tmp_path: Path, run_cli) -> None:
    """An imported history of a few songs is ranked whole: K larger than the catalog is fine."""
    world = tmp_path / "world"
    import_world(INPUTS["spotify"], world, ImportConfig("spotify"))
    _flow(world)
    result = run_cli("evaluate", "--data", world, "--models", "popular,transitions")
    assert result.code == 0, result.stderr
    report = json.loads((world / "report" / "report.json").read_text())
    assert {row["model"] for row in report["results"]} == {"popular", "transitions"}
    for row in report["results"]:
        assert 0.0 <= row["HR@20"] <= 1.0


def test_train_and_recommend_run_on_a_world_without_genres(tmp_path: Path, run_cli) -> None:
    """The trained model gives an unknown genre its own embedding row; recommend explains from
    the training data without a genre reason."""
    world = tmp_path / "world"
    import_world(INPUTS["lastfm"], world, ImportConfig("lastfm"))
    _flow(world)
    trained = run_cli("train", "--data", world, "--set", "epochs=1")
    assert trained.code == 0, trained.stderr
    answer = run_cli("recommend", "--data", world, "--user", "0", "--k", "3", "--json")
    assert answer.code == 0, answer.stderr
    payload = json.loads(answer.stdout)
    assert len(payload["recommendations"]) == 3
    kinds = {r["kind"] for rec in payload["recommendations"] for r in rec["reasons"]}
    assert "genre" not in kinds
