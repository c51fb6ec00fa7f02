"""Robustness of the main job across simulated worlds: the estimation methods judged on
many countries, not on the demo alone (issue 12).

Each world of :data:`WORLDS` is a variation of one small base country (:data:`BASE`) in
what matters for the methods: extent and density, the urban system, how lit the country
is, the survey's households per cluster, number of clusters and spatial spread, and the
imagery's format. For each, the benchmark generates the country into a temporary folder,
runs the main job on it as a user would (``povertymap.pipeline.run`` on the ``study.yaml``
the generator writes, scored against the world's ``truth/``) and prints one JSON row: map
and dark-cell r² against the truth, CV r² and its gap to the truth r², cell 90 % interval
coverage overall/urban/rural, mean interval width relative to the spread of the true
cell values, admin-2 coverage of the map and of Fay-Herriot, the calibration slope,
targeting exclusion errors of the map, the nightlights-only map and the oracles, the
world's parameters that differ from the base and the seconds taken.

The job uses the tabular blocks (``nl, pop, img, osm, settle``) with LightGBM instead of
the generator's default stack with the CNN and random-feature embeddings (``cnn, rcf``),
which is two to three times slower; ``--deep`` runs the generator's config unchanged.

Run: ``.venv/bin/python benchmarks/robustness.py [--worlds a,b] [--seed 7] [--out DIR]
[--json FILE] [--markdown] [--deep] [--position-draws N]``; ``--rows FILE --markdown``
prints the table of recorded rows without running anything, and ``--rows F7 F8 F9`` the
table of the worlds they share over their seeds. Nothing is asserted: rows go
to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from povertymap.config import ModelConfig, StudyAreaConfig
from povertymap.config.estimate import WithinSd
from povertymap.estimate.direct import within_sd
from povertymap.io.artifacts import read_json
from povertymap.io.configfile import read_config
from povertymap.io.survey import read_clusters, read_households, read_tabular
from povertymap.io.writers import write_json
from povertymap.pipeline import run
from povertymap.rundir import open_run
from povertymap.world import PRESETS, WorldSpec, generate

#: Feature blocks of the job (the generator's config minus the deep ``cnn`` and ``rcf``).
CLASSICAL_BLOCKS = ["nl", "pop", "img", "osm", "settle"]

#: The truth column the intervals are scored against: the realised (people-weighted) mean
#: log consumption of a cell, the estimand of the default ``cell_target: realized``.
TRUE_MEAN = "mean_log_consumption"
#: The expected (superpopulation) cell mean, the estimand of ``cell_target: expected`` and
#: of any run without the survey's households.
EXPECTED_MEAN = "expected_mean_log_consumption"

#: The base country: the demo's settings on a smaller extent (80 x 60 km, about 190,000
#: people in 24 admin-2 units) and EAs of 50 households, so that even 600 clusters are a
#: sample of the EAs (about 830) and not a census of them.
BASE = PRESETS["demo"].with_(
    name="base",
    width_km=80,
    height_km=60,
    n_admin1=4,
    n_admin2=24,
    n_cities=2,
    n_towns=12,
    n_villages=180,
    n_clusters=300,
    ea_households=50,
)


@dataclass(frozen=True)
class World:
    """A variation of :data:`BASE`: the fields it changes, why, and generate()'s imagery."""

    reason: str
    changes: dict[str, Any] = field(default_factory=dict)
    imagery: str = "uint8"  # generate(imagery=...): "uint8" (default) or "sentinel2"
    households: bool = True  # False: the survey gives cluster means only
    cell_target: str = "realized"  # estimate.cell_target of the job
    #: with cluster means only: declare ``estimate.within_sd`` as a survey report gives it
    declared_within_sd: bool = False

    def spec(self, name: str) -> WorldSpec:
        return BASE.with_(name=name, **self.changes)

    def varied(self) -> dict[str, Any]:
        """What differs from the base (spec fields, imagery format and the job's survey)."""
        out = dict(self.changes)
        if self.imagery != "uint8":
            out["imagery"] = self.imagery
        if not self.households:
            out["households"] = False
        if self.declared_within_sd:
            out["within_sd"] = "declared"
        if self.cell_target != "realized":
            out["cell_target"] = self.cell_target
        return out


