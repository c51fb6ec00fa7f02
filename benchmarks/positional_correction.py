"""The positional correction (``estimate.position_draws``) where it fails; prints JSON.

``--world lifecycle`` (default) is the lifecycle tests' world (``tests/mlops/conftest.py``):
the tiny preset at 250 people per km², 160 clusters, its second survey round (lights
recalibrated by 1.6), a ridge on the nightlight, population, OSM and settlement blocks.
``--world base`` is the robustness benchmark's base world and job (LightGBM), where the
correction works. Each is run with
``position_draws`` 0 and 2, and each run prints one JSON row: cell coverage against the
truth (unweighted and by people), the correction's figures (``metrics["estimate"]
["position"]``), the residual budget of ``benchmarks/robustness.py`` and, with the
correction, how the clusters' predictions move when they are displaced once more: the
correlation of the prediction at the published and at the re-displaced location (per
draw) and percentiles of the per-cluster rise in squared error.

Run: ``.venv/bin/python benchmarks/positional_correction.py [--world lifecycle|base]
[--seed 7]`` (about two minutes on 2 cores). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from povertymap.config import FeaturesConfig, ModelConfig, StudyAreaConfig
from povertymap.io.configfile import read_config
from povertymap.io.survey import read_tabular
from povertymap.pipeline import run
from povertymap.world import PRESETS, generate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustness import BASE, WORLDS, job_config, residual_budget

#: The lifecycle tests' light job (tests/mlops/conftest.py).
LIGHT_BLOCKS = ["nl", "pop", "osm", "settle"]


def moved_figures(oof_csv: Path, intercept: float, slope: float) -> dict[str, Any]:
    """How the calibrated out-of-fold predictions change when clusters move once more."""
    oof = read_tabular(oof_csv)
    moved_cols = [c for c in oof.columns if c.startswith("pred_moved_")]
    y = oof["y"].to_numpy(dtype=float)
    pred = intercept + slope * oof["pred"].to_numpy(dtype=float)
    moved = intercept + slope * oof[moved_cols].to_numpy(dtype=float)
    rise = np.mean((y[:, None] - moved) ** 2, axis=1) - (y - pred) ** 2
    return {
        "corr_published_moved": [float(np.corrcoef(pred, m)[0, 1]) for m in moved.T],
        "rise_percentiles": dict(
            zip(
                ("p5", "p25", "p50", "p75", "p95", "p99"),
                np.percentile(rise, [5, 25, 50, 75, 95, 99]).round(4).tolist(),
                strict=True,
            )
        ),
        "rise_mean": float(rise.mean()),
    }


def job(study: Path, world: str, draws: int) -> StudyAreaConfig:
    """The world's job with ``estimate.position_draws = draws``."""
    if world == "base":
        return job_config(study, WORLDS["base"], position_draws=draws)
    cfg = read_config(study)
    return cfg.model_copy(
        update={
            "features": FeaturesConfig(blocks=LIGHT_BLOCKS),
            "model": ModelConfig(name="ridge"),
            "estimate": cfg.estimate.model_copy(update={"position_draws": draws}),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--world", choices=["lifecycle", "base"], default="lifecycle")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.world == "base":
            study = generate(BASE, seed=args.seed, out=root / "world")
        else:
            spec = PRESETS["tiny"].with_(population_density=250.0, n_clusters=160)
            study = generate(
                spec, seed=args.seed, out=root / "world", survey_round=2, lights_gain=1.6
            )
        truth = study.parent / "truth"
        for draws in (0, 2):
            cfg = job(study, args.world, draws)
            result = run(cfg, runs=root / f"runs{draws}", truth=truth)
            est, scored = result.metrics["estimate"], result.metrics["truth"]["estimate"]
            row: dict[str, Any] = {
                "world": args.world,
                "seed": args.seed,
                "position_draws": draws,
                "cell_coverage": scored["cell_coverage"],
                "cell_coverage_pop_weighted": scored["cell_coverage_pop_weighted"],
                "position": est.get("position"),
                **residual_budget(result.path, truth),
            }
            if draws:
                cal = est["calibration"]
                row.update(moved_figures(result.path / "oof.csv", cal["intercept"], cal["slope"]))
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
