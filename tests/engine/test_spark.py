"""The Spark engine gives the local engine's numbers: kernels, folds, refits, the tiny world.

A real ``local[2]`` Spark session (one per module: starting the JVM takes seconds) runs the
same kernels as :class:`~povertymap.engine.local.LocalEngine`: results come back in item
order with progress for every item, a kernel's error is raised with its own type, and on
the tiny world the features (to 1e-9), the cross-validation, the cell predictions and the
admin tables equal the local engine's. The error paths (no pyspark, no Java) run without
Spark.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from povertymap.config import FeaturesConfig, ModelConfig
from povertymap.engine import LocalEngine, SparkEngine, get_engine
from povertymap.engine import spark as spark_module
from povertymap.errors import ConfigError, RasterError
from povertymap.estimate.stage import EstimateResult
from povertymap.mapping import MappingModel, Training
from povertymap.models.classical import make_model
from povertymap.models.cv import out_of_fold, random_folds
from povertymap.models.evaluate import fit_model
from povertymap.predict import rollout

LOCAL = LocalEngine(n_jobs=1)
MODELS = {
    "ridge": ModelConfig(name="ridge"),
    "lightgbm": ModelConfig(name="lightgbm", params={"n_estimators": 50}, random_state=3),
}


@pytest.fixture(scope="module")
def spark() -> SparkEngine:
    """One ``local[2]`` engine (and JVM) for the whole module."""
    pytest.importorskip("pyspark")
    if spark_module._java() is None:
        pytest.skip("no Java runtime")
    engine = SparkEngine(master="local[2]")
    engine.session()
    return engine


def _square(offset: int, item: int) -> pd.DataFrame:
    """A kernel whose early items finish last, so tasks complete out of order."""
    time.sleep(0.05 * (5 - item % 5))
    if item < 0:
        raise RasterError(f"band {item} is unreadable", path="/data/lights.tif", fix="re-export")
    return pd.DataFrame(
        {"item": [item], "value": [item**2 + offset], "name": [f"n{item}"]},
        index=pd.Index([f"u{item}"], name="unit_id"),
    )


def _problem(n: int = 150, p: int = 8, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A cluster feature table with missing values and a nonlinear target (as in
    test_engines.py: Spark's Python workers unpickle this module's kernels by reference,
    so it imports nothing from the tests' own modules, which the workers cannot find)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        rng.normal(size=(n, p)),
        columns=[f"nl_{i}" for i in range(p)],
        index=pd.Index([f"c{i}" for i in range(n)], name="cluster_id"),
    )
    X.iloc[rng.integers(0, n, 10), 1] = np.nan
    y = X["nl_0"].to_numpy() - 0.5 * X["nl_2"].to_numpy() ** 2 + rng.normal(0, 0.3, n)
    return X, y


# -- the engine contract -------------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.slow
def test_spark_keeps_item_order_dtypes_and_reports_progress(spark: SparkEngine) -> None:
    calls: list[tuple[str, int, int]] = []
    items = list(range(7))
    out = spark.map(
        partial(_square, 10), items, label="squares", progress=lambda *a: calls.append(a)
    )
    expected = LOCAL.map(partial(_square, 10), items)
    pd.testing.assert_frame_equal(out, expected, check_exact=True)  # index name, dtypes
    assert out["value"].tolist() == [i**2 + 10 for i in items]
    assert calls == [("squares", i, 7) for i in range(1, 8)]
    assert spark.map(partial(_square, 1), []).empty
    assert spark.parallelism == 2


@pytest.mark.spark
@pytest.mark.slow
def test_a_kernel_error_is_raised_with_its_own_type(spark: SparkEngine) -> None:
    with pytest.raises(RasterError, match=r"lights\.tif: band -2 is unreadable\. Fix: re-export"):
        spark.map(partial(_square, 0), [1, -2, 3, -4])  # the first failing item in order


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_out_of_fold_on_spark_equals_local(spark: SparkEngine, name: str) -> None:
    X, y = _problem()
    folds = random_folds(len(y), n_folds=5, random_state=2)
    make = partial(make_model, MODELS[name])
    calls: list[tuple[str, int, int]] = []
    local, fold_local = out_of_fold(make, X, y, folds, engine=LOCAL)
    remote, fold_remote = out_of_fold(
        make, X, y, folds, progress=lambda *a: calls.append(a), label="cv", engine=spark
    )
    assert np.array_equal(local, remote) and np.array_equal(fold_local, fold_remote)
    assert calls == [("cv", k, 5) for k in range(1, 6)]
    assert np.corrcoef(remote, y)[0, 1] > 0.3  # the model learned something


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_out_of_area_refits_on_spark_equal_local(spark: SparkEngine, name: str) -> None:
    X, y = _problem(seed=1)
    rng = np.random.default_rng(5)
    cluster_area = rng.choice(np.array(["a", "b", "c", "d"], dtype=object), len(y))
    cells, _ = _problem(n=400, seed=2)
    cells.index = pd.RangeIndex(100, 500, name="cell_id")
    cell_area = rng.choice(np.array(["a", "b", "c", "d", np.nan], dtype=object), len(cells))
    fit = partial(fit_model, MODELS[name])
    local = rollout.out_of_area_predictions(fit, X, y, cluster_area, cells, cell_area, engine=LOCAL)
    remote = rollout.out_of_area_predictions(
        fit, X, y, cluster_area, cells, cell_area, engine=spark
    )
    pd.testing.assert_series_equal(local, remote, check_exact=True)
    assert remote[pd.isna(cell_area)].isna().all() and remote.notna().sum() > 250


@pytest.mark.spark
@pytest.mark.slow
def test_rollout_on_spark_predicts_every_chunk_in_order(
    spark: SparkEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = _problem(n=150)
    models = {n: fit_model(cfg, X, y) for n, cfg in MODELS.items()}
    cells, _ = _problem(n=230, seed=4)
    cells.index = pd.Index([f"cell{i}" for i in range(230)], name="cell_id")
    monkeypatch.setattr(rollout, "PREDICT_CHUNK", 50)  # five tasks, the last one short
    remote = rollout.predict_table(models, cells, engine=spark)
    local = rollout.predict_table(models, cells, engine=LOCAL)
    pd.testing.assert_frame_equal(remote, local, check_exact=True)
    for n, model in models.items():  # each column is that model's own prediction (BLAS
        # blocks a 50-row chunk unlike 230 rows: the same to rounding, not to the bit)
        np.testing.assert_allclose(remote[n].to_numpy(), model.predict(cells), rtol=1e-12)


# -- the tiny world, end to end on both engines --------------------------------------------


@dataclass
class Mapped:
    """What one engine made of the tiny world."""

    training: Training
    cells: gpd.GeoDataFrame
    estimates: EstimateResult
    metrics: dict[str, Any]


def _map_tiny(tiny_world: Path, engine: Any, cache: Path) -> Mapped:
    """Fit the tiny world's model and map it on ``engine``, as ``pipeline.run`` does."""
    from povertymap.io.configfile import read_config
    from povertymap.pipeline import map_and_estimate
    from povertymap.studyarea import load_study_area

    cfg = read_config(tiny_world)
    area = load_study_area(cfg)
    model = MappingModel.from_config(cfg).fit(area, engine=engine, cache_dir=cache)
    cells, estimates, metrics = map_and_estimate(model, area, model.training_, engine=engine)
    return Mapped(model.training_, cells, estimates, metrics)


