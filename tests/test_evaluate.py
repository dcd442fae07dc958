"""The evaluation on the tiny world: the ceiling holds, transitions beat popularity, every number
is a valid probability and repeats for a seed, and the report is complete."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nextsong.errors import ConfigError
from nextsong.evaluate import (
    EvaluationConfig,
    build_targets,
    evaluate,
    resolve_models,
    write_report,
)
from nextsong.models import registry, runs
from nextsong.models.base import TrainingData
from nextsong.models.registry import ModelSpec
from nextsong.report import PLOTS
from nextsong.split import make_split, split_events
from nextsong.store import read_manifest
from nextsong.world import load_world

BASELINES = ["popular", "popular_recent", "user_history", "transitions", "sknn", "vsknn"]
# Every session of the tiny test period, the oracle on all of them: equal targets for every row.
ALL = EvaluationConfig(sessions=0, oracle_sessions=0, bootstrap_resamples=300)


@pytest.fixture(scope="module")
def report(tiny_world: Path) -> dict:
    return evaluate(tiny_world, ["oracle", *BASELINES], ALL)


def rows_by_model(report: dict) -> dict[str, dict]:
    return {row["model"]: row for row in report["results"]}


def test_the_oracle_beats_every_baseline(report: dict) -> None:
    rows = rows_by_model(report)
    oracle = rows.pop("oracle")
    for name, row in rows.items():
        assert row["targets"] == oracle["targets"]
        for metric in ("HR@5", "HR@10", "HR@20", "MRR@20", "NDCG@20"):
            assert oracle[metric] > row[metric], f"{name} {metric}"
        # Not just by luck: the oracle's interval lies above each baseline's point estimate.
        assert oracle["MRR@20_ci"][0] > row["MRR@20"], name


def test_first_order_transitions_beat_popularity(report: dict) -> None:
    rows = rows_by_model(report)
    for metric in ("HR@20", "MRR@20"):
        assert rows["transitions"][f"{metric}_ci"][0] > rows["popular"][f"{metric}_ci"][1]


def test_every_metric_is_in_the_unit_interval(report: dict) -> None:
    for row in report["results"]:
        values = [v for key, v in row.items() if "@" in key and not key.endswith("_ci")]
        values += [*row["HR@20_ci"], *row["MRR@20_ci"], *row["hr_curve"]]
        for groups in row["breakdowns"].values():
            values += [g[m] for g in groups.values() for m in ("HR@20", "MRR@20")]
        assert all(0.0 <= v <= 1.0 for v in values), row["model"]
        for name in ("HR@20", "MRR@20"):
            low, high = row[f"{name}_ci"]
            assert low <= row[name] <= high
        assert row["HR@5"] <= row["HR@10"] <= row["HR@20"]
        assert row["MRR@20"] <= row["NDCG@20"] <= row["HR@20"]
        assert np.all(np.diff(row["hr_curve"]) >= 0)
        assert row["hr_curve"][-1] == pytest.approx(row["HR@20"])


def test_breakdowns_cover_every_target(report: dict) -> None:
    for row in report["results"]:
        assert set(row["breakdowns"]) == {"position", "hour", "target_song", "listener_kind"}
        for name, groups in row["breakdowns"].items():
            assert sum(g["targets"] for g in groups.values()) == row["targets"], name
            weighted = sum(g["targets"] * g["HR@20"] for g in groups.values()) / row["targets"]
            assert weighted == pytest.approx(row["HR@20"])
        assert set(row["breakdowns"]["listener_kind"]) <= {"casual", "regular", "power"}
        assert list(row["breakdowns"]["position"]) == ["1", "2", "3-4", "5-9", "10-19", "20+"]


def test_results_repeat_for_a_seed_and_sampling_follows_it(tiny_world: Path) -> None:
    config = EvaluationConfig(sessions=300, bootstrap_resamples=200, seed=3)

    def strip(found: dict) -> list[dict]:
        return [
            {k: v for k, v in row.items() if not k.endswith("seconds")} for row in found["results"]
        ]

    first = evaluate(tiny_world, ["transitions", "vsknn"], config)
    again = evaluate(tiny_world, ["transitions", "vsknn"], config)
    assert strip(first) == strip(again)
    other = evaluate(tiny_world, ["transitions"], dataclasses.replace(config, seed=4))
    assert other["results"][0]["HR@20"] != first["results"][0]["HR@20"]
    assert first["protocol"]["sessions_sampled"] == 300


def test_targets_follow_the_protocol(tiny_world: Path) -> None:
    world = load_world(tiny_world)
    parts = split_events(world, make_split(world))
    targets = build_targets(parts["test"], EvaluationConfig(sessions=50, oracle_sessions=20))
    assert (targets.position >= 1).all()
    assert len(np.unique(targets.session_id)) == 50
    assert len(np.unique(targets.session_id[targets.oracle])) == 20
    batch = targets.batch(np.arange(len(targets)))
    # Each target sees exactly the songs before it in its session, latest last.
    test = parts["test"]
    for i in (0, len(targets) // 2, len(targets) - 1):
        session = test.filter(test["session_id"] == targets.session_id[i]).sort("position")
        before = session["song_id"].to_list()[: targets.position[i]]
        row = batch.songs[i]
        assert row[row >= 0].tolist() == before
        assert session["song_id"][int(targets.position[i])] == targets.song[i]


def test_report_files(report: dict, tmp_path: Path) -> None:
    out = write_report(report, tmp_path / "report")
    read_manifest(out, "report")  # checksums verified
    saved = json.loads((out / "report.json").read_text())
    assert set(saved) == {"protocol", "results"}
    assert [row["model"] for row in saved["results"]] == ["oracle", *BASELINES]
    assert {"HR@10", "HR@20", "MRR@20", "NDCG@20"} <= set(saved["results"][0])
    markdown = (out / "report.md").read_text()
    for name in ["oracle", *BASELINES]:
        assert f"| {name} |" in markdown
    for plot in PLOTS:
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second report replaces the first; a folder of other files is never replaced.
    write_report(report, out)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a nextsong report"):
        write_report(report, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").exists()


def test_trained_runs_are_found_without_code_changes(
    tiny_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model registered as `trained` whose best run is marked in DIR/models/ joins the default
    evaluation, loaded from its folder rather than fitted."""
    data = tmp_path / "world"
    shutil.copytree(tiny_world, data)
    spec = ModelSpec("copycat", registry.get("transitions").cls, "trained")
    monkeypatch.setitem(registry._REGISTRY, "copycat", spec)
    world = load_world(data)
    with pytest.raises(ConfigError, match="no trained run"):
        resolve_models(data, world, ["copycat"])

    split = make_split(world)
    model = spec.create().fit(TrainingData.from_world(world, split_events(world, split), split))
    run = model.save(runs.new_run_dir(data, "copycat"))
    assert runs.mark_if_better(data, "copycat", run, "validation HR@20", 0.3)
    entries = resolve_models(data, world, None)
    assert [e.name for e in entries] == ["oracle", *BASELINES, "copycat"]
    assert entries[-1].run == run

    found = evaluate(data, ["transitions", "copycat"], EvaluationConfig(sessions=200))
    transitions, copycat = found["results"]
    assert copycat["run"] == run.name
    assert copycat["HR@20"] == transitions["HR@20"]