#: The worlds of the table, each with the one-line reason it is there.
WORLDS: dict[str, World] = {
    "base": World("reference: the demo's settings on 80 x 60 km, 300 clusters of 25 households"),
    "sparse_large": World(
        "a larger, sparse country (4x the area, a quarter of the density) mapped on 2 km cells "
        "to stay fast: long distances, few people per cell, more admin-2 units",
        {
            "width_km": 160,
            "height_km": 130,
            "population_density": 20.0,
            "cell_size_m": 2000.0,
            "n_admin1": 5,
            "n_admin2": 40,
        },
    ),
    "primate_city": World(
        "one primate city holding 90 % of the urban people: few urban clusters outside it",
        dict(n_cities=1, city_share=0.9),
    ),
    "bright": World(
        "strongly lit: a low detection floor and a high saturation, so lights rank more cells",
        dict(lights_floor=0.15, lights_saturation=250.0),
    ),
    "dark": World(
        "almost unlit: a high detection floor, so only town and city cores emit",
        dict(lights_floor=3.0),
    ),
    "hh10": World(
        "10 households per cluster: noisy cluster means (sampling noise dominates residuals)",
        dict(households_per_cluster=10),
    ),
    "hh30": World(
        "30 households per cluster: less noisy cluster means",
        dict(households_per_cluster=30),
    ),
    "clusters100": World(
        "100 clusters: a small survey, few per admin-2 unit and per CV fold",
        dict(n_clusters=100),
    ),
    "clusters600": World(
        "600 clusters: a large survey, most EAs sampled",
        dict(n_clusters=600),
    ),
    "clustered": World(
        "a spatially clustered survey: clusters from a third of the admin-2 units only",
        dict(survey_district_share=1 / 3),
    ),
    "imagery16": World(
        "16-bit Sentinel-2 L2A-like imagery (DN = 10000 reflectance + 1000, SCL cloud mask)",
        imagery="sentinel2",
    ),
    "expected": World(
        "the base with `cell_target: expected`: intervals for the expected cell mean, scored "
        "against it",
        cell_target="expected",
    ),
    "no_households": World(
        "the base surveyed as cluster means only (no households table): no sampling noise to "
        "remove, intervals for the expected cell mean",
        households=False,
    ),
    "hh10_no_households": World(
        "10 households per cluster and no households table: the noisiest cluster means, "
        "with nothing to tell their noise",
        dict(households_per_cluster=10),
        households=False,
    ),
    "no_households_declared": World(
        "cluster means only, with the within-cluster sd declared (`estimate.within_sd`) as "
        "a survey report gives it: the sampling noise is known again",
        households=False,
        declared_within_sd=True,
    ),
    "hh10_no_households_declared": World(
        "10 households per cluster, cluster means only, within-cluster sd declared",
        dict(households_per_cluster=10),
        households=False,
        declared_within_sd=True,
    ),
}


def job_config(
    study: Path, world: World, *, deep: bool = False, position_draws: int | None = None
) -> StudyAreaConfig:
    """The config the generator wrote, with the world's survey and estimand; without
    ``deep``, the tabular blocks and LightGBM; ``position_draws`` sets
    ``estimate.position_draws`` (the positional correction of the cell intervals). A world
    with ``declared_within_sd`` declares the within-cluster sd (:func:`reported_within_sd`)
    before its households are withheld."""
    cfg = read_config(study)
    estimate: dict[str, Any] = {"cell_target": world.cell_target}
    if position_draws is not None:
        estimate["position_draws"] = position_draws
    if world.declared_within_sd:
        estimate["within_sd"] = reported_within_sd(cfg)
    update: dict[str, Any] = {"estimate": cfg.estimate.model_copy(update=estimate)}
    if not world.households:  # headcounts and the registry's proxy means test need them
        update.update(
            survey=cfg.survey.model_copy(update={"households": None}),
            registry=None,
            poverty_line=None,
        )
    if not deep:
        update.update(
            features=cfg.features.model_copy(update={"blocks": CLASSICAL_BLOCKS, "params": {}}),
            model=ModelConfig(name="lightgbm"),
        )
    return cfg.model_copy(update=update)


