"""The evaluation report as Markdown and plots, rendered from `report.json`'s content alone.

Plots (matplotlib, Agg backend, PNG): `hr_at_k.png` (HR@K against K for every model, the oracle
as a thick line above them), `mrr.png` (MRR at the largest K with its bootstrap interval) and
`hr_by_position.png` (HR at the largest K by position of the target in its session).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOTS = ("hr_at_k.png", "mrr.png", "hr_by_position.png")
BREAKDOWN_TITLES = {
    "listener_kind": "listener kind",
    "position": "position in session",
    "hour": "UTC hour",
    "target_song": "target song",
}


def natural_order(label: str) -> tuple[int, str]:
    """Sort key putting "2" before "10-19": the leading number first, if there is one (JSON
    files keep keys sorted as text, so every reader orders groups with this)."""
    digits = label[: len(label) - len(label.lstrip("0123456789"))]
    return (int(digits) if digits else -1, label)


def largest_k(report: dict[str, Any]) -> int:
    return int(report["protocol"]["config"]["ks"][-1])


def _interval(row: dict[str, Any], name: str) -> str:
    low, high = row[f"{name}_ci"]
    return f"{row[name]:.4f} [{low:.4f}, {high:.4f}]"


def render_markdown(report: dict[str, Any]) -> str:
    protocol, rows = report["protocol"], report["results"]
    ks, k = protocol["config"]["ks"], largest_k(report)
    lines = [
        "# nextsong evaluation",
        "",
        f"World `{protocol['data']}`, {protocol['period']} period, catalog of "
        f"{protocol['catalog']:,} songs, {protocol['targets']:,} targets in "
        f"{protocol['sessions_sampled']:,} sessions (oracle: {protocol['oracle_targets']:,} "
        f"targets in {protocol['oracle_sessions']:,} sessions). Evaluated in "
        f"{protocol['seconds']:.1f} s.",
        "",
    ]
    header = ["model", "kind", *(f"HR@{x}" for x in ks[:-1]), f"HR@{k} [95% CI]"]
    header += [f"MRR@{k} [95% CI]", f"NDCG@{k}", f"coverage@{k}", "popularity", "targets", "s"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["model"], row["kind"], *(f"{row[f'HR@{x}']:.4f}" for x in ks[:-1])]
        cells += [_interval(row, f"HR@{k}"), _interval(row, f"MRR@{k}"), f"{row[f'NDCG@{k}']:.4f}"]
        cells += [
            f"{row[f'coverage@{k}']:.3f}",
            f"{row[f'popularity_percentile@{k}']:.3f}",
            f"{row['targets']:,}",
            f"{row['fit_seconds'] + row['score_seconds']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if any(row["kind"] == "oracle" for row in rows):
        lines += ["", f"On the oracle's sessions only (equal targets), HR@{k} / MRR@{k}:", ""]
        lines += [
            f"- {row['model']}: {row['oracle_sample'][f'HR@{k}']:.4f} / "
            f"{row['oracle_sample'][f'MRR@{k}']:.4f}"
            for row in rows
            if row["oracle_sample"][f"HR@{k}"] is not None
        ]
    for name, title in BREAKDOWN_TITLES.items():
        if rows and name in rows[0]["breakdowns"]:
            lines += ["", f"## HR@{k} by {title}", "", *_breakdown_table(rows, name, k)]
    lines += ["", "## Protocol", ""]
    for key in ("sampling", "targets_rule", "exclusion", "ties", "intervals", "popularity"):
        lines.append(f"- {key}: {protocol[key]}")
    lines.append(f"- targets repeating an earlier song of their session: "
                 f"{protocol['repeat_target_share']:.2%}; targets never played in training: "
                 f"{protocol['new_target_share']:.2%}")  # fmt: skip
    return "\n".join(lines) + "\n"


def _breakdown_table(rows: list[dict[str, Any]], name: str, k: int) -> list[str]:
    groups = sorted(rows[0]["breakdowns"][name], key=natural_order)
    counts = [rows[0]["breakdowns"][name][g]["targets"] for g in groups]
    header = ["model", *(f"{g} ({n:,})" for g, n in zip(groups, counts, strict=True))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        found = row["breakdowns"][name]
        cells = [f"{found[g][f'HR@{k}']:.4f}" if g in found else "-" for g in groups]
        lines.append("| " + " | ".join([row["model"], *cells]) + " |")
    return lines


def plot_report(report: dict[str, Any], folder: Path) -> list[Path]:
    """Writes the three plots into `folder`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows, k = report["results"], largest_k(report)
    paths = [Path(folder) / name for name in PLOTS]

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        curve = row["hr_curve"]
        oracle = row["kind"] == "oracle"
        axis.plot(
            range(1, len(curve) + 1), curve, label=row["model"],
            color="black" if oracle else None, linewidth=3 if oracle else 1.5,
            linestyle="--" if oracle else "-",
        )  # fmt: skip
    axis.set(xlabel="K", ylabel="HR@K", title="Hit rate at K over the full catalog")
    axis.set_xlim(1, k)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    _save(figure, paths[0])

    figure, axis = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    names = [row["model"] for row in rows]
    means = [row[f"MRR@{k}"] for row in rows]
    errors = [
        [m - row[f"MRR@{k}_ci"][0] for m, row in zip(means, rows, strict=True)],
        [row[f"MRR@{k}_ci"][1] - m for m, row in zip(means, rows, strict=True)],
    ]
    axis.barh(names, means, xerr=errors, color="tab:blue", alpha=0.8, capsize=3)
    axis.invert_yaxis()
    axis.set(xlabel=f"MRR@{k} (95% bootstrap interval over sessions)", title=f"MRR@{k}")
    axis.grid(alpha=0.3, axis="x")
    _save(figure, paths[1])

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        groups = row["breakdowns"]["position"]
        labels = sorted(groups, key=natural_order)
        oracle = row["kind"] == "oracle"
        axis.plot(
            labels, [groups[g][f"HR@{k}"] for g in labels], marker="o", label=row["model"],
            color="black" if oracle else None, linewidth=3 if oracle else 1.5,
        )  # fmt: skip
    axis.set(xlabel="position of the target in its session", ylabel=f"HR@{k}")
    axis.set_title(f"HR@{k} by session position")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    _save(figure, paths[2])
    return paths


def _save(figure: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
