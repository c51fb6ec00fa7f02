"""A study in the formats real users bring, from `validate` to `target`, without an edit.

The tiny synthetic country written as a DHS GPS shapefile and household recode, a
GADM-style GeoPackage, an OSM extract and 16-bit Sentinel-2-like imagery with a scene
classification mask, the imagery covering two thirds of the country (issue 11).
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from typer.testing import CliRunner

from povertymap.cli import app
from povertymap.rundir import open_run

pytestmark = pytest.mark.slow


def test_real_formats_from_validate_to_target(tmp_path: Path) -> None:
    runner = CliRunner()
    world = tmp_path / "country"
    result = runner.invoke(
        app,
        [
            "world",
            "--preset",
            "tiny",
            "--out",
            str(world),
            "--imagery",
            "sentinel2",
            "--imagery-coverage",
            "0.6667",
            "--real-formats",
        ],
    )
    assert result.exit_code == 0, result.stderr
    study = world / "study-real-formats.yaml"
    text = study.read_text()
    assert "dhs:" in text and ".gpkg" in text and ".osm" in text and "scl.tif" in text

    result = runner.invoke(app, ["validate", str(study)])
    assert result.exit_code == 0, result.stderr
    assert "run plan" in result.stdout and "(0, 0)" in result.stdout

    runs = tmp_path / "runs"
    result = runner.invoke(app, ["run", str(study), "--out", str(runs)])
    assert result.exit_code == 0, result.stderr
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_clusters"] == 60  # the 3 clusters at (0, 0) are dropped
    imagery = metrics["imagery"]
    # cells whose whole neighbourhood lies in the eastern third (5 km disks reach west)
    assert 0.0 < imagery["share_without"] < 0.34

    cells = gpd.read_parquet(run_dir / "cells.parquet")
    assert cells["estimate"].notna().all() and cells["lower"].notna().all()
    width = (cells["upper"] - cells["lower"]).to_numpy()
    seen = cells["imagery"].to_numpy(bool)
    assert (~seen).sum() == imagery["without_imagery"]
    # cells without imagery are mapped by the no-imagery model, with its own calibration
    # and intervals; the others by the model
    model = open_run(run_dir).model()
    fallback = model.reference_estimators_["no_imagery"]
    own = model.cell_estimator_
    assert np.allclose(
        cells.loc[~seen, "estimate"], fallback.calibrated(cells.loc[~seen, "no_imagery"])
    )
    assert np.allclose(cells.loc[seen, "estimate"], own.calibrated(cells.loc[seen, "raw_estimate"]))
    assert width[~seen].mean() != pytest.approx(width[seen].mean())
    assert "have no usable imagery" in (run_dir / "report.html").read_text()

    result = runner.invoke(app, ["target", str(run_dir), "--budget", "30%"])
    assert result.exit_code == 0, result.stderr
    assert "budget 30%" in result.stdout
    result = runner.invoke(app, ["info", str(run_dir)])
    assert result.exit_code == 0 and "all files match the manifest" in result.stdout
