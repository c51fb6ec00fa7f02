"""Benchmark of the Spark engine's overhead: the main job (features through rollout,
out-of-area refits, estimates, write) on a simulated country, on the local engine in this
process and on Spark ``local[N]`` on the same machine, in the same run, and whether the
two maps are identical (they must be).

The Spark session (the JVM) is started before the Spark run and reported apart
(``spark_session_start_s``): a user pays it once per process, not per stage. Each run
gets its own cache folder, so the Spark run computes its image embeddings too. Prints one
JSON object. Run::

    .venv/bin/python benchmarks/spark_overhead.py [--preset tiny|demo] [--master local[2]]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from povertymap.engine import SparkEngine
from povertymap.io.configfile import read_config
from povertymap.pipeline import RunResult, run
from povertymap.rundir import open_run
from povertymap.world import generate

#: The stages timed by ``pipeline.run`` that run on the engine (the rest is driver work).
ENGINE_STAGES = ("features", "cross_validation", "rollout", "out_of_area")


def timed_run(study: Path, runs: Path, engine: str, master: str) -> tuple[float, RunResult]:
    """Wall seconds of ``pipeline.run`` on ``engine`` and its result."""
    cfg = read_config(study)
    features = cfg.features.model_copy(update={"engine": engine, "spark_master": master})
    cfg = cfg.model_copy(update={"features": features})
    start = time.perf_counter()
    result = run(cfg, runs=runs, run_id=f"bench-{engine}")
    return time.perf_counter() - start, result


def same_map(a: RunResult, b: RunResult) -> dict[str, Any]:
    """Whether two runs made the same cells and admin tables, and the largest difference."""
    ca, cb = open_run(a.path).cells(), open_run(b.path).cells()
    aa, ab = open_run(a.path).admin(), open_run(b.path).admin()
    cols = [c for c in ("raw_estimate", "estimate", "lower", "upper") if c in ca]
    admin_cols = [c for c in ("estimate", "lower", "upper") if c in aa]
    cell_diff = float(np.nanmax(np.abs(ca[cols].to_numpy(float) - cb[cols].to_numpy(float))))
    admin_diff = float(
        np.nanmax(np.abs(aa[admin_cols].to_numpy(float) - ab[admin_cols].to_numpy(float)))
    )
    return {
        "cells_identical": bool(ca.index.equals(cb.index) and cell_diff == 0.0),
        "admin_identical": bool(aa.index.equals(ab.index) and admin_diff == 0.0),
        "max_abs_diff_cells": cell_diff,
        "max_abs_diff_admin": admin_diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="tiny", help="simulator preset (tiny, demo)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--master", default="local[2]", help="Spark master of the Spark run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        study = generate(args.preset, seed=args.seed, out=root / "world")
        local_s, local = timed_run(study, root / "runs-local", "local", args.master)
        start = time.perf_counter()
        SparkEngine(master=args.master).session()  # the JVM, paid once per process
        session_s = time.perf_counter() - start
        spark_s, spark = timed_run(study, root / "runs-spark", "spark", args.master)
        t_local, t_spark = local.metrics["timings_s"], spark.metrics["timings_s"]
        summary = {
            "task": f"pipeline.run on the {args.preset} world (seed {args.seed}), "
            "features through rollout, out-of-area refits, estimates and write",
            "n_cells": local.metrics["n_cells"],
            "local_s": round(local_s, 2),
            "spark_s": round(spark_s, 2),
            "ratio_spark_over_local": round(spark_s / local_s, 2),
            "spark_session_start_s": round(session_s, 2),
            "spark_master": args.master,
            "stages_local_s": {k: t_local.get(k) for k in ENGINE_STAGES},
            "stages_spark_s": {k: t_spark.get(k) for k in ENGINE_STAGES},
            **same_map(local, spark),
            "partitioned_cells": sorted(p.name for p in (spark.path / "cells").iterdir()),
            "python": sys.version.split()[0],
            "cores": len(os.sched_getaffinity(0)),
            "load_avg_1min": round(os.getloadavg()[0], 2),  # other work on the cores skews
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