def reported_within_sd(cfg: StudyAreaConfig) -> WithinSd:
    """The within-cluster sd of the target, urban and rural, that a survey's report gives:
    computed here from the households the job then withholds (measurement error
    included, as a report's would be)."""
    if cfg.survey.households is None:
        raise ValueError("the world's survey has no households to report a within_sd from")
    clusters = read_clusters(cfg.survey.clusters)
    households = read_households(cfg.survey.households, pd.Index(clusters["cluster_id"]))
    sd = within_sd(households, clusters, person_weighted=cfg.estimate.person_weighted)
    return WithinSd(urban=sd[True], rural=sd[False])


def interval_width(cells: pd.DataFrame, truth: pd.DataFrame, estimand: str) -> dict[str, float]:
    """Mean width of the cell intervals relative to the spread of the true cell values.

    Both are population-weighted (true population) over populated cells: the width is the
    mean of ``upper - lower``; the spread is the standard deviation of the true values of
    the intervals' ``estimand`` (``truth_sd``: the realised cell mean
    :data:`TRUE_MEAN` or the expected one, ``expected_mean_log_consumption``), and of the
    other beside it.
    """
    joined = cells[["lower", "upper"]].join(truth.drop(columns=["lower", "upper"], errors="ignore"))
    populated = joined[joined["population"] > 0]
    people = populated["population"].to_numpy(dtype=float)
    width = float(np.average(populated["upper"] - populated["lower"], weights=people))

    def spread(column: str) -> float:
        y = populated[column].to_numpy(dtype=float)
        return float(np.sqrt(np.average((y - np.average(y, weights=people)) ** 2, weights=people)))

    own, other = (TRUE_MEAN, EXPECTED_MEAN)
    if estimand == "expected":
        own, other = other, own
    out = {"width": width, "truth_sd": spread(own), "truth_sd_other": spread(other)}
    out["width_to_sd"] = width / out["truth_sd"]
    return out


def residual_budget(run_path: Path, truth: Path) -> dict[str, float]:
    """Where the clusters' out-of-fold residual variance comes from, against the truth.

    The conformal intervals are fitted on ``r = y - cal(p_oof)`` of the clusters and
    applied to cells, whose error is ``truth - cal(p_cell)``. Splitting ``r`` along the
    truth the generator keeps shows what the clusters carry that the cells do not
    (variances over the clusters, except ``cell_error``):

    * ``sampling``: the cluster mean minus its EA's true mean (what the noise term removes);
    * ``local``: the EA's true mean minus the expected mean of the cell it lies in (the
      EA's own deviation, part of a small cell's realised mean but not of its expected one);
    * ``model_oof``: that expected mean minus the cluster's calibrated out-of-fold
      prediction (a fold model, the displaced location, the buffer's features);
    * ``model``: the same expected mean minus the map's calibrated prediction of that
      cell (the refitted model at the cell's own features), the error the cells have;
    * ``noise_removed`` and ``sigma2``: the noise variance the run removed and the
      model-error variance its intervals use (pooled); ``cell_error``: the variance of
      ``expected - estimate`` over the map's populated cells, what ``sigma2`` stands for.

    ``residual ≈ sampling + local + model_oof`` (the parts are nearly independent); what
    ``model_oof`` exceeds ``model`` by is what the clusters' residuals carry and the
    cells' errors do not.
    """
    run_dir = open_run(run_path)
    metrics = read_json(run_path / "metrics.json")["estimate"]
    cal = metrics["calibration"]
    # CSV columns come back as text: the ids stay text, the values become numbers
    oof = read_tabular(run_path / "oof.csv").astype({"cluster_id": str, "y": float, "pred": float})
    true_clusters = read_tabular(truth / "clusters.csv").astype(
        {"cluster_id": str, "true_mean_log_consumption": float}
    )
    true_cells = read_tabular(truth / "cells.parquet").set_index("cell_id")[EXPECTED_MEAN]
    cells = run_dir.cells()
    c = oof.set_index("cluster_id").join(
        true_clusters.set_index("cluster_id"), rsuffix="_true", how="inner"
    )

    def calibrated(pred: pd.Series) -> np.ndarray:
        return cal["intercept"] + cal["slope"] * pred.to_numpy(dtype=float)

    expected = true_cells.reindex(c["cell_id"]).to_numpy()
    at_cell = calibrated(cells["raw_estimate"].reindex(c["cell_id"]))
    parts = {
        "residual": c["y"].to_numpy() - calibrated(c["pred"]),
        "sampling": c["y"].to_numpy() - c["true_mean_log_consumption"].to_numpy(),
        "local": c["true_mean_log_consumption"].to_numpy() - expected,
        "model_oof": expected - calibrated(c["pred"]),
        "model": expected - at_cell,
    }
    out = {f"budget_{k}": float(np.nanvar(v)) for k, v in parts.items()}
    populated = cells[cells["population"] > 0]
    cell_error = true_cells.reindex(populated.index) - populated["estimate"]
    out.update(
        budget_noise_removed=float(_get(metrics, "noise", "mean_noise_var") or 0.0),
        budget_sigma2=float(metrics["conformal"]["sigma"]["pooled"] ** 2),
        budget_cell_error=float(np.nanvar(cell_error.to_numpy(dtype=float))),
    )
    return out


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


