"""Benchmark of the area simulation's memory (issue 16): ``simulate_area_intervals`` on a
square grid of cells with a correlated error field, area effects and a poverty line, with
draws in fixed batches of 100 against the default batch (bounded by ``BATCH_ELEMENTS``).
Each case runs in a fresh child process, whose peak RSS is reported with its seconds.

Prints one JSON object. Run: ``.venv/bin/python benchmarks/area_intervals.py [--side 700]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import numpy as np

CELL = 1000.0


def case(side: int, n_sims: int, batch: int | None, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """One simulation in this (child) process; puts seconds and peak RSS on ``out``."""
    from povertymap.estimate.aggregate import simulate_area_intervals
    from povertymap.estimate.spatial import ExponentialCovariance

    rng = np.random.default_rng(0)
    ix, iy = np.meshgrid(np.arange(side), np.arange(side))
    n = side * side
    admin2 = (ix // 25 * 1000 + iy // 25).ravel()
    admin1 = (ix // 100 * 1000 + iy // 100).ravel()
    cov = ExponentialCovariance(nugget=0.5, partial_sill=0.3, range_m=5000.0, admin2_sill=0.1)
    start = time.perf_counter()
    sims = simulate_area_intervals(
        rng.normal(0, 1, n),
        np.full(n, 0.4),
        rng.uniform(0, 100, n),
        {"admin2": admin2, "admin1": admin1},
        x=(ix.ravel() + 0.5) * CELL,
        y=(iy.ravel() + 0.5) * CELL,
        covariance=cov,
        n_sims=n_sims,
        rng=rng,
        poverty_line=0.0,
        within_sd=np.full(n, 0.5),
        area_effects={"admin2": (admin2.astype(str), cov.area_share("admin2"))},
        cell_size=CELL,
        batch=batch,
    )
    out.put(
        {
            "seconds": time.perf_counter() - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "admin2_areas": len(sims["admin2"]),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=700, help="grid side (cells)")
    parser.add_argument("--sims", type=int, default=1000, help="draws (the default config's)")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    rows = {}
    for name, batch in (("batch_100", 100), ("default", None)):
        queue = ctx.Queue()
        child = ctx.Process(target=case, args=(args.side, args.sims, batch, queue))
        child.start()
        rows[name] = queue.get()
        child.join()
    print(
        json.dumps(
            {
                "cells": args.side**2,
                "n_sims": args.sims,
                **rows,
                "rss_ratio": rows["default"]["peak_rss_mb"] / rows["batch_100"]["peak_rss_mb"],
            }
        )
    )


if __name__ == "__main__":
    main()
