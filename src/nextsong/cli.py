"""The `nextsong` command line: one thin command per pipeline step.

Commands parse options, call the library, and print; nothing else lives here. Heavy imports
(numpy, pyarrow, torch) happen inside the commands so `nextsong --help` answers at once. A
`NextsongError` (bad input) becomes a one-line message and exit code 2.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from nextsong.errors import ConfigError, NextsongError

if TYPE_CHECKING:
    from nextsong.recommend import Recommendations

app = typer.Typer(
    help="Predicts the next song a listener will play. See README.md for the flow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)

DEFAULT_DATA = Path("data/synthetic")
DataOption = Annotated[Path, typer.Option("--data", help="World folder to read.")]


@app.callback()
def _commands() -> None:
    """Keeps `nextsong` a group of commands even while only one is registered."""


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """'3/64' -> (3, 64); shards are numbered from 0."""
    if value is None:
        return None
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like i/N (e.g. 3/64), got {value!r}") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard {value}: i must be in 0..N-1")
    return index, count


@app.command()
def generate(
    preset: Annotated[str, typer.Option(help="tiny, small, default or large.")] = "default",
    seed: Annotated[int, typer.Option(help="Same preset and seed give the same bytes.")] = 7,
    out: Annotated[Path, typer.Option(help="Folder to write the world into.")] = DEFAULT_DATA,
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
    users: Annotated[int | None, typer.Option(help="Override the preset's listeners.")] = None,
    songs: Annotated[int | None, typer.Option(help="Override the preset's songs.")] = None,
    artists: Annotated[int | None, typer.Option(help="Override the preset's artists.")] = None,
    days: Annotated[int | None, typer.Option(help="Override the preset's days.")] = None,
    shards: Annotated[
        int | None, typer.Option(help="Override the preset's number of listener shards.")
    ] = None,
    shard: Annotated[
        str | None, typer.Option(help="Generate only shard i/N of a sharded preset.")
    ] = None,
    merge: Annotated[
        bool, typer.Option(help="Finish a world whose shards were generated apart.")
    ] = False,
    stats: Annotated[bool, typer.Option(help="Print the world's figures when done.")] = True,
) -> None:
    """Write a synthetic listening world: tables, hidden truth/ and manifest.json."""
    from nextsong.config import world_config
    from nextsong.synth import generate as synth

    config = world_config(
        preset, seed, n_users=users, n_songs=songs, n_artists=artists, n_days=days, n_shards=shards
    )
    started = time.perf_counter()
    shard_spec = parse_shard(shard)
    if shard_spec is not None:
        index, count = shard_spec
        if count != config.n_shards:
            raise ConfigError(
                f"--shard {shard}: preset {preset!r} has {config.n_shards} shards, so N must be "
                f"{config.n_shards}"
            )
        summary = synth.generate_shard(config, out, index)
        console.print(
            f"shard {index}/{count}: {summary.users:,} listeners, {summary.sessions:,} sessions, "
            f"{summary.events:,} events in {out} ({time.perf_counter() - started:.1f} s)"
        )
        return
    if merge:
        manifest = synth.merge_shards(config, out)
    else:
        with console.status("generating") as status:
            manifest = synth.generate_world(
                config, out, force=force, progress=lambda step: status.update(f"generating {step}")
            )
    counts = manifest["counts"]
    console.print(
        f"[bold]world[/bold] {out}: preset {preset}, seed {seed}, {counts['users']:,} listeners, "
        f"{counts['songs']:,} songs, {counts['artists']:,} artists, {counts['sessions']:,} "
        f"sessions, {counts['events']:,} events ({time.perf_counter() - started:.1f} s)"
    )
    if stats:
        _print_world_statistics(out)


def _print_world_statistics(world: Path) -> None:
    from rich.table import Table

    from nextsong.synth.stats import world_statistics

    figures = world_statistics(world)
    table = Table(title="What the world looks like (hidden truth used for listener kinds)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("skip rate", f"{figures['skip_rate']:.1%}")
    for kind, rate in figures["skip_rate_by_kind"].items():
        events = figures["events_by_kind"][kind]
        table.add_row(f"  {kind} listeners: skip rate (events)", f"{rate:.1%} ({events:,})")
    table.add_row("mean energy of plays 6-10h", f"{figures['energy_6_10h']:.3f}")
    table.add_row("mean energy of plays 18-23h", f"{figures['energy_18_23h']:.3f}")
    table.add_row(
        "share of a listener's plays in their top 3 genres", f"{figures['top3_genre_share']:.1%}"
    )
    table.add_row(
        "share of plays going to the top 1% of songs", f"{figures['top1pct_songs_play_share']:.1%}"
    )
    console.print(table)


@app.command("split")
def split_command(
    data: DataOption = DEFAULT_DATA,
    test_days: Annotated[float, typer.Option(help="Length of the test period (last days).")] = 7.0,
    validation_days: Annotated[
        float, typer.Option(help="Length of the validation period, just before test.")
    ] = 7.0,
) -> None:
    """Split the sessions by time; print the counts and cold start, write DIR/split.json."""
    from rich.table import Table

    from nextsong.split import PERIODS, SPLIT_FILE, SplitConfig, write_split

    payload = write_split(data, SplitConfig(test_days=test_days, validation_days=validation_days))
    cuts, counts = payload["split"], payload["counts"]
    table = Table(title=f"split of {data}")
    for column in ("period", "from", "events", "sessions", "users", "songs"):
        table.add_column(column, justify="left" if column in ("period", "from") else "right")
    starts = (cuts["period_start"], cuts["train_end"], cuts["validation_end"])
    for period, start in zip(PERIODS, starts, strict=True):
        row = counts[period]
        table.add_row(
            period, start[:16], *(f"{row[k]:,}" for k in ("events", "sessions", "users", "songs"))
        )
    console.print(table)
    cold = counts["cold_start"]
    console.print(
        f"cold start in test: {cold['test_users_unseen_in_train']:,} listeners and "
        f"{cold['test_songs_unseen_in_train']:,} songs never seen in training "
        f"({cold['test_events_of_unseen_songs']:,} test events of such songs)"
    )
    console.print(f"wrote {Path(data) / SPLIT_FILE}")


@app.command("edges")
def edges_command(data: DataOption = DEFAULT_DATA) -> None:
    """Edge tables of the training window (DIR/edges/), with the split DIR/split.json holds."""
    from rich.table import Table

    from nextsong.graph.edges import build_edges

    started = time.perf_counter()
    with console.status("computing the edges of the training window"):
        edges = build_edges(data)
    manifest = edges.manifest
    table = Table(title=f"edges of {data}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in manifest["counts"].items():
        table.add_row(f"{name}.parquet", f"{rows:,}")
    console.print(table)
    train = manifest["train"]
    console.print(
        f"from {train['events']:,} training events ({train['sessions']:,} sessions starting "
        f"before {manifest['split']['train_end']}, {train['users']:,} listeners, "
        f"{train['songs']:,} songs) into {edges.path} "
        f"({time.perf_counter() - started:.1f} s)"
    )


@app.command("graph")
def graph_command(
    data: DataOption = DEFAULT_DATA,
    draw_user: Annotated[
        int | None, typer.Option(help="Also draw this listener's neighbourhood as a PNG.")
    ] = None,
) -> None:
    """The heterogeneous graph of the training window (DIR/graph/); prints its summary."""
    from rich.table import Table

    from nextsong.graph.build import build_graph, graph_summary
    from nextsong.graph.io import save_graph

    started = time.perf_counter()
    with console.status("building the graph"):
        graph, metadata = build_graph(data)
        path = save_graph(graph, metadata, data)
    summary = graph_summary(graph)
    nodes = Table(title=f"graph of {data}: nodes")
    for column in ("type", "nodes", "features", "isolated"):
        nodes.add_column(column, justify="left" if column == "type" else "right")
    for row in summary["nodes"]:
        nodes.add_row(
            row["node_type"], f"{row['nodes']:,}", str(row["features"]), f"{row['isolated']:,}"
        )
    relations = Table(title="edges")
    for column in ("relation", "edges", "mean out-degree", "mean in-degree"):
        relations.add_column(column, justify="left" if column == "relation" else "right")
    for row in summary["relations"]:
        relations.add_row(
            "{} -{}-> {}".format(*row["edge_type"]),
            f"{row['edges']:,}",
            f"{row['mean_out_degree']:.1f}",
            f"{row['mean_in_degree']:.1f}",
        )
    console.print(nodes, relations)
    console.print(f"wrote {path} ({time.perf_counter() - started:.1f} s)")
    if draw_user is not None:
        from nextsong.graph.draw import draw_user as draw

        console.print(f"drew {draw(graph, data, draw_user, path / f'user_{draw_user}.png')}")


@app.command("import")
def import_(
    format_name: Annotated[
        str, typer.Argument(metavar="FORMAT", help="spotify, listenbrainz or lastfm.")
    ],
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH...", help="Export files, or a folder each.")
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the world into.")],
    user: Annotated[
        str | None, typer.Option(help="Listener of every play (default: each folder's name).")
    ] = None,
    session_gap: Annotated[
        float, typer.Option(help="Minutes without playback that end a session.")
    ] = 30.0,
    genres: Annotated[Path | None, typer.Option(help="CSV of artist,genre rows.")] = None,
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
) -> None:
    """Import real listening histories as a world without truth (see README, Importing)."""
    from nextsong.ingest import ImportConfig, import_world

    started = time.perf_counter()
    config = ImportConfig(
        format=format_name,
        session_gap_minutes=session_gap,
        user=user,
        genres_file=str(genres) if genres else None,
    )
    manifest = import_world(paths, out, config, force=force)
    counts, summary = manifest["counts"], manifest["import"]
    console.print(
        f"[bold]world[/bold] {out}: {counts['users']:,} listeners, {counts['songs']:,} songs, "
        f"{counts['artists']:,} artists, {counts['genres']:,} genres, {counts['sessions']:,} "
        f"sessions, {counts['events']:,} plays from {summary['records']:,} records in "
        f"{len(summary['files'])} files ({time.perf_counter() - started:.1f} s)"
    )
    left_out = ", ".join(f"{n:,} {why}" for why, n in summary["left_out"].items() if n)
    console.print(f"left out: {left_out or 'nothing'}", highlight=False)
    for example in summary["invalid_examples"]:
        console.print(f"  invalid: {example}", markup=False, highlight=False)


@app.command("evaluate")
def evaluate_command(
    data: DataOption = DEFAULT_DATA,
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated names (default: the oracle where there is a truth, every "
            "baseline, and the best run of every trained model)."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder (default DIR/report).")] = None,
    sessions: Annotated[
        int | None, typer.Option(help="Sessions sampled from the period (default 2000; 0 = all).")
    ] = None,
    oracle_sessions: Annotated[
        int | None, typer.Option(help="The oracle's nested sub-sample (default 1000; 0 = all).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the sampling (default 0).")] = None,
    period: Annotated[
        str | None, typer.Option(help="test (default), or validation to tune without test.")
    ] = None,
) -> None:
    """Rank the whole catalog for every next song of the test sessions; write the report."""
    from rich import box
    from rich.table import Table

    from nextsong.evaluate import EvaluationConfig, default_out, evaluate, write_report

    settings = {"sessions": sessions, "oracle_sessions": oracle_sessions, "seed": seed}
    settings["period"] = period
    config = EvaluationConfig(**{k: v for k, v in settings.items() if v is not None})
    names = [name.strip() for name in models.split(",") if name.strip()] if models else None
    with console.status("evaluating") as status:
        report = evaluate(data, names, config, progress=lambda step: status.update(step))
        path = write_report(report, out or default_out(data))
    k = config.k
    table = Table(
        title=f"{report['protocol']['period']} of {data}: full-catalog ranking",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    # NDCG and popularity are left to report.md, so the table fits 80 columns.
    columns = ["model", *(f"HR@{x}" for x in config.ks), f"MRR@{k}", f"cov@{k}", "s"]
    for column in columns:
        interval = column in (f"HR@{k}", f"MRR@{k}")
        table.add_column(
            column,
            justify="left" if column == "model" else "right",
            no_wrap=column == "model",
            min_width=11 if interval else None,
        )
    for row in report["results"]:
        # The largest K's HR and MRR with the half-width of their interval (exact bounds are in
        # report.md and report.json).
        hr, mrr = (
            f"{row[name]:.3f}±{(row[name + '_ci'][1] - row[name + '_ci'][0]) / 2:.3f}"
            for name in (f"HR@{k}", f"MRR@{k}")
        )
        table.add_row(
            row["model"],
            *(f"{row[f'HR@{x}']:.3f}" for x in config.ks[:-1]),
            hr,
            mrr,
            f"{row[f'coverage@{k}']:.3f}",
            f"{row['fit_seconds'] + row['score_seconds']:.1f}",
        )
    console.print(table)
    protocol = report["protocol"]
    console.print(
        f"{protocol['targets']:,} targets. {protocol['sampling']}. Intervals: "
        f"{protocol['intervals']}. {protocol['exclusion']} "
        f"({protocol['repeat_target_share']:.1%} of targets).",
        highlight=False,
    )
    console.print(
        f"wrote {path}: report.md has every metric, interval and breakdown "
        f"({protocol['seconds']:.1f} s)"
    )


@app.command("train")
def train_command(
    data: DataOption = DEFAULT_DATA,
    model: Annotated[
        str, typer.Option(help="nextsong, an ablation (nextsong-no-...), gru4rec or sasrec.")
    ] = "nextsong",
    epochs: Annotated[int | None, typer.Option(help="Most epochs (default 6).")] = None,
    patience: Annotated[
        int | None, typer.Option(help="Epochs without a better validation HR@20 (default 2).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    resume: Annotated[
        bool, typer.Option(help="Continue from this model's last checkpoint in DIR.")
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of everything (default 0).")] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE model setting, repeatable (README, The model)."),
    ] = None,
) -> None:
    """Train a neural model; write DIR/models/<run>/ and mark it best if it beats the last."""
    from nextsong.train import TrainOptions, parse_settings, train_run

    overrides = parse_settings(settings or [])
    for key, value in (("epochs", epochs), ("patience", patience), ("seed", seed)):
        if value is not None:
            overrides[key] = value

    def report(epoch: dict) -> None:
        console.print(
            f"epoch {epoch['epoch']:>2}  loss {epoch['loss']:.4f}  validation HR@20 "
            f"{epoch['validation HR@20']:.4f}  MRR@20 {epoch['validation MRR@20']:.4f}  "
            f"lr {epoch['lr']:.1e}  {epoch['seconds']:.1f} s" + ("  best" if epoch["best"] else ""),
            highlight=False,
        )

    options = TrainOptions(device=device, resume=resume, progress=True, report=report)
    result = train_run(data, model, overrides, options)
    if result["run"] is None:
        return  # a rank other than 0 under torchrun: rank 0 reports
    record = result["record"]
    console.print(
        f"[bold]{model}[/bold]: best epoch {record['best_epoch']} of {record['epochs']}, "
        f"validation HR@20 {record['best_validation_HR@20']:.4f}, MRR@20 "
        f"{record['best_validation_MRR@20']:.4f}; {record['seconds_to_best_epoch']:.0f} s to the "
        f"best epoch, peak memory {record['peak_memory_mb']:,.0f} MB, "
        f"{record['processes']} process(es) on {record['device']}"
    )
    marked = "marked best for its name" if result["best"] else "not better than the marked run"
    console.print(f"wrote {result['run']} ({marked})")


@app.command("recommend")
def recommend_command(
    user: Annotated[int, typer.Option(help="Listener id.")],
    data: DataOption = DEFAULT_DATA,
    k: Annotated[int, typer.Option(help="How many songs (1..100).")] = 5,
    hour: Annotated[
        int | None, typer.Option(help="UTC hour 0..23 (default: the session's start hour).")
    ] = None,
    session: Annotated[
        str | None,
        typer.Option(help="Song ids to continue, comma-separated (default: the latest session)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the JSON of ARCHITECTURE.md only.")
    ] = False,
    model: Annotated[str, typer.Option(help="Model whose best run recommends.")] = "nextsong",
    exclude_recent: Annotated[
        int, typer.Option(help="Leave out the listener's N most recently played songs.")
    ] = 0,
    max_per_artist: Annotated[
        int | None, typer.Option(help="At most M songs of one artist in the list.")
    ] = None,
) -> None:
    """Top-K next songs for a listener's session, with the reasons behind each."""
    import json

    from nextsong.recommend import RecommendService, Request, parse_session

    request = Request(
        user=user,
        k=k,
        hour=hour,
        session=parse_session(session),
        exclude_recent=exclude_recent,
        max_per_artist=max_per_artist,
    )
    answer = RecommendService(data, model).recommend(request)
    if json_output:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
        return
    _print_recommendations(answer)