TARGETING = {
    "map": "map (this run)",
    "nightlights": "nightlights-only map",
    "oracle_cells": "oracle: true cell headcounts",
    "oracle_households": "oracle: true household consumption",
}


#: Facts of the generated country (``truth/world.json``) copied into each row.
WORLD_FACTS = {
    "world_dark_cell_share": "dark_populated_cell_share",  # populated cells below the floor
    "world_urban_population_share": "urban_population_share",
    "world_population": "population",
    "world_headcount": "national_headcount",
}


def world_row(name: str, metrics: dict[str, Any], width: dict[str, float]) -> dict[str, Any]:
    """The row of one world from its run's metrics and interval widths."""
    est = metrics["truth"]["estimate"]
    map_r2 = est["all"]["r2"]
    cv = metrics["cv"]
    # the map accuracy the run reports from CV: the out-of-fold r² with the clusters'
    # sampling noise removed (equal to the observed r² without households)
    cv_r2 = cv.get("r2_noise_removed", cv["r2"])
    coverage = est["cell_coverage"]
    methods = _get(metrics, "truth", "targeting", "methods") or {}
    calibration = _get(metrics, "estimate", "calibration") or {}
    return {
        "world": name,
        "map_r2": map_r2,
        "map_bias": _get(est, "all", "bias"),  # population-weighted mean error of the map
        "benchmark_shift": _get(metrics, "estimate", "map_benchmark", "shift"),
        "dark_r2": _get(est, "dark", "r2"),
        "dark_share": est.get("dark_share"),
        "cv_r2": cv_r2,
        "cv_gap": cv_r2 - map_r2,  # > 0: CV flatters the map
        "cv_r2_observed": cv["r2"],  # against the noisy cluster means
        "cv_noise_share": calibration.get("noise_share"),
        "estimand": est.get("estimand"),
        "cell_coverage": coverage.get("overall"),
        "cell_coverage_urban": coverage.get("urban"),
        "cell_coverage_rural": coverage.get("rural"),
        "n_urban_cells": coverage.get("n_urban"),
        "n_rural_cells": coverage.get("n_rural"),
        **width,
        "admin2_coverage_map": _get(est, "admin2", "mean", "coverage"),
        "admin2_coverage_fh": _get(est, "admin2", "fh_mean", "coverage"),
        "n_admin2": _get(est, "admin2", "mean", "n"),
        "calibration_slope": _get(est, "calibration", "after", "slope_pop"),
        "calibration_attainable": calibration.get("attainable"),
        **{
            f"exclusion_{key}": _get(methods, label, "exclusion_error")
            for key, label in TARGETING.items()
        },
        "n_cells": metrics["truth"].get("n_cells"),
        "n_clusters": metrics.get("n_clusters"),
        "warnings": _get(metrics, "estimate", "warnings") or [],
    }


