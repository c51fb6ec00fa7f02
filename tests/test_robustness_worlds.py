"""The worlds of benchmarks/robustness.py: valid specs that differ from the base in what each
one documents, and the table and width figures computed right (no pipeline is run)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import fields
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from povertymap.world import PRESETS, WorldSpec

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "robustness.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("robustness_benchmark", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while being built
    spec.loader.exec_module(module)
    return module


def _differences(a: WorldSpec, b: WorldSpec) -> set[str]:
    return {
        f.name for f in fields(a) if f.name != "name" and getattr(a, f.name) != getattr(b, f.name)
    }


def test_at_least_eight_worlds_each_with_a_reason(bench: ModuleType) -> None:
    assert len(bench.WORLDS) >= 8
    assert "base" in bench.WORLDS and bench.WORLDS["base"].varied() == {}
    for name, world in bench.WORLDS.items():
        assert world.reason.strip() and "\n" not in world.reason, name


def test_every_world_is_a_valid_spec_differing_from_the_base_in_its_documented_fields(
    bench: ModuleType,
) -> None:
    base = bench.BASE
    assert isinstance(base, WorldSpec)
    for name, world in bench.WORLDS.items():
        spec = world.spec(name)  # WorldSpec validates itself
        assert spec.name == name
        # exactly the documented fields differ, each really changed
        assert _differences(spec, base) == set(world.changes), name
        if name != "base":
            assert world.varied(), f"{name} differs from the base in nothing"
        # every raster resolution still divides the cell
        assert spec.pixels_per_cell * spec.population_res_m == pytest.approx(spec.cell_size_m)


def test_the_variations_go_the_documented_way(bench: ModuleType) -> None:
    base, w = bench.BASE, {n: world.spec(n) for n, world in bench.WORLDS.items()}
    sparse = w["sparse_large"]
    assert sparse.population_density < base.population_density
    assert sparse.width_km * sparse.height_km >= 3 * base.width_km * base.height_km
    assert w["primate_city"].n_cities == 1 and w["primate_city"].city_share > base.city_share
    assert w["bright"].lights_floor < base.lights_floor
    assert w["bright"].lights_saturation > base.lights_saturation
    assert w["dark"].lights_floor > base.lights_floor
    assert w["hh10"].households_per_cluster == 10 and w["hh30"].households_per_cluster == 30
    assert w["clusters100"].n_clusters == 100 and w["clusters600"].n_clusters >= 600
    assert base.survey_district_share == 1 and w["clustered"].survey_district_share < 1
    assert bench.WORLDS["imagery16"].imagery == "sentinel2"
    # the base keeps the demo's welfare, sensors and survey design apart from its size
    demo = PRESETS["demo"]
    assert _differences(base, demo) <= {
        "width_km", "height_km", "n_admin1", "n_admin2", "n_cities", "n_towns",
        "n_villages", "n_clusters", "ea_households",
    }  # fmt: skip


def test_interval_width_is_relative_to_the_spread_of_the_estimands_truth(
    bench: ModuleType,
) -> None:
    ids = ["a", "b", "c", "d"]
    cells = pd.DataFrame({"lower": [0.0, 1.0, 2.0, 5.0], "upper": [1.0, 2.0, 4.0, 9.0]}, index=ids)
    truth = pd.DataFrame(
        {
            "population": [1.0, 3.0, 0.0, 0.0],
            "mean_log_consumption": [0.0, 2.0, 9.0, 9.0],
            "expected_mean_log_consumption": [1.0, 1.0, 9.0, 9.0],
        },
        index=ids,
    )  # unpopulated cells c and d are left out
    out = bench.interval_width(cells, truth, "realized")
    assert out["width"] == pytest.approx(1.0)
    sd = np.sqrt((1 * 1.5**2 + 3 * 0.5**2) / 4)  # weighted mean 1.5
    assert out["truth_sd"] == pytest.approx(sd) and out["truth_sd_other"] == 0.0
    assert out["width_to_sd"] == pytest.approx(1.0 / sd)
    expected = bench.interval_width(
        cells, truth.assign(expected_mean_log_consumption=[0, 2, 0, 0]), "expected"
    )
    assert expected["truth_sd"] == pytest.approx(sd)
    assert expected["truth_sd_other"] == pytest.approx(sd)


def test_the_job_drops_the_households_of_a_cluster_means_world(
    bench: ModuleType, tiny_world: Path
) -> None:
    world = bench.WORLDS["no_households"]
    cfg = bench.job_config(tiny_world, world)
    assert cfg.survey.households is None and cfg.registry is None and cfg.poverty_line is None
    assert cfg.features.blocks == bench.CLASSICAL_BLOCKS and cfg.model.name == "lightgbm"
    expected = bench.job_config(tiny_world, bench.WORLDS["expected"], deep=True)
    assert expected.estimate.cell_target == "expected"
    assert expected.survey.households is not None
    assert world.varied() == {"households": False}


def test_markdown_table_marks_what_misses_the_targets(bench: ModuleType) -> None:
    row = {
        "world": "w",
        "varied": {"lights_floor": 3.0},
        "map_r2": 0.6,
        "cv_r2": 0.7,
        "cv_gap": 0.1,
        "cell_coverage": 0.9,
        "cell_coverage_urban": 0.8,
        "n_urban_cells": 12,
        "calibration_slope": 1.0,
        "seconds": 61.2,
    }
    failed = {"world": "f", "varied": {}, "error": "KeyError: 'x'", "seconds": 3.0}
    lines = bench.markdown_table([row, failed]).splitlines()
    width = lines[0].count("|")
    assert all(line.count("|") == width for line in lines)
    assert "lights_floor=3" in lines[2] and "**+0.100**" in lines[2]  # CV gap > 0.05
    assert "| 0.900 |" in lines[2] and "**0.800** (12)" in lines[2] and "| 1.000 |" in lines[2]
    assert "| – |" in lines[2] and lines[2].endswith("| 61 |")
    assert "failed: KeyError: 'x'" in lines[3] and lines[3].endswith("| 3 |")


def test_a_clustered_survey_visits_a_share_of_the_districts_with_unbiased_weights() -> None:
    from povertymap.world.survey import select_clusters, select_districts

    rng = np.random.default_rng(0)
    n_ea = 600
    district = rng.integers(0, 12, n_ea)  # 12 admin-2 units, 4 per admin-1 unit
    region = district // 4
    urban = (rng.uniform(size=n_ea) < 0.3).astype(int)
    stratum = region * 2 + urban
    population = rng.lognormal(5.0, 0.5, n_ea)
    totals = []
    for seed in range(300):
        draw = np.random.default_rng(seed)
        first = select_districts(district, region, population, 0.5, draw)
        drawn = np.unique(district[first > 0])
        assert all(np.isin(np.arange(r * 4, r * 4 + 4), drawn).sum() == 2 for r in range(3))
        ids, pi = select_clusters(
            None, population, stratum, np.arange(n_ea), 40, draw, first_phase=first
        )
        assert len(ids) == 40 and np.isin(district[ids], drawn).all()
        assert np.all((pi > 0) & (pi <= first[ids]))
        totals.append(np.sum(population[ids] / pi))
    # Horvitz-Thompson totals of the two-phase weights are unbiased (300 draws: se 0.12 %)
    assert np.mean(totals) == pytest.approx(population.sum(), rel=0.01)
    # share 1 is today's one-phase draw: every EA eligible, the same EAs as without it
    ones = np.ones(n_ea)
    plain = select_clusters(
        None, population, stratum, np.arange(n_ea), 40, np.random.default_rng(1)
    )
    again = select_clusters(
        None, population, stratum, np.arange(n_ea), 40, np.random.default_rng(1), first_phase=ones
    )
    assert np.array_equal(plain[0], again[0]) and np.allclose(plain[1], again[1])


def test_a_declared_world_withholds_the_households_but_declares_their_sd(
    bench: ModuleType, tiny_world: Path
) -> None:
    from povertymap.estimate.direct import within_sd
    from povertymap.io.survey import read_clusters, read_households

    world = bench.WORLDS["no_households_declared"]
    cfg = bench.job_config(tiny_world, world)
    assert cfg.survey.households is None and cfg.poverty_line is None
    full = bench.job_config(tiny_world, bench.WORLDS["base"])
    clusters = read_clusters(full.survey.clusters)
    sd = within_sd(read_households(full.survey.households), clusters)
    assert cfg.estimate.within_sd is not None
    assert (cfg.estimate.within_sd.urban, cfg.estimate.within_sd.rural) == (sd[True], sd[False])
    assert 0.1 < sd[False] < 2.0 and full.estimate.within_sd is None
    assert world.varied() == {"households": False, "within_sd": "declared"}


@pytest.mark.slow
def test_the_residual_budget_agrees_with_the_runs_error_model(
    bench: ModuleType, tiny_world: Path, tmp_path: Path
) -> None:
    """The budget's parts come from the truth; its totals must be the run's own."""
    from povertymap.pipeline import run

    truth = tiny_world.parent / "truth"
    result = run(bench.job_config(tiny_world, bench.WORLDS["base"]), runs=tmp_path, truth=truth)
    budget = bench.residual_budget(result.path, truth)
    est = result.metrics["estimate"]
    assert budget["budget_sigma2"] == pytest.approx(est["conformal"]["sigma"]["pooled"] ** 2)
    assert budget["budget_noise_removed"] == pytest.approx(est["noise"]["mean_noise_var"])
    assert not est["conformal"]["floored"]
    # sigma² = mean(r²) - mean(noise), and calibrated residuals have mean ~0
    assert budget["budget_residual"] == pytest.approx(
        budget["budget_sigma2"] + budget["budget_noise_removed"], rel=0.02
    )
    for part in ("sampling", "local", "model_oof", "model", "cell_error"):
        assert 0 < budget[f"budget_{part}"] < budget["budget_residual"] * 1.5, part
    assert budget["budget_sampling"] < budget["budget_residual"]


def test_methods_md_holds_the_recorded_robustness_table(bench: ModuleType) -> None:
    from povertymap.io.artifacts import read_json

    rows = read_json(BENCHMARK.parents[1] / "docs" / "results" / "robustness.json")["rows"]
    methods = (BENCHMARK.parents[1] / "docs" / "methods.md").read_text()
    assert bench.markdown_table(rows) in methods
