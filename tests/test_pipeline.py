"""The main job end to end on the tiny synthetic country, and the evaluate/predict jobs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from typer.testing import CliRunner

from povertymap.cli import app
from povertymap.io.configfile import read_config
from povertymap.mapping import SCHEMA_VERSION
from povertymap.pipeline import RunResult, evaluate, map_accuracy, predict, run, target
from povertymap.rundir import open_run

GOLDEN = Path(__file__).parent / "data" / "golden" / "tiny-metrics.json"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run(
        read_config(tiny_world),
        runs=tmp_path_factory.mktemp("runs"),
        truth=tiny_world.parent / "truth",
    )


def test_run_directory_is_complete_and_verified(tiny_run: RunResult) -> None:
    run_dir = open_run(tiny_run.path)
    assert run_dir.verify() == []
    files = set(run_dir.manifest["files"])
    for name in (
        "config.yaml",
        "metrics.json",
        "cells.parquet",
        "map.tif",
        "admin.gpkg",
        "oof.csv",
        "report.html",
        "model/model.joblib",
        "model/model.json",
        "model/feature_stats.parquet",
        "targeting/methods.parquet",
    ):
        assert name in files, name
    assert set(run_dir.manifest["inputs"]) >= {"boundaries", "survey.clusters", "rasters.imagery"}
    # nothing half-written beside it (.cache keeps image embeddings for the next run)
    leftovers = [p.name for p in tiny_run.path.parent.iterdir() if p.name != ".cache"]
    assert leftovers == [tiny_run.path.name]


def test_cells_map_and_admin_agree(tiny_run: RunResult, tiny_world: Path) -> None:
    cells = gpd.read_parquet(tiny_run.path / "cells.parquet")
    assert cells.index.name == "cell_id" and cells.crs.to_epsg() == 32736
    assert {"population", "estimate", "baseline", "urban", "admin_id"} <= set(cells.columns)
    assert cells["estimate"].notna().all()
    with rasterio.open(tiny_run.path / "map.tif") as ds:
        assert ds.descriptions[0] == "estimate" and ds.res == (1000.0, 1000.0)
        band = ds.read(1)
        centres = cells.geometry.centroid
        cols, rows = ~ds.transform @ (centres.x.to_numpy(), centres.y.to_numpy())
        rows, cols = np.floor(rows).astype(int), np.floor(cols).astype(int)
        assert np.allclose(band[rows, cols], cells["estimate"].to_numpy(dtype="float32"))
        assert np.isnan(band).sum() == band.size - len(cells)  # nodata outside the cells
    admin = gpd.read_file(tiny_run.path / "admin.gpkg")
    # cell people add up to the areas' map population; the census gives ``population``
    assert admin["map_population"].sum() == pytest.approx(cells["population"].sum())
    census = pd.read_csv(tiny_world.parent / "census.csv", dtype={"admin2_id": str})
    by_id = admin.set_index("admin_id")["population"]
    assert np.allclose(by_id.loc[census["admin2_id"]], census["population"])
    a = admin.set_index("admin_id").iloc[0]
    mine = cells[cells["admin_id"] == a.name]
    assert a["estimate"] == pytest.approx(np.average(mine["estimate"], weights=mine["population"]))


def test_metrics_hold_cv_baseline_random_and_truth(tiny_run: RunResult) -> None:
    m = json.loads((tiny_run.path / "metrics.json").read_text())
    cv = m["cv"]
    assert cv["scheme"] == "spatial" and cv["folds"] == 5 and cv["n"] == 60
    assert {"model", "baseline"} <= set(cv["models"]) and "random_cv" in cv
    assert set(cv["by_group"]) >= {"urban", "region", "lights"}
    oof = pd.read_csv(tiny_run.path / "oof.csv")
    y, pred = oof["y"].to_numpy(), oof["pred"].to_numpy()
    assert cv["r2"] == pytest.approx(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))
    assert m["truth"]["n_cells"] > 100 and "dark" in m["truth"]["estimate"]
    assert set(m["timings_s"]) >= {"features", "cross_validation", "rollout", "report"}


def test_report_shows_its_figures(tiny_run: RunResult) -> None:
    html = (tiny_run.path / "report.html").read_text()
    for name in ("map", "admin", "cv_scatter"):
        assert f'src="figures/{name}.png"' in html
        assert (tiny_run.path / "figures" / f"{name}.png").stat().st_size > 5000
    assert "Check against the ground truth" in html and "nightlights only" in html
    shift = tiny_run.metrics["estimate"]["map_benchmark"]["shift"]
    assert f"The map is then shifted by {shift:+.3f}" in html


def _figures(node: object, path: str = "") -> dict[str, object]:
    """Every number and string of a metrics tree by its path (timings left out)."""
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            if key != "timings_s":
                out.update(_figures(value, f"{path}/{key}"))
        return out
    if isinstance(node, list):
        return {k: v for i, x in enumerate(node) for k, v in _figures(x, f"{path}[{i}]").items()}
    return {path: node}


def test_metrics_equal_the_golden_figures(tiny_run: RunResult) -> None:
    """The tiny world's figures (CV, truth, estimates, targeting) as committed in
    tests/data/golden/tiny-metrics.json: a change of structure must not move a number.
    The file is regenerated only with a change of method that moves numbers on purpose,
    named in its commit (last: the map benchmarked to the survey's national mean, admin-2
    effects measured from the units' mean residuals)."""
    golden = _figures(json.loads(GOLDEN.read_text()))
    now = _figures(json.loads((tiny_run.path / "metrics.json").read_text()))
    assert len(golden) > 500
    missing = sorted(set(golden) - set(now))
    assert not missing, missing[:5]
    moved = {
        k: (v, now[k])
        for k, v in golden.items()
        if not (
            v == now[k]
            or (isinstance(v, float) and np.isnan(v) and np.isnan(now[k]))
            or (isinstance(v, float) and now[k] == pytest.approx(v, rel=1e-9, abs=1e-12))
        )
    }
    assert not moved, list(moved.items())[:5]


def test_predict_reproduces_the_map(tiny_run: RunResult, tiny_world: Path, tmp_path: Path) -> None:
    result = predict(tiny_run.path, read_config(tiny_world), runs=tmp_path)
    again = open_run(result.path)
    first = open_run(tiny_run.path)
    assert again.kind == "predict" and again.manifest["model_run"] == tiny_run.path.name
    mapped, cells = again.cells(), first.cells()
    columns = ["raw_estimate", "estimate", "lower", "upper", "poverty_rate", "poverty_lower"]
    assert mapped.index.equals(cells.index)
    # the same up to float rounding: predict recomputes the CNN's float32 cell embeddings in
    # other batches than the run did (measured: at most 2.3e-9 in raw_estimate, 9e-10 in
    # the calibrated columns)
    assert np.allclose(mapped[columns], cells[columns], rtol=0, atol=1e-8)
    # the same aggregation as the run: admin means and their simulated intervals
    admin, a_run = again.admin(), first.admin()
    for column in ("estimate", "lower", "upper", "poverty_rate"):
        assert np.allclose(admin[column], a_run.loc[admin.index, column], equal_nan=True)


def test_model_round_trip_and_client_features(tiny_run: RunResult) -> None:
    run_dir = open_run(tiny_run.path)
    model = run_dir.model()
    meta = json.loads((tiny_run.path / "model" / "model.json").read_text())
    assert meta["schema_version"] == SCHEMA_VERSION and meta["columns"] == model.columns_
    # no path of the run (or of its cache) is kept inside the fitted feature blocks
    kept = [v for b in model.blocks_ for v in vars(b).values() if isinstance(v, str | Path)]
    assert not [v for v in kept if str(tiny_run.path.parent) in str(v)]
    assert all(getattr(b, "cache_dir", None) is None for b in model.blocks_)
    # the training features and their reference statistics (the drift baseline)
    training = pd.read_parquet(tiny_run.path / "model" / "training_features.parquet")
    stats = pd.read_parquet(tiny_run.path / "model" / "feature_stats.parquet").set_index("feature")
    assert len(training) == 60 and set(model.columns_) <= set(training.columns)
    column = model.columns_[0]
    assert stats.loc[column, "mean"] == pytest.approx(training[column].mean())
    assert stats.loc[column, "q50"] == pytest.approx(training[column].median())
    # a client's feature table: the model's raw prediction, calibrated and benchmarked
    # like the map
    rows = training.set_index("cluster_id")[model.columns_].head(5)
    out = model.predict_features(rows.assign(population=100.0, urban=False))
    raw = model.estimators_["model"].predict(rows)
    assert np.allclose(out["raw_estimate"], raw)
    cal, est = model.cell_estimator_.calibrator_, model.cell_estimator_
    assert est.offset_ != 0.0
    assert np.allclose(out["estimate"], cal.intercept_ + cal.slope_ * raw + est.offset_)
    assert (out["lower"] < out["estimate"]).all() and (out["estimate"] < out["upper"]).all()


def test_a_moved_run_verifies_and_predicts(
    tiny_run: RunResult, tiny_world: Path, tmp_path: Path
) -> None:
    moved = tmp_path / "elsewhere" / tiny_run.path.name
    shutil.copytree(tiny_run.path, moved)
    manifest = open_run(moved).manifest
    assert manifest["kind"] == "run" and manifest["schema_version"] == 2
    assert all(not Path(m["path"]).is_absolute() for m in manifest["inputs"].values())
    assert str(tiny_world.parent) not in (moved / "config.yaml").read_text()
    result = CliRunner().invoke(app, ["info", str(moved)])
    assert result.exit_code == 0, result.stderr
    assert "all files match the manifest" in result.stdout
    again = predict(moved, read_config(tiny_world), runs=tmp_path / "runs")
    first = open_run(tiny_run.path).cells()
    assert np.allclose(
        open_run(again.path).cells()["estimate"], first["estimate"], rtol=0, atol=1e-9
    )
    # a changed file is found
    (moved / "metrics.json").write_text("{}")
    result = CliRunner().invoke(app, ["info", str(moved)])
    assert result.exit_code != 0 and "metrics.json (changed)" in result.stderr


def test_target_replans_without_the_study_area(tiny_run: RunResult, tmp_path: Path) -> None:
    copy = tmp_path / tiny_run.path.name
    shutil.copytree(tiny_run.path, copy)
    settings = open_run(copy).targeting_settings().model_copy(update={"unit": "admin2"})
    result = target(copy, settings, budget="50%")
    run_dir = open_run(copy)
    assert run_dir.verify() == []
    plan = run_dir.plan()
    assert plan is not None and "admin_id" in plan
    summary = result.metrics["targeting"]
    assert summary["unit"] == "admin2" and summary["budget"] == "50%"
    assert summary["population_covered"] == pytest.approx(
        plan.loc[plan["selected"], "population"].sum()
    )
    assert run_dir.metrics()["targeting"] == summary
    assert "admin2s at a budget of 50%" in (copy / "report.html").read_text()
    # the plan is scored against the truth of the synthetic country, like the run's
    assert "this plan" in run_dir.metrics()["truth"]["targeting"]["methods"]
    # an asset index without a poverty line is targeted by its estimate, poorest first
    by_estimate = settings.model_copy(update={"unit": "cell", "rank_by": "estimate"})
    target(copy, by_estimate, budget="20%")
    plan = open_run(copy).plan()
    assert plan is not None
    ranked = plan.sort_values("rank")
    assert ranked["estimate"].is_monotonic_increasing
    first = ranked[ranked["population"] > 0].iloc[0]
    assert bool(first["selected"]) and plan["poverty_rate"].notna().all()


def test_a_relative_poverty_line(tiny_world: Path, tmp_path: Path) -> None:
    """``poverty_line: 40%``: the line below which 40% of the surveyed people live."""
    study = yaml.safe_load(tiny_world.read_text())
    study["poverty_line"] = "40%"
    path = tiny_world.parent / "relative-line.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    cfg = read_config(path)
    result = run(cfg, runs=tmp_path)
    line = result.metrics["poverty_line"]
    households = pd.read_csv(tiny_world.parent / "households.csv")
    people = households["weight"] * households["hh_size"]
    below = people[households["log_consumption"] <= line["value"]].sum() / people.sum()
    assert line["given"] == "40%" and below == pytest.approx(0.40, abs=0.01)
    assert open_run(result.path).model().line_ == line["value"]
    assert "40% of the surveyed people" in (result.path / "report.html").read_text()


def test_failed_run_leaves_no_directory(tiny_world: Path, tmp_path: Path) -> None:
    from povertymap.errors import ConfigError

    cfg = read_config(tiny_world)
    cv = cfg.cv.model_copy(update={"scheme": "group", "group": "no_such_column"})
    with pytest.raises(ConfigError, match="no_such_column"):
        run(cfg.model_copy(update={"cv": cv}), runs=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name != ".cache"] == []


def _table_study(root: Path, signal: bool) -> Path:
    """240 clusters with a feature table: the target is a function of f1 (or of nothing)."""
    rng = np.random.default_rng(0)
    n = 240
    clusters = pd.DataFrame(
        {
            "cluster_id": [f"k{i}" for i in range(n)],
            "lon": rng.uniform(30, 31, n),
            "lat": rng.uniform(-2, -1, n),
            "region": np.repeat(["a", "b", "c"], n // 3),
        }
    )
    f1 = rng.normal(size=n)
    clusters["y"] = 2 * f1 + 0.1 * rng.normal(size=n) if signal else rng.normal(size=n)
    root.mkdir(parents=True, exist_ok=True)
    clusters.to_csv(root / "clusters.csv", index=False)
    pd.DataFrame({"cluster_id": clusters["cluster_id"], "f1": f1, "f2": rng.normal(size=n)}).to_csv(
        root / "features.csv", index=False
    )
    config = {
        "name": "tables",
        "survey": {"clusters": {"path": "clusters.csv", "target": "y"}},
        "tables": [{"path": "features.csv", "key": "cluster_id"}],
        "model": {"name": "ridge"},
    }
    (root / "study.yaml").write_text(yaml.safe_dump(config))
    return root / "study.yaml"


@pytest.mark.parametrize("signal", [True, False])
def test_evaluate_tables_only(tmp_path: Path, signal: bool) -> None:
    study = _table_study(tmp_path / "s", signal)
    result = evaluate(read_config(study), out=tmp_path / "eval", scheme="group", group="region")
    cv = result.metrics["cv"]
    assert cv["scheme"] == "group" and cv["folds"] == 3
    if signal:
        assert cv["r2"] > 0.95
    else:
        assert cv["r2"] < 0.1
    oof = pd.read_csv(tmp_path / "eval" / "oof.csv")
    assert len(oof) == 240 and set(oof["fold"]) == {0, 1, 2}


def test_cli_evaluate_and_run_refusal(tmp_path: Path) -> None:
    study = _table_study(tmp_path / "s", True)
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["evaluate", str(study), "--cv", "random", "--folds", "4", "--out", str(tmp_path / "e")],
    )
    assert result.exit_code == 0, result.stderr
    assert "random CV (4 folds, 240 clusters): r2 0.9" in result.stdout
    # block size and buffer from the command line override the config's
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(study),
            "--block-size",
            "30000",
            "--buffer",
            "0",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert result.exit_code == 0, result.stderr
    cv = open_run(tmp_path / "b").metrics()["cv"]
    assert cv["scheme"] == "spatial" and cv["block_size_m"] == 30000 and cv["buffer_m"] == 0
    # a map needs boundaries: a clear error, exit 2, nothing written
    result = runner.invoke(app, ["run", str(study), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "no boundaries" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_map_accuracy_names_where_the_noise_came_from() -> None:
    cal = {"calibration": {"noise_share": 0.2, "r2_true": 0.7}}
    from_households = map_accuracy(cal)
    assert from_households["r2_noise_removed"] == 0.7
    assert from_households["r2_noise_removed_basis"].endswith("the survey's households")
    declared = map_accuracy({**cal, "noise": {"source": "estimate.within_sd"}})
    assert declared["r2_noise_removed_basis"].endswith("estimate.within_sd")
    none = map_accuracy({"calibration": {"noise_share": 0.0, "r2_true": 0.6}})
    assert none["r2_noise_removed_basis"].startswith("no households")