def run_world(
    name: str,
    world: World,
    *,
    seed: int,
    folder: Path,
    deep: bool = False,
    position_draws: int | None = None,
) -> dict[str, Any]:
    """Generate one world into ``folder``, run the job on it and return its row."""
    start = time.perf_counter()
    study = generate(
        world.spec(name), seed=seed, out=folder / "world", overwrite=True, imagery=world.imagery
    )
    generated = time.perf_counter()
    truth = folder / "world" / "truth"
    cfg = job_config(study, world, deep=deep, position_draws=position_draws)
    result = run(cfg, runs=folder / "runs", truth=truth)
    ran = time.perf_counter()
    true_cells = read_tabular(truth / "cells.parquet").set_index("cell_id")
    estimand = result.metrics["estimate"]["estimand"]
    width = interval_width(open_run(result.path).cells(), true_cells, estimand)
    facts = read_json(truth / "world.json")
    row = {
        **world_row(name, result.metrics, width),
        **residual_budget(result.path, truth),
        **{key: facts.get(source) for key, source in WORLD_FACTS.items()},
        "seed": seed,
        "varied": world.varied(),
    }
    row.update(
        generate_s=round(generated - start, 1),
        run_s=round(ran - generated, 1),
        seconds=round(time.perf_counter() - start, 1),
    )
    return row


# ---------------------------------------------------------------------------------------
# the Markdown table

#: (column header, row key, format, target or None): a value that misses the issue's
#: target is printed in bold.
COLUMNS: list[tuple[str, str, str, Callable[[float], bool] | None]] = [
    ("dark cells", "world_dark_cell_share", ".2f", None),
    ("map r²", "map_r2", ".3f", None),
    ("dark r²", "dark_r2", ".3f", None),
    ("CV r²", "cv_r2", ".3f", None),
    ("CV gap", "cv_gap", "+.3f", lambda v: abs(v) <= 0.05),
    ("CV r² obs.", "cv_r2_observed", ".3f", None),
    ("cov.", "cell_coverage", ".3f", lambda v: 0.88 <= v <= 0.92),
    ("cov. urban (cells)", "cell_coverage_urban", ".3f", lambda v: v >= 0.85),
    ("cov. rural", "cell_coverage_rural", ".3f", lambda v: v >= 0.85),
    ("width / sd", "width_to_sd", ".2f", None),
    ("adm-2 map", "admin2_coverage_map", ".3f", lambda v: 0.85 <= v <= 0.95),
    ("adm-2 FH", "admin2_coverage_fh", ".3f", lambda v: 0.85 <= v <= 0.95),
    ("slope", "calibration_slope", ".3f", lambda v: 0.9 <= v <= 1.1),
    ("excl. map", "exclusion_map", ".3f", None),
    ("excl. NL", "exclusion_nightlights", ".3f", None),
    ("excl. oracle cells", "exclusion_oracle_cells", ".3f", None),
    ("excl. oracle hh", "exclusion_oracle_households", ".3f", None),
    ("s", "seconds", ".0f", None),
]


