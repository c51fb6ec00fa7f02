"""The CNN and random-feature blocks on 16-bit reflectance imagery (issue 11, failure 4).

Before, ``cloud_min`` was 150, an 8-bit DN, applied to the raw pixels: on Sentinel-2 L2A
DN (1000 + 10000 x reflectance) every pixel counted as cloud and fitting stopped with "no
valid imagery pixels". Now ``cloud_min`` is a reflectance and the imagery is read with its
scale, offset and SCL mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import yaml
from rasterio.transform import from_origin

from builders import UTM, write_tif
from models.deep.deep_builders import (
    CLOUD,
    IMG_RES,
    IMG_X0,
    IMG_Y1,
    TINY_SETTINGS,
    write_imagery_area,
)
from povertymap.engine.local import LocalEngine
from povertymap.errors import ConfigError
from povertymap.features.embeddings import RandomConvFeatures, TransferCNNFeatures
from povertymap.io.configfile import read_config
from povertymap.models.deep.tiles import CLOUD_MIN
from povertymap.studyarea import StudyArea, load_study_area

ENGINE = LocalEngine()
BANDS = ["red", "green", "blue", "nir"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deep-test area: 8-bit ``imagery.tif`` and the same ground as Sentinel-2 L2A DN
    (``s2.tif``, with the 2 x 2 km cloud at reflectance 0.98), plus an SCL layer marking
    the cloud (9) and a strip of cloud shadow (3) at x 725-727 km."""
    root = tmp_path_factory.mktemp("emb16")
    write_imagery_area(root)
    with rasterio.open(root / "imagery.tif") as ds:
        dn8 = ds.read()
    dn16 = np.rint(dn8.astype(np.float64) / 255.0 * 1e4 + 1000).astype("uint16")
    transform = from_origin(IMG_X0, IMG_Y1, IMG_RES, IMG_RES)
    write_tif(root / "s2.tif", dn16, crs=UTM, transform=transform, nodata=0, descriptions=BANDS)
    _, rows, cols = dn8.shape
    xs = IMG_X0 + (np.arange(cols) + 0.5) * IMG_RES
    ys = IMG_Y1 - (np.arange(rows) + 0.5) * IMG_RES
    scl = np.full((rows, cols), 4, dtype="uint8")
    scl[((ys >= CLOUD[1]) & (ys < CLOUD[3]))[:, None] & ((xs >= CLOUD[0]) & (xs < CLOUD[2]))] = 9
    scl[:, (xs >= 725_000) & (xs < 727_000)] = 3
    write_tif(root / "scl.tif", scl, crs=UTM, transform=transform)
    return root


def _area(root: Path, imagery: dict) -> StudyArea:
    cfg = yaml.safe_load((root / "study.yaml").read_text())
    cfg["rasters"]["imagery"] = imagery
    path = root / f"study-{len(list(root.glob('study-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return load_study_area(read_config(path))


@pytest.fixture(scope="module")
def area16(root: Path) -> StudyArea:
    return _area(root, {"path": "s2.tif", "bands": BANDS, "offset": -0.1})


@pytest.fixture(scope="module")
def area8(root: Path) -> StudyArea:
    return load_study_area(read_config(root / "study.yaml"))


def test_the_8_bit_constant_is_what_failed_and_is_refused_now(root: Path) -> None:
    with rasterio.open(root / "s2.tif") as ds:
        dn = ds.read()
    # the old test: every visible band >= 150 DN, true of every 16-bit pixel
    assert (dn[:3] >= 150).all(axis=0).all()
    # a DN threshold is no reflectance: refused with the fix, not silently applied
    with pytest.raises(ConfigError, match="cloud_min=150.0 is not a reflectance"):
        RandomConvFeatures(cloud_min=150.0)
    with pytest.raises(ConfigError, match="not a reflectance"):
        TransferCNNFeatures(cloud_min=150.0)


