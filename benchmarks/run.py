"""Runs every benchmark in this folder (`make bench`), one process each, one thread each.

A benchmark is any `benchmarks/*.py` file other than this one and files starting with `_`; each
prints its own table and writes its figures under `bench-results/`. Benchmarks measure speed
and memory side by side in one run; tests never time anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    scripts = sorted(
        path
        for path in here.glob("*.py")
        if path.name != "run.py" and not path.name.startswith("_")
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, str(script)], env=env, check=False)
        print(f"== {script.name}: exit {result.returncode}, {time.perf_counter() - started:.0f} s")
        if result.returncode:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