@pytest.fixture(scope="module")
def tiny_maps(
    spark: SparkEngine, tiny_world: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Mapped]:
    root = tmp_path_factory.mktemp("engines")
    return {
        "local": _map_tiny(tiny_world, LOCAL, root / "local-cache"),
        "spark": _map_tiny(tiny_world, spark, root / "spark-cache"),
    }


@pytest.mark.spark
@pytest.mark.slow
def test_tiny_world_features_are_the_same_on_spark(tiny_maps: dict[str, Mapped]) -> None:
    local, remote = tiny_maps["local"].training.features, tiny_maps["spark"].training.features
    for table in ("clusters", "cells", "cell_facts"):
        a, b = getattr(local, table), getattr(remote, table)
        assert a is not None and b is not None and len(a) > 50
        assert a.index.equals(b.index) and list(a.columns) == list(b.columns), table
        numeric = a.select_dtypes("number").columns
        assert len(numeric) > 0
        np.testing.assert_allclose(
            b[numeric].to_numpy(float), a[numeric].to_numpy(float), rtol=0, atol=1e-9
        )
        other = [c for c in a.columns if c not in numeric]
        pd.testing.assert_frame_equal(a[other], b[other])
    assert local.cells is not None and local.cells.shape[1] > 40  # every block, CNN included


@pytest.mark.spark
@pytest.mark.slow
def test_tiny_world_predictions_and_cv_are_the_same_on_spark(
    tiny_maps: dict[str, Mapped],
) -> None:
    local, remote = tiny_maps["local"], tiny_maps["spark"]
    pd.testing.assert_frame_equal(local.training.oof, remote.training.oof, check_exact=True)
    assert local.metrics["cv"]["r2"] == remote.metrics["cv"]["r2"]
    columns = ["raw_estimate", "estimate", "lower", "upper", "pred_out_of_area", "baseline"]
    assert set(columns) <= set(local.cells.columns)
    pd.testing.assert_frame_equal(
        pd.DataFrame(local.cells[columns]), pd.DataFrame(remote.cells[columns]), check_exact=True
    )
    assert local.cells["pred_out_of_area"].notna().sum() > 100


