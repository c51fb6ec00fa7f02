"""Benchmark of the local engine on cross-validation: wall time of ``out_of_fold`` over 5
folds of a LightGBM model on a synthetic 400 x 60 feature table, in this process
(``n_jobs=1``) and in two worker processes (``n_jobs=2``), in the same run, and whether the
predictions are identical (they must be).

The first parallel call also starts the worker pool; it is reported apart (``cold``), and
the times compared are the best of the warm repeats. Prints one JSON object. Run:
``.venv/bin/python benchmarks/engine.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial

import numpy as np
import pandas as pd

from povertymap.config import ModelConfig
from povertymap.engine import LocalEngine
from povertymap.models.classical import make_model
from povertymap.models.cv import out_of_fold, random_folds

N_ROWS, N_FEATURES, N_FOLDS = 400, 60, 5


def synthetic_table(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A feature table like a survey's (a few hundred clusters) and a nonlinear target."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        rng.normal(size=(N_ROWS, N_FEATURES)),
        columns=[f"nl_{i}" for i in range(N_FEATURES)],
        index=pd.Index([f"c{i}" for i in range(N_ROWS)], name="cluster_id"),
    )
    y = X["nl_0"].to_numpy() + np.sin(X["nl_1"].to_numpy()) + rng.normal(0, 0.5, N_ROWS)
    return X, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="warm timings per n_jobs")
    args = parser.parse_args()
    X, y = synthetic_table()
    folds = random_folds(N_ROWS, n_folds=N_FOLDS, random_state=0)
    make = partial(make_model, ModelConfig(name="lightgbm"))
    preds: dict[int, list[np.ndarray]] = {1: [], 2: []}
    times: dict[int, list[float]] = {1: [], 2: []}
    cold_s = None
    for n_jobs in (1, 2):
        engine = LocalEngine(n_jobs=n_jobs)
        for i in range(args.repeats + (n_jobs > 1)):
            start = time.perf_counter()
            pred, _ = out_of_fold(make, X, y, folds, engine=engine)
            elapsed = time.perf_counter() - start
            preds[n_jobs].append(pred)
            if n_jobs > 1 and i == 0:
                cold_s = elapsed  # includes starting the worker pool
            else:
                times[n_jobs].append(elapsed)
    serial, parallel = min(times[1]), min(times[2])
    reference = preds[1][0]
    summary = {
        "task": f"out_of_fold, LightGBM (defaults), {N_FOLDS} folds, {N_ROWS}x{N_FEATURES}",
        "n_jobs_1_s": round(serial, 3),
        "n_jobs_2_s": round(parallel, 3),
        "n_jobs_2_cold_s": round(cold_s or float("nan"), 3),
        "ratio_1_over_2": round(serial / parallel, 2),  # > 1: two workers are faster
        "identical": all(np.array_equal(p, reference) for p in preds[1] + preds[2]),
        "repeats": args.repeats,
        "python": sys.version.split()[0],
        "cores": len(os.sched_getaffinity(0)),
        "load_avg_1min": round(os.getloadavg()[0], 2),  # other work on the cores skews times
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
