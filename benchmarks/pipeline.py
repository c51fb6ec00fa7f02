"""Benchmark of the main job on the demo country: stage timings of the classical pipeline
(no imagery embeddings, LightGBM) and of the default one (CNN and random features,
stack), peak memory, and zonal statistics against a plain exactextract call in the same
process.

Prints one JSON object. Run: ``.venv/bin/python benchmarks/pipeline.py [--world DIR]``
(the demo country is generated into a temporary folder when --world is not given).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
from exactextract import exact_extract

from povertymap.config import ModelConfig
from povertymap.engine import LocalEngine
from povertymap.features.population import POPULATION_SPEC
from povertymap.features.zonal import zonal_stats
from povertymap.io.configfile import read_config
from povertymap.pipeline import run
from povertymap.studyarea import load_study_area
from povertymap.world import generate

CLASSICAL_BLOCKS = ["nl", "pop", "img", "osm", "settle"]


def zonal_speed(study: Path, repeats: int = 3) -> dict[str, float]:
    """Seconds per polygon: povertymap's windowed kernel vs exactextract on the file."""
    area = load_study_area(read_config(study))
    source = area.rasters["population"]
    zones = area.grid
    plain_zones = gpd.GeoDataFrame(geometry=zones.geometry.values, crs=zones.crs).to_crs(source.crs)
    ours, plain = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        zonal_stats(source, zones, POPULATION_SPEC, engine=LocalEngine())
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        exact_extract(str(source.path), plain_zones, ["sum", "count"], output="pandas")
        plain.append(time.perf_counter() - start)
    n = len(zones)
    return {
        "polygons": n,
        "povertymap_us_per_polygon": 1e6 * min(ours) / n,
        "exactextract_us_per_polygon": 1e6 * min(plain) / n,
        "speed_ratio": min(plain) / min(ours),  # > 1: povertymap is faster
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--world", type=Path, help="folder of an existing demo country")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = args.world or Path(tmp) / "demo"
        if args.world is None:
            generate("demo", seed=7, out=world)
        study = world / "study.yaml"
        zonal = zonal_speed(study)
        default = read_config(study)
        classical = default.model_copy(
            update={
                "features": default.features.model_copy(update={"blocks": CLASSICAL_BLOCKS}),
                "model": ModelConfig(name="lightgbm"),
            }
        )
        jobs = {}
        for name, cfg in (("classical", classical), ("default", default)):
            start = time.perf_counter()
            result = run(cfg, runs=Path(tmp) / name, truth=world / "truth")
            jobs[name] = {
                "pipeline_s": round(time.perf_counter() - start, 1),
                "stages_s": result.metrics["timings_s"],
                "cv_r2": round(result.metrics["cv"]["r2"], 4),
            }
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {
        "world": "demo",
        "cells": result.metrics["n_cells"],
        "clusters": result.metrics["n_clusters"],
        "jobs": jobs,
        "peak_rss_mb": round(peak_mb, 1),
        "zonal": {k: round(v, 3) if isinstance(v, float) else v for k, v in zonal.items()},
        "python": sys.version.split()[0],
        "cores": len(os.sched_getaffinity(0)),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