@pytest.mark.spark
@pytest.mark.slow
def test_tiny_world_admin_tables_are_the_same_on_spark(tiny_maps: dict[str, Mapped]) -> None:
    local, remote = tiny_maps["local"].estimates, tiny_maps["spark"].estimates
    assert len(local.admin) > 5 and {"estimate", "publish"} <= set(local.admin.columns)
    pd.testing.assert_frame_equal(local.admin, remote.admin, check_exact=True)
    pd.testing.assert_frame_equal(local.admin1, remote.admin1, check_exact=True)
    assert local.admin["publish"].tolist() == remote.admin["publish"].tolist()


@pytest.mark.spark
@pytest.mark.slow
def test_spark_cells_as_partitioned_geoparquet(
    tiny_maps: dict[str, Mapped], tmp_path: Path
) -> None:
    from povertymap.io.geoparquet import write_partitioned_geoparquet
    from povertymap.rundir import cells_partition_key

    cells = tiny_maps["spark"].cells
    keyed, key = cells_partition_key(cells)
    assert key == "parent_id"  # the tiny world has admin-1 regions
    folder = write_partitioned_geoparquet(keyed, tmp_path / "cells", by=key)
    regions = sorted(cells["parent_id"].unique())
    assert sorted(p.name for p in folder.iterdir()) == [f"parent_id={r}" for r in regions]
    one = gpd.read_parquet(folder / f"parent_id={regions[0]}" / "part-0.parquet")
    assert one.crs == cells.crs and one.index.name == "cell_id" and "parent_id" not in one
    pd.testing.assert_index_equal(one.index, cells.index[cells["parent_id"] == regions[0]])
    back = gpd.read_parquet(folder)  # the whole dataset, the partition column restored
    back["parent_id"] = back["parent_id"].astype(str)
    back = back.loc[cells.index, list(cells.columns)]
    assert back.geometry.geom_equals(cells.geometry).all()
    numeric = cells.select_dtypes("number").columns
    assert np.array_equal(
        back[numeric].to_numpy(float), cells[numeric].to_numpy(float), equal_nan=True
    )
    assert back["parent_id"].tolist() == cells["parent_id"].tolist()


# -- configuration and the error paths (no Spark session needed) ---------------------------


def test_features_config_accepts_spark_and_a_master() -> None:
    cfg = FeaturesConfig(engine="spark", spark_master="spark://head:7077")
    assert cfg.engine == "spark" and cfg.spark_master == "spark://head:7077"
    assert FeaturesConfig().spark_master is None
    with pytest.raises(ValueError, match="spark_master is blank"):
        FeaturesConfig(engine="spark", spark_master="  ")


def test_the_master_comes_from_config_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POVERTYMAP_SPARK_MASTER", raising=False)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert spark_module.spark_master() == "local[*]"
    monkeypatch.setenv("POVERTYMAP_SPARK_MASTER", "local[3]")
    assert spark_module.spark_master() == "local[3]"
    assert spark_module.spark_master("spark://head:7077") == "spark://head:7077"
    monkeypatch.delenv("POVERTYMAP_SPARK_MASTER")
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "4242")  # under spark-submit: its --master
    assert spark_module.spark_master() is None


def test_spark_without_pyspark_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "pyspark" or m.startswith("pyspark.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark raises ImportError
    with pytest.raises(ConfigError, match=r"needs pyspark.*pip install 'povertymap\[spark\]'"):
        get_engine("spark")
    assert isinstance(get_engine("local"), LocalEngine)  # the default engine is unaffected


def test_spark_without_java_names_java_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("pyspark")
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))  # a folder without bin/java
    with pytest.raises(ConfigError, match=r"JAVA_HOME=.* has no bin/java.*set JAVA_HOME"):
        get_engine("spark", master="local[2]")
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match=r"no java is on PATH.*Java 17"):
        SparkEngine()


def test_cli_run_engine_and_jobs_options(monkeypatch: pytest.MonkeyPatch, tiny: Any) -> None:
    import povertymap.pipeline
    from povertymap.cli import app

    seen: list[Any] = []

    def fake_run(cfg: Any, **kwargs: Any) -> Any:
        seen.append(cfg)
        raise ConfigError("stopped after reading the config")

    monkeypatch.setattr(povertymap.pipeline, "run", fake_run)
    path = tiny.write()
    result = CliRunner().invoke(app, ["run", str(path), "--engine", "spark", "--no-track"])
    assert result.exit_code == 2 and "stopped after reading" in result.stderr
    assert seen[0].features.engine == "spark"
    result = CliRunner().invoke(app, ["run", str(path), "--engine", "dask", "--no-track"])
    assert result.exit_code == 2 and "unknown engine 'dask'" in result.stderr
    assert "--engine local|spark" in result.stderr
    result = CliRunner().invoke(app, ["run", str(path), "--jobs", "2", "--no-track"])
    assert result.exit_code == 2 and seen[-1].features.n_jobs == 2
    assert seen[-1].features.engine == "local"
    result = CliRunner().invoke(app, ["run", str(path), "--jobs", "0", "--no-track"])
    assert result.exit_code == 2 and len(seen) == 2  # refused before the job
