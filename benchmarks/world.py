"""Benchmark the synthetic-country generator: wall time, CPU time and peak memory per preset.

Each preset runs in a fresh child process (so peak memory is that preset's alone, read
from the child's own ``getrusage``); the results print as one JSON document.

    python benchmarks/world.py                      # tiny and demo
    python benchmarks/world.py --presets large      # the 1000 x 1000 km country (minutes)
    python benchmarks/world.py --presets demo --cores 2   # pinned to two cores

Targets: demo within 60 s on 2 cores and 2 GB; large under 2 GB of peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from povertymap.world import generate
preset, seed, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
t0 = time.perf_counter()
generate(preset, seed=seed, out=out, overwrite=True)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
files = [p for p in out.rglob("*") if p.is_file()]
print(json.dumps({
    "generate_wall_s": round(wall, 2),
    "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
    "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
    "files": len(files),
    "output_mb": round(sum(p.stat().st_size for p in files) / 2**20, 1),
    "world": {k: v for k, v in json.loads((out / "truth" / "world.json").read_text()).items()
              if k in ("population", "households", "cells", "clusters", "national_headcount",
                       "pmt_r2", "dark_populated_cell_share", "registry_households")},
}))
"""


def run_preset(preset: str, seed: int, out: Path, cores: int | None) -> dict[str, object]:
    """Generate ``preset`` in a child process and return its measurements."""
    cmd = [sys.executable, "-c", _CHILD, preset, str(seed), str(out)]
    if cores:
        cmd = ["taskset", "-c", f"0-{cores - 1}", *cmd]
    env = dict(os.environ, OMP_NUM_THREADS=str(cores or os.cpu_count() or 1))
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:], "wall_s": round(wall, 2)}
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(wall, 2)  # includes the interpreter and imports
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "demo"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cores", type=int, default=None, help="pin to the first N cores")
    parser.add_argument("--keep", type=Path, default=None, help="keep outputs in this folder")
    args = parser.parse_args()
    machine = {"cpus": os.cpu_count(), "pinned_cores": args.cores, "python": sys.version.split()[0]}
    results: dict[str, object] = {"machine": machine}
    with tempfile.TemporaryDirectory(prefix="world-bench-") as tmp:
        base = args.keep if args.keep is not None else Path(tmp)
        for preset in args.presets:
            out = base / preset
            results[preset] = run_preset(preset, args.seed, out, args.cores)
            print(f"{preset}: {results[preset]}", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