def _cell(value: Any, fmt: str, target: Callable[[float], bool] | None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    text = format(value, fmt)
    return f"**{text}**" if target is not None and not target(value) else text


def _varied(row: dict[str, Any]) -> str:
    items = []
    for key, value in row.get("varied", {}).items():
        items.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return ", ".join(items) or "(base)"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table; values outside the issue's targets in bold."""
    header = ["world", "varied", *(c[0] for c in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        urban_n = row.get("n_urban_cells")
        cells = [row["world"], _varied(row)]
        for _, key, fmt, target in COLUMNS:
            text = _cell(row.get(key), fmt, target)
            if key == "cell_coverage_urban" and urban_n is not None:
                text += f" ({urban_n})"
            cells.append(text)
        if "error" in row:
            cells[2:] = [f"failed: {row['error']}".replace("|", "/")] + [""] * (len(COLUMNS) - 2)
            cells.append(_cell(row.get("seconds"), ".0f", None))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: (column header, row key, target) of the table over seeds.
SEED_COLUMNS: list[tuple[str, str, Callable[[float], bool]]] = [
    ("cov.", "cell_coverage", lambda v: 0.88 <= v <= 0.92),
    ("cov. urban", "cell_coverage_urban", lambda v: v >= 0.85),
    ("cov. rural", "cell_coverage_rural", lambda v: v >= 0.85),
    ("adm-2 map", "admin2_coverage_map", lambda v: 0.85 <= v <= 0.95),
    ("CV gap", "cv_gap", lambda v: abs(v) <= 0.05),
    ("slope", "calibration_slope", lambda v: 0.9 <= v <= 1.1),
]


def seeds_table(records: list[dict[str, Any]]) -> str:
    """The worlds every record (one ``--json`` file per seed) holds, as a Markdown table:
    per figure the mean over the seeds (bold outside the target) and each seed's value."""
    seeds = [r["seed"] for r in records]
    by_seed = [{row["world"]: row for row in r["rows"] if "error" not in row} for r in records]
    names = [n for n in by_seed[0] if all(n in b for b in by_seed[1:])]
    header = ["world", *(c[0] for c in SEED_COLUMNS)]
    lines = [
        f"Mean over seeds {', '.join(map(str, seeds))} (each seed's value in brackets).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name in names:
        cells = [name]
        for _, key, target in SEED_COLUMNS:
            values = [b[name].get(key) for b in by_seed]
            if any(v is None for v in values):
                cells.append("–")
                continue
            each = " / ".join(f"{v:.3f}" for v in values)
            cells.append(f"{_cell(float(np.mean(values)), '.3f', target)} ({each})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worlds", help=f"comma-separated names (default: all of {list(WORLDS)})")
    parser.add_argument("--seed", type=int, default=7, help="seed of every world (default 7)")
    parser.add_argument("--out", type=Path, help="keep worlds and runs in this folder")
    parser.add_argument("--json", type=Path, help="also write all rows to this JSON file")
    parser.add_argument("--markdown", action="store_true", help="print the Markdown table last")
    parser.add_argument("--deep", action="store_true", help="the generator's config (CNN, RCF)")
    parser.add_argument(
        "--position-draws", type=int, help="estimate.position_draws (default: the config's)"
    )
    parser.add_argument(
        "--rows",
        type=Path,
        nargs="+",
        help="render recorded rows only: one --json file as the table, several (one per "
        "seed) as the table over seeds",
    )
    args = parser.parse_args()
    if args.rows is not None:
        records = [read_json(path) for path in args.rows]
        one = len(records) == 1
        print(markdown_table(records[0]["rows"]) if one else seeds_table(records))
        return
    names = args.worlds.split(",") if args.worlds else list(WORLDS)
    unknown = [n for n in names if n not in WORLDS]
    if unknown:
        parser.error(f"unknown world(s) {unknown}; choose from {list(WORLDS)}")
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        for name in names:
            began = time.perf_counter()
            try:
                row = run_world(
                    name,
                    WORLDS[name],
                    seed=args.seed,
                    folder=root / name,
                    deep=args.deep,
                    position_draws=args.position_draws,
                )
            except Exception as exc:  # a world the job cannot run is a finding, not a crash
                row = {
                    "world": name,
                    "seed": args.seed,
                    "varied": WORLDS[name].varied(),
                    "error": f"{type(exc).__name__}: {exc}",
                    "seconds": round(time.perf_counter() - began, 1),
                }
            rows.append(row)
            print(json.dumps(row), flush=True)
            print(f"robustness: {name} done in {row['seconds']} s", file=sys.stderr, flush=True)
    total = round(time.perf_counter() - start, 1)
    print(f"robustness: {len(rows)} worlds in {total} s", file=sys.stderr)
    if args.json is not None:
        record = {
            "command": "python benchmarks/robustness.py " + " ".join(sys.argv[1:]),
            "date": datetime.now(UTC).date().isoformat(),
            "job": "generator's config" if args.deep else "blocks " + ",".join(CLASSICAL_BLOCKS),
            "seed": args.seed,
            "position_draws": args.position_draws,
            "total_s": total,
            "cores": len(os.sched_getaffinity(0)),
            "base": {f.name: getattr(BASE, f.name) for f in fields(BASE)},
            "worlds": {n: WORLDS[n].reason for n in names},
            "rows": rows,
        }
        write_json(record, args.json)
    if args.markdown:
        print(markdown_table(rows))


if __name__ == "__main__":
    main()
