"""Scale benchmark: features through rollout on countries of 10^4, 10^5 and 5x10^5 cells.

Each size is a synthetic country with the classical features (no imagery; nightlights,
population, OSM, settlements) and LightGBM: the simulator's ``large`` preset for the
largest, the same spec shrunk in extent (and in settlements, districts and clusters, in
proportion to its area) for the others. Each country is mapped in a fresh child process
(load, features, cross-validation, fit, rollout, out-of-area refits, area estimates), so
the peak resident memory reported is that job's alone (the child's ``getrusage``).

Prints one JSON object: per size the cells, clusters, seconds per stage (``timing.py``),
total seconds, cells per second and peak RSS; then the slope of log(seconds) against
log(cells) (1.0: linear). Never asserted in tests; figures go in docs/performance.md.

Run: ``.venv/bin/python benchmarks/scale.py [--sizes 1e4,1e5,5e5] [--engine local|spark]
[--worlds DIR] [--n-jobs N]``. Countries are generated into ``--worlds`` (default
``/tmp/povertymap-scale``) and reused on the next run. ``--engine spark`` needs the Spark
engine (``features.engine: spark``, the ``spark`` extra and Java 17); where it is not
available the size's entry says why instead of a timing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: Cells per km² of the large preset's bounding box (about 5x10^5 cells on 1000 x 1000 km).
_CELLS_PER_KM2 = 0.5
_LARGE_CELLS = 500_000


def spec_for(cells: int) -> Any:
    """A classical-feature country of about ``cells`` 1 km cells (the large preset's
    spec, shrunk in extent, settlements, districts and clusters for smaller sizes)."""
    from povertymap.world import PRESETS

    large = PRESETS["large"]
    if cells >= _LARGE_CELLS:
        return large
    side = math.sqrt(cells / _CELLS_PER_KM2)
    f = side**2 / (large.width_km * large.height_km)  # share of the large preset's area
    return large.with_(
        name=f"scale-{cells}",
        width_km=round(side, 1),
        height_km=round(side, 1),
        n_admin1=max(2, round(large.n_admin1 * f**0.5)),
        n_admin2=max(8, round(large.n_admin2 * f**0.5)),
        n_cities=max(1, round(large.n_cities * f)),
        n_towns=max(3, round(large.n_towns * f)),
        n_villages=max(30, round(large.n_villages * f)),
        n_clusters=max(200, round(large.n_clusters * f**0.5)),
        n_rivers=max(1, round(large.n_rivers * f**0.5)),
        block_cells=min(large.block_cells, 64),
    )


def world_for(cells: int, root: Path) -> Path:
    """The country's study.yaml, generated into ``root`` on first use."""
    from povertymap.world import generate

    spec = spec_for(cells)
    out = root / spec.name
    study = out / "study.yaml"
    if not study.exists():
        generate(spec, seed=7, out=out)
    return study


class _PeakTimer:
    """:class:`povertymap.timing.Timer` that also notes the process's peak RSS (MB) when
    each stage ends (the peak is monotonic: a jump names the stage that made it)."""

    def __init__(self) -> None:
        from povertymap.timing import Timer

        self._timer = Timer()
        self.peak_mb: dict[str, float] = {}

    @property
    def seconds(self) -> dict[str, float]:
        return self._timer.seconds

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        with self._timer.stage(name):
            yield
        self.peak_mb[name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child(study: Path, engine: str, n_jobs: int) -> dict[str, Any]:
    """One mapping job in this process: features through rollout and area estimates."""
    from povertymap.config import ModelConfig
    from povertymap.engine.base import get_engine
    from povertymap.io.configfile import read_config
    from povertymap.mapping import MappingModel
    from povertymap.pipeline import map_and_estimate
    from povertymap.studyarea import load_study_area

    cfg = read_config(study)
    features = cfg.features.model_copy(
        update={"blocks": ["nl", "pop", "osm", "settle"], "engine": engine, "n_jobs": n_jobs}
    )
    cfg = cfg.model_copy(update={"features": features, "model": ModelConfig(name="lightgbm")})
    timer = _PeakTimer()
    start = time.perf_counter()
    run_engine = get_engine(engine, n_jobs=n_jobs)
    with timer.stage("load"):
        area = load_study_area(cfg)
    model = MappingModel.from_config(cfg).fit(area, engine=run_engine, timer=timer)
    cells, _, metrics = map_and_estimate(
        model, area, model.training_, engine=run_engine, timer=timer
    )
    total = time.perf_counter() - start
    return {
        "cells": len(cells),
        "clusters": int(metrics["n_clusters"]),
        "stages_s": timer.seconds,
        "peak_rss_mb_after_stage": timer.peak_mb,
        "total_s": round(total, 1),
        "cells_per_s": round(len(cells) / total, 1),
        "cv_r2": round(float(metrics["cv"]["r2"]), 4),
        # this process's peak resident memory (Linux: KiB); the job runs alone in it
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def spark_available() -> str | None:
    """None when the Spark engine can run here, else why not."""
    try:
        from povertymap.engine.base import get_engine

        get_engine("spark")
    except Exception as exc:  # any failure means: not available here
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def measure(cells: int, root: Path, engine: str, n_jobs: int) -> dict[str, Any]:
    """Generate (or reuse) the country and map it in a child process; its peak RSS."""
    study = world_for(cells, root)
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import scale; "
        "print('RESULT ' + json.dumps(scale.child(__import__('pathlib').Path(sys.argv[2]), "
        "sys.argv[3], int(sys.argv[4]))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(study), engine, str(n_jobs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {"target_cells": cells, "error": proc.stderr.strip().splitlines()[-1:]}
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return {"target_cells": cells, **json.loads(line[len("RESULT ") :])}


def slope(results: list[dict[str, Any]]) -> float | None:
    """Least-squares slope of log(total seconds) on log(cells)."""
    ok = [r for r in results if "total_s" in r]
    if len(ok) < 2:
        return None
    x = np.log([r["cells"] for r in ok])
    y = np.log([r["total_s"] for r in ok])
    return round(float(np.polyfit(x, y, 1)[0]), 3)


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted(int(float(s)) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes wants numbers like 1e4,1e5, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1000:
        raise argparse.ArgumentTypeError(f"--sizes must be >= 1000 cells each, got {text!r}")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=_sizes("1e4,1e5,5e5"))
    parser.add_argument("--engine", choices=["local", "spark"], default="local")
    parser.add_argument("--n-jobs", type=int, default=1, help="local engine worker processes")
    parser.add_argument("--worlds", type=Path, default=Path("/tmp/povertymap-scale"))
    args = parser.parse_args()
    args.worlds.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"engine": args.engine, "n_jobs": args.n_jobs}
    unavailable = spark_available() if args.engine == "spark" else None
    if unavailable is not None:
        summary["unavailable"] = unavailable
        summary["results"] = [{"target_cells": n, "skipped": unavailable} for n in args.sizes]
    else:
        summary["results"] = [measure(n, args.worlds, args.engine, args.n_jobs) for n in args.sizes]
    summary["slope_log_seconds_per_log_cells"] = slope(summary["results"])
    summary["python"] = sys.version.split()[0]
    summary["cores"] = len(os.sched_getaffinity(0))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