def test_random_features_work_on_16_bit_imagery_with_the_defaults(
    area16: StudyArea, area8: StudyArea
) -> None:
    block = RandomConvFeatures(n_filters=8, sample_tiles=32, random_state=1)
    assert block.cloud_min == CLOUD_MIN
    block.fit(area16, engine=ENGINE)  # "no valid imagery pixels" before
    cells = block.transform(area16, area16.grid, engine=ENGINE)
    cloudy = _cells_in(area16, CLOUD)
    assert len(cloudy) == 4
    # the default reflectance threshold finds the cloud (0.98) ...
    assert (cells.loc[cloudy, "rcf_valid"] == 0).all()
    valid = cells["rcf_valid"] == 1
    assert valid.mean() > 0.9 and np.isfinite(cells[valid].to_numpy()).all()
    # ... and flags the same cells as on the 8-bit imagery of the same ground (whose white
    # test "roofs", 0.7 in every band, make a few dense western cells cloud-like)
    same = RandomConvFeatures(n_filters=8, sample_tiles=32, random_state=1).fit(
        area8, engine=ENGINE
    )
    cells8 = same.transform(area8, area8.grid, engine=ENGINE)
    assert (cells8["rcf_valid"] == cells["rcf_valid"]).all()


def test_a_block_fitted_on_8_bit_imagery_reads_16_bit_imagery_in_its_units(
    area8: StudyArea, area16: StudyArea
) -> None:
    block = RandomConvFeatures(n_filters=8, sample_tiles=32, random_state=1)
    block.fit(area8, engine=ENGINE)
    assert block.pixel_units_ == pytest.approx((1 / 255, 0.0))
    f8 = block.transform(area8, area8.grid, engine=ENGINE)
    f16 = block.transform(area16, area16.grid, engine=ENGINE)
    ok = f8["rcf_valid"] == 1
    assert (f16["rcf_valid"] == f8["rcf_valid"]).all()
    # the same ground gives the same features, up to the 16-bit rounding of 8-bit DN
    np.testing.assert_allclose(f16[ok], f8[ok], rtol=1e-3, atol=1e-3)
    # without the conversion the raw 16-bit DN would be ~40x the 8-bit band statistics
    del block.pixel_units_
    block.cache_dir = None
    block._tmp = None  # a fresh cell store: recompute the vectors
    raw = block.transform(area16, area16.grid, engine=ENGINE)
    assert not np.allclose(raw[ok], f8[ok], rtol=0.1)


def test_scl_classes_mask_the_random_features(root: Path) -> None:
    area = _area(
        root,
        {
            "path": "s2.tif",
            "bands": BANDS,
            "offset": -0.1,
            "mask": {"path": "scl.tif", "classes": [3, 8, 9, 10]},
        },
    )
    block = RandomConvFeatures(n_filters=4, sample_tiles=32, cloud_min=None, random_state=1)
    cells = block.fit(area, engine=ENGINE).transform(area, area.grid, engine=ENGINE)
    shadow = _cells_in(area, (725_000, 9_000_000, 727_000, 9_400_000))
    masked = [*_cells_in(area, CLOUD), *shadow]
    assert len(shadow) >= 10
    assert (cells.loc[masked, "rcf_valid"] == 0).all()
    assert cells.loc[masked, "rcf_0"].isna().all()
    assert (cells.drop(index=masked)["rcf_valid"] == 1).all()


@pytest.mark.dl
@pytest.mark.slow
def test_the_transfer_cnn_trains_and_embeds_on_16_bit_imagery_with_an_scl_mask(
    root: Path,
) -> None:
    pytest.importorskip("tensorflow")
    area = _area(
        root,
        {
            "path": "s2.tif",
            "bands": BANDS,
            "offset": -0.1,
            "mask": {"path": "scl.tif"},  # the SCL cloud classes by default
        },
    )
    settings = {k: v for k, v in TINY_SETTINGS.items() if k != "cloud_min"}
    block = TransferCNNFeatures(**settings, random_state=0)  # type: ignore[arg-type]
    block.fit(area, engine=ENGINE)  # "no valid imagery pixels" before
    assert block.pixel_units_ == (1e-4, -0.1)
    cells = block.transform(area, area.grid, engine=ENGINE)
    masked = [*_cells_in(area, CLOUD), *_cells_in(area, (725_000, 0, 727_000, 1e8))]
    assert (cells.loc[masked, "cnn_valid"] == 0).all()
    clear = cells.drop(index=masked)
    assert (clear["cnn_valid"] == 1).all() and np.isfinite(clear.to_numpy()).all()
    assert (clear.drop(columns="cnn_valid").std() > 0).all()


def _cells_in(area: StudyArea, bounds: tuple[float, float, float, float]) -> list[str]:
    grid = area.grid
    inside = shapely.within(grid.geometry.values, shapely.box(*bounds))
    return list(grid.index[inside])
