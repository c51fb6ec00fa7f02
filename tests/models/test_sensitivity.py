"""Re-displaced clusters: their features, the CV's sensitivity to them, and the positional
correction of the cell intervals that uses them (on the simulator's tiny country)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from povertymap.engine import LocalEngine
from povertymap.estimate.displacement import displace_clusters
from povertymap.features.build import FeatureSet, build_features, compute_features
from povertymap.features.urban import cluster_urban
from povertymap.io.configfile import read_config
from povertymap.models.sensitivity import redisplaced_features
from povertymap.pipeline import evaluate
from povertymap.studyarea import StudyArea, cluster_buffers, load_study_area

pytestmark = pytest.mark.slow

ENGINE = LocalEngine()


@pytest.fixture(scope="module")
def fitted(tiny_world: Path) -> tuple[StudyArea, FeatureSet]:
    area = load_study_area(read_config(tiny_world))
    return area, compute_features(area, for_map=True, engine=ENGINE)


def _urban(features: FeatureSet) -> pd.Series | None:
    assert features.cell_facts is not None
    return features.cell_facts["urban"] if features.urban_rule else None


def test_redisplaced_features_are_those_of_each_draw_computed_alone(
    fitted: tuple[StudyArea, FeatureSet],
) -> None:
    area, features = fitted
    tables = redisplaced_features(
        area, features.blocks, 2, engine=ENGINE, urban_cells=_urban(features)
    )
    assert redisplaced_features(area, features.blocks, 0, engine=ENGINE) == []
    # the same seeded draws, one build at a time, as the clusters' own features are built
    clusters = pd.DataFrame(area.clusters.drop(columns="geometry"))
    clusters["easting"], clusters["northing"] = area.clusters.geometry.x, area.clusters.geometry.y
    rng = np.random.default_rng(area.config.model.random_state)
    radii = area.config.features.buffer_m.model_dump()
    urban = _urban(features)
    for table in tables:
        moved = displace_clusters(clusters, rng, admin=area.require_admin())
        points = area.clusters.set_geometry(
            gpd.points_from_xy(moved["easting"], moved["northing"], crs=area.crs)
        )
        flags = cluster_urban(points, urban, area.cell_size) if urban is not None else None
        alone = build_features(
            features.blocks, area, cluster_buffers(points, radii, urban=flags), engine=ENGINE
        )
        pd.testing.assert_frame_equal(table, alone, check_exact=True)
        assert table.index.equals(features.clusters.index)
        assert list(table.columns) == list(features.clusters.columns)
        # moved 2-5 km, the clusters' nightlights differ from those at the published points
        assert not np.allclose(table["nl_mean"], features.clusters["nl_mean"])
    assert not tables[0].equals(tables[1])


def test_evaluate_reports_the_cv_with_clusters_displaced_again(
    tiny_world: Path, tmp_path: Path
) -> None:
    result = evaluate(read_config(tiny_world), out=tmp_path / "ev", redisplace=2)
    metrics = json.loads((result.path / "metrics.json").read_text())
    moved = metrics["displacement"]
    assert moved["draws"] == 2 and len(moved["r2_redisplaced"]) == 2
    assert moved["r2"] == metrics["cv"]["r2"]
    change = np.asarray(moved["r2_redisplaced"]) - moved["r2"]
    assert moved["mean_change"] == pytest.approx(change.mean())
    assert moved["max_abs_change"] == pytest.approx(np.abs(change).max())
    assert moved["sd"] == pytest.approx(np.std(moved["r2_redisplaced"], ddof=1))
    assert "displacement" in metrics["timings_s"]


def test_a_run_with_the_positional_correction_keeps_its_cross_validation(
    tiny_world: Path, tmp_path: Path
) -> None:
    from povertymap.pipeline import run
    from povertymap.rundir import open_run

    cfg = read_config(tiny_world)
    cfg = cfg.model_copy(update={"estimate": cfg.estimate.model_copy(update={"position_draws": 2})})
    result = run(cfg, runs=tmp_path)
    golden = json.loads((Path(__file__).parents[1] / "data/golden/tiny-metrics.json").read_text())
    metrics = result.metrics
    # the fold models also predicted the moved clusters; their own predictions are as before
    assert metrics["cv"]["r2"] == golden["cv"]["r2"]
    position = metrics["estimate"]["position"]
    assert position["draws"] == 2 and position["pooled"] >= 0
    assert 0 <= position["share_of_residual"] < 1
    assert metrics["estimate"]["calibration"]["pred_position_var"] >= 0
    assert "position" not in golden["estimate"]
    oof = open_run(result.path).oof()
    assert {"pred_moved_0", "pred_moved_1"} <= set(oof.columns)
    assert not np.allclose(oof["pred_moved_0"], oof["pred"])
