"""The simulator's Sentinel-2-like imagery: 16-bit L2A reflectance, an SCL mask, and
imagery that covers only part of the country."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from povertymap.errors import ConfigError
from povertymap.io.configfile import read_config
from povertymap.world import generate
from povertymap.world.imagery import SCL, SCL_MASKED


@pytest.fixture(scope="module")
def world_s2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world-s2") / "tiny"
    generate("tiny", seed=7, out=out, imagery="sentinel2", imagery_coverage=2 / 3)
    return out


def test_16_bit_imagery_is_the_8_bit_ground_in_sentinel_2_units(
    world_s2: Path, world_tiny: Path
) -> None:
    with rasterio.open(world_s2 / "imagery.tif") as ds:
        assert ds.dtypes == ("uint16",) * 4 and ds.nodata == 0
        assert ds.descriptions == ("red", "green", "blue", "nir")
        assert ds.tags()["BOA_ADD_OFFSET"] == "-1000"
        dn16 = ds.read().astype(np.float64)
    with rasterio.open(world_tiny / "imagery.tif") as ds:
        dn8 = ds.read().astype(np.float64)
    covered = dn16[0] > 0
    cols = np.flatnonzero(covered.any(axis=0))
    assert cols.max() + 1 == round(2 / 3 * covered.shape[1])  # the western two thirds
    assert not covered[:, cols.max() + 1 :].any()
    rho16 = dn16[:, covered] * 1e-4 - 0.1
    rho8 = dn8[:, covered] / 320.0
    for band in range(4):
        assert np.corrcoef(rho16[band], rho8[band])[0, 1] > 0.99
        assert abs(rho16[band].mean() - rho8[band].mean()) < 0.005


def test_the_scl_layer_marks_the_clouds_and_the_config_masks_them(world_s2: Path) -> None:
    with rasterio.open(world_s2 / "scl.tif") as ds:
        scl = ds.read(1)
    with rasterio.open(world_s2 / "truth" / "cloud_mask.tif") as ds:
        cloud = ds.read(1) == 1
    with rasterio.open(world_s2 / "imagery.tif") as ds:
        covered = ds.read(1) > 0
    assert (scl[~covered] == SCL["no_data"]).all()
    truth = cloud & covered
    assert truth.sum() > 1000
    assert (scl[truth] == SCL["cloud_high"]).all()
    flagged = np.isin(scl, SCL_MASKED)
    assert flagged.sum() >= truth.sum()  # plus medium-probability rims and shadows
    assert set(np.unique(scl[covered])) <= {3, 4, 5, 6, 8, 9}
    cfg = yaml.safe_load((world_s2 / "study.yaml").read_text())
    assert cfg["rasters"]["imagery"] == {
        "path": "imagery.tif",
        "bands": ["red", "green", "blue", "nir"],
        "scale": 1e-4,
        "offset": -0.1,
        "mask": {"path": "scl.tif", "classes": [3, 8, 9, 10]},
    }
    assert read_config(world_s2 / "study.yaml").rasters["imagery"].mask is not None
    info = json.loads((world_s2 / "truth" / "world.json").read_text())
    assert info["imagery"]["format"] == "sentinel2"
    assert info["imagery"]["coverage"] == pytest.approx(2 / 3)


def test_the_8_bit_default_writes_no_mask_and_unknown_formats_are_refused(
    world_tiny: Path, tmp_path: Path
) -> None:
    assert not (world_tiny / "scl.tif").exists()
    info = json.loads((world_tiny / "truth" / "world.json").read_text())
    assert "format" not in info["imagery"]
    with pytest.raises(ConfigError, match="unknown imagery format"):
        generate("tiny", seed=7, out=tmp_path / "x", imagery="uint12")
    with pytest.raises(ConfigError, match="imagery_coverage"):
        generate("tiny", seed=7, out=tmp_path / "y", imagery_coverage=0.0)
    assert not list(tmp_path.iterdir())