def test_bad_requests_name_what_is_valid(tiny_world: Path, tmp_path: Path) -> None:
    world = load_world(tiny_world)
    with pytest.raises(ConfigError, match="registered models"):
        resolve_models(tiny_world, world, ["nope"])
    bare = dataclasses.replace(world, path=tmp_path)  # a world without truth/
    with pytest.raises(ConfigError, match="truth"):
        resolve_models(tmp_path, bare, ["oracle"])
    assert "oracle" not in [e.name for e in resolve_models(tmp_path, bare, None)]
    with pytest.raises(ConfigError, match="period"):
        EvaluationConfig(period="train")
    with pytest.raises(ConfigError, match="ks"):
        EvaluationConfig(ks=(20, 10))


def test_evaluate_command(tiny_world: Path, tmp_path: Path, run_cli) -> None:
    out = tmp_path / "report"
    done = run_cli(
        "evaluate", "--data", tiny_world, "--models", "popular,transitions", "--out", out,
        "--sessions", "100",
    )  # fmt: skip
    assert done.code == 0, done.stderr
    assert "transitions" in done.stdout
    assert (out / "report.md").exists()
    failed = run_cli("evaluate", "--data", tiny_world, "--models", "nope", "--out", out)
    assert failed.code == 2
    assert "unknown model 'nope'" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