def _print_recommendations(answer: Recommendations, why: int = 3) -> None:
    """The session, the top-K table, then the reasons of the `why` best songs."""
    from rich import box
    from rich.table import Table

    titles = answer.session_titles
    shown = ([f"… ({len(titles) - 8} earlier)"] if len(titles) > 8 else []) + titles[-8:]
    console.print(f"[bold]Your session:[/bold] {' -> '.join([*shown, '?'])}", highlight=False)
    source = {
        "given": "the session given",
        "latest": f"the latest session in the data, started {(answer.session_start or '')[:16]}",
        "none": "a new session (no session in the data)",
    }[answer.session_source]
    console.print(
        f"user {answer.user}, {source}; hour {answer.hour}h UTC; model {answer.model} "
        f"(run {answer.run})",
        style="dim",
        highlight=False,
    )
    table = Table(title=f"Top {len(answer.recommendations)} recommendations", box=box.SIMPLE_HEAD)
    for column in ("#", "title", "artist", "genre", "score", "reason"):
        table.add_column(column, justify="right" if column in ("#", "score") else "left")
    for item in answer.recommendations:
        table.add_row(
            str(item.rank), item.title, item.artist, item.genre, f"{item.score:.3g}",
            item.short_reason,
        )  # fmt: skip
    console.print(table)
    for item in answer.recommendations[:why]:
        console.print(f"[bold]Why was “{item.title}” recommended?[/bold]", highlight=False)
        if not item.reasons:
            console.print("  no reason in the training data holds: the model's score alone")
        reasons = Table.grid(padding=(0, 1))
        reasons.add_column(no_wrap=True)
        reasons.add_column(justify="right", no_wrap=True)
        reasons.add_column()
        for reason in item.reasons:
            reasons.add_row(f"  {reason.kind}", f"{reason.value:g}", reason.text)
        console.print(reasons, highlight=False)
    console.print("score: the model's probability of each song being next (README)", style="dim")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except NextsongError as error:
        error_console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
