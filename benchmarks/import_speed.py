"""Benchmark: how fast `nextsong import` turns a million plays into a world, and its memory.

For each format, writes one export file of `--plays` plays (default 1,000,000) in a temporary
folder, as the service would (Spotify: one extended-history JSON array with every field, 2% of
it podcasts; ListenBrainz: JSON lines; Last.fm: a headerless CSV with date strings), then times
`import_world` on it (reading, checking every record, identities, sessions, writing Parquet) in
a fresh process on one thread, and reports plays per second and peak resident memory. The
budget is 30 s for a million plays. Run: `.venv/bin/python benchmarks/import_speed.py`
(`--plays 200000 --formats lastfm` for a quick look; also part of `make bench`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

RESULTS = Path("bench-results") / "import_speed.json"
BUDGET_S = 30.0
FORMATS = ("spotify", "listenbrainz", "lastfm")
FILE_NAMES = {
    "spotify": "Streaming_History_Audio_2005-2024.json",
    "listenbrainz": "listens.jsonl",
    "lastfm": "scrobbles.csv",
}
N_ARTISTS, N_SONGS = 5_000, 50_000
START = datetime(2005, 1, 1, tzinfo=UTC).timestamp()


def plays(n: int, seed: int = 7) -> dict[str, np.ndarray]:
    """n plays in sessions of about 12: songs by Zipf popularity, 2-6 min long, 20% skipped."""
    rng = np.random.default_rng(seed)
    song = np.minimum(rng.zipf(1.3, n) - 1, N_SONGS - 1)
    length_ms = 120_000 + (song * 7_919) % 240_000
    skipped = rng.random(n) < 0.2
    played_ms = np.where(skipped, rng.integers(1_000, 30_000, n), length_ms)
    new_session = rng.random(n) < 1 / 12
    # Breaks of 30 min to 2 h between sessions keep a million plays within about 18 years.
    gap_s = np.where(new_session, rng.integers(1_800, 7_200, n), rng.integers(0, 5, n))
    start_s = START + np.cumsum(played_ms // 1000 + gap_s) - played_ms // 1000
    return {"song": song, "played_ms": played_ms, "skipped": skipped, "start_s": start_s}


def write_export(format_name: str, n: int, folder: Path) -> Path:
    drawn = plays(n)
    path = folder / FILE_NAMES[format_name]
    writer = {"spotify": _spotify, "listenbrainz": _listenbrainz, "lastfm": _lastfm}[format_name]
    writer(drawn, path)
    return path


def _names(song: int) -> tuple[str, str]:
    return f"Artist {song % N_ARTISTS}", f"Song {song}"


def _spotify(drawn: dict[str, np.ndarray], path: Path) -> None:
    records = []
    podcast = np.random.default_rng(1).random(len(drawn["song"])) < 0.02
    for song, played, skipped, start, is_podcast in zip(
        drawn["song"].tolist(),
        drawn["played_ms"].tolist(),
        drawn["skipped"].tolist(),
        drawn["start_s"].tolist(),
        podcast.tolist(),
        strict=True,
    ):
        artist, title = _names(song)
        end = datetime.fromtimestamp(start + played / 1000, tz=UTC)
        records.append(
            {
                "ts": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "platform": "Android OS 14 API 34 (Google, Pixel 8)",
                "ms_played": played,
                "conn_country": "SE",
                "ip_addr": "192.0.2.1",
                "master_metadata_track_name": None if is_podcast else title,
                "master_metadata_album_artist_name": None if is_podcast else artist,
                "master_metadata_album_album_name": None if is_podcast else f"Album {song // 10}",
                "spotify_track_uri": None if is_podcast else f"spotify:track:{song:022d}",
                "episode_name": "An episode" if is_podcast else None,
                "episode_show_name": "A show" if is_podcast else None,
                "spotify_episode_uri": "spotify:episode:1" if is_podcast else None,
                "audiobook_title": None,
                "audiobook_uri": None,
                "audiobook_chapter_uri": None,
                "audiobook_chapter_title": None,
                "reason_start": "trackdone",
                "reason_end": "fwdbtn" if skipped else "trackdone",
                "shuffle": False,
                "skipped": skipped,
                "offline": False,
                "offline_timestamp": None,
                "incognito_mode": False,
            }
        )
    path.write_text(json.dumps(records))


def _listenbrainz(drawn: dict[str, np.ndarray], path: Path) -> None:
    with open(path, "w") as handle:
        for song, start in zip(drawn["song"].tolist(), drawn["start_s"].tolist(), strict=True):
            artist, title = _names(song)
            listen = {
                "listened_at": int(start),
                "user_name": "bench",
                "track_metadata": {
                    "artist_name": artist,
                    "track_name": title,
                    "release_name": f"Album {song // 10}",
                    "additional_info": {"duration_ms": 120_000 + (song * 7_919) % 240_000},
                },
            }
            handle.write(json.dumps(listen) + "\n")


def _lastfm(drawn: dict[str, np.ndarray], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        for song, start in zip(drawn["song"].tolist(), drawn["start_s"].tolist(), strict=True):
            artist, title = _names(song)
            when = datetime.fromtimestamp(start, tz=UTC).strftime("%d %b %Y %H:%M")
            writer.writerow([artist, f"Album {song // 10}", title, when])


def _cpu_s() -> float:
    """CPU seconds of this process: with the cores shared, wall time also counts the waiting."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(format_name: str, n: int) -> dict:
    """Runs in the child process: write the export, then time the import alone."""
    from nextsong.ingest import ImportConfig, import_world

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        path = write_export(format_name, n, Path(folder))
        written = time.perf_counter() - started
        size_mb = path.stat().st_size / 1e6
        started, cpu = time.perf_counter(), _cpu_s()
        manifest = import_world([path], Path(folder) / "world", ImportConfig(format_name, user="b"))
        seconds, cpu = time.perf_counter() - started, _cpu_s() - cpu
    return {
        "format": format_name,
        "plays_in_file": n,
        "file_mb": round(size_mb, 1),
        "write_export_s": round(written, 2),
        "import_s": round(seconds, 2),
        "import_cpu_s": round(cpu, 2),
        "plays_per_s": round(n / seconds),
        "events": manifest["counts"]["events"],
        "sessions": manifest["counts"]["sessions"],
        "left_out": {k: v for k, v in manifest["import"]["left_out"].items() if v},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "within_budget": seconds < BUDGET_S * n / 1_000_000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=1_000_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.plays)))
        return 0

    env = {**os.environ, "OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1"}
    rows = []
    for format_name in args.formats.split(","):
        child = [sys.executable, __file__, "--child", format_name, "--plays", str(args.plays)]
        result = subprocess.run(child, env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        row = rows[-1]
        print(
            f"{row['format']:>12}: {row['plays_in_file']:,} plays ({row['file_mb']} MB) imported "
            f"in {row['import_s']:.1f} s ({row['import_cpu_s']:.1f} CPU s) = "
            f"{row['plays_per_s']:,} plays/s, peak "
            f"{row['peak_rss_mb']:,} MB; {row['events']:,} events, {row['sessions']:,} sessions, "
            f"left out {row['left_out']}",
            flush=True,
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"threads": 1, "budget_s_per_million": BUDGET_S, "runs": rows}))
    print(f"wrote {RESULTS}")
    return 0 if all(row["within_budget"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
