"""Simple imagery statistics on imagery as it comes: 8-bit, 16-bit with scale and offset,
an SCL mask, imagery covering part of the area; and models that still predict there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin

from builders import UTM, write_tif
from models.deep.deep_builders import CLOUD, IMG_RES, IMG_X0, IMG_Y1, write_imagery_area
from povertymap.config import ModelConfig
from povertymap.engine.local import LocalEngine
from povertymap.errors import ConfigError
from povertymap.features.build import compute_features
from povertymap.features.imagery import ImageryFeatures, imagery_coverage, imagery_of
from povertymap.io.configfile import read_config
from povertymap.models.classical import make_model
from povertymap.studyarea import StudyArea, load_study_area

ENGINE = LocalEngine()


def _with_imagery(root: Path, imagery: dict) -> StudyArea:
    """The deep-test area (8-bit imagery.tif) with its imagery config replaced."""
    cfg = yaml.safe_load((root / "study.yaml").read_text())
    cfg["rasters"]["imagery"] = imagery
    path = root / f"study-{len(list(root.glob('study-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return load_study_area(read_config(path))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 8-bit area, plus the same ground as 16-bit Sentinel-2-like reflectance
    (``DN16 = 10000 * DN8 / 255 + 1000``), an SCL raster and a half-covering 16-bit image."""
    root = tmp_path_factory.mktemp("units")
    write_imagery_area(root)
    with rasterio.open(root / "imagery.tif") as ds:
        dn8 = ds.read()
    reflectance = dn8.astype(np.float64) / 255.0
    dn16 = np.rint(reflectance * 1e4 + 1000).astype("uint16")
    dn16[dn8 == 0] = 0
    transform = from_origin(IMG_X0, IMG_Y1, IMG_RES, IMG_RES)
    bands = ["red", "green", "blue", "nir"]
    write_tif(root / "s2.tif", dn16, crs=UTM, transform=transform, nodata=0, descriptions=bands)
    # SCL: everything vegetation (4) but the 2 x 2 km cloud (9) and a shadow band (3)
    _, rows, cols = dn8.shape
    xs = IMG_X0 + (np.arange(cols) + 0.5) * IMG_RES
    ys = IMG_Y1 - (np.arange(rows) + 0.5) * IMG_RES
    scl = np.full((rows, cols), 4, dtype="uint8")
    cloud = ((ys >= CLOUD[1]) & (ys < CLOUD[3]))[:, None] & ((xs >= CLOUD[0]) & (xs < CLOUD[2]))
    scl[cloud] = 9
    scl[:, (xs >= 725_000) & (xs < 727_000)] = 3
    write_tif(root / "scl.tif", scl, crs=UTM, transform=transform)
    half = dn16.copy()
    half[:, :, xs >= 731_000] = 0  # no imagery east of x = 731 km
    write_tif(root / "s2-west.tif", half, crs=UTM, transform=transform, nodata=0)
    return root


@pytest.fixture(scope="module")
def area8(root: Path) -> StudyArea:
    return load_study_area(read_config(root / "study.yaml"))


def _zones(area: StudyArea) -> pd.DataFrame:
    return area.cluster_buffers({"urban": 2000.0, "rural": 5000.0})


def test_16_bit_reflectance_gives_the_features_of_the_8_bit_reflectance(
    root: Path, area8: StudyArea
) -> None:
    area16 = _with_imagery(
        root, {"path": "s2.tif", "bands": ["red", "green", "blue", "nir"], "offset": -0.1}
    )
    assert imagery_of(area16).scale == 1e-4 and imagery_of(area16).offset == -0.1
    assert imagery_of(area8).scale == pytest.approx(1 / 255)
    for block in (ImageryFeatures(cloud_min=0.585), ImageryFeatures(pixel_stats=True)):
        f8 = block.transform(area8, _zones(area8), engine=ENGINE)
        f16 = block.transform(area16, _zones(area16), engine=ENGINE)
        assert list(f8.columns) == list(f16.columns)
        # 16-bit quantisation is 1e-4 reflectance: means and spreads agree to a few 1e-5;
        # shares and quantiles count pixels above a level, where it moves a few of them
        counted = [c for c in f8 if c in ("img_roof_share",) or "_q" in c]
        smooth = [c for c in f8 if c not in counted]
        np.testing.assert_allclose(f16[smooth], f8[smooth], rtol=0, atol=2e-4)
        np.testing.assert_allclose(f16[counted], f8[counted], rtol=0, atol=3e-3)
        assert f8["img_red_mean"].between(0.1, 0.8).all()  # reflectance, not DN


def test_an_8_bit_dn_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a reflectance"):
        ImageryFeatures(cloud_min=150.0)


def test_scl_classes_are_masked(root: Path, area8: StudyArea) -> None:
    area = _with_imagery(
        root,
        {
            "path": "s2.tif",
            "bands": ["red", "green", "blue", "nir"],
            "offset": -0.1,
            "mask": {"path": "scl.tif", "classes": [3, 8, 9, 10]},
        },
    )
    grid = area.grid
    feats = ImageryFeatures().transform(area, grid, engine=ENGINE)
    plain = ImageryFeatures().transform(area8, area8.grid, engine=ENGINE)
    cx = grid.geometry.centroid.x.to_numpy()
    cy = grid.geometry.centroid.y.to_numpy()
    in_cloud = (cx > CLOUD[0]) & (cx < CLOUD[2]) & (cy > CLOUD[1]) & (cy < CLOUD[3])
    in_shadow = (cx > 725_000) & (cx < 727_000)
    masked = in_cloud | in_shadow
    assert masked.sum() >= 6
    # cells under a masked class have no valid pixel and NaN features ...
    assert (feats.loc[masked, "img_valid"] == 0).all()
    assert feats.loc[masked, "img_red_mean"].isna().all()
    # ... without the mask the cloud is seen as white ground
    assert (plain.loc[in_cloud, "img_red_mean"] > 0.9).all()
    # the other cells are unchanged, up to the 16-bit quantisation
    clear = ~masked & (feats["img_valid"] == 1).to_numpy()
    np.testing.assert_allclose(
        feats.loc[clear, "img_red_mean"], plain.loc[clear, "img_red_mean"], atol=1e-4
    )


def test_cells_outside_the_imagery_get_nan_features_valid_share_0_and_an_estimate(
    root: Path,
) -> None:
    area = _with_imagery(
        root, {"path": "s2-west.tif", "bands": ["red", "green", "blue", "nir"], "offset": -0.1}
    )
    features = compute_features(area, for_map=True, engine=ENGINE)
    assert any(isinstance(b, ImageryFeatures) for b in features.blocks)
    cells, clusters = features.cells, features.clusters
    assert cells is not None
    # cell features are over a disk of the cluster buffer radius (5 km rural, 2 km urban)
    x = area.grid.geometry.centroid.x.to_numpy()
    east, west = x > 731_000 + 5_500, x < 731_000 - 5_500
    assert east.sum() >= 20 and west.sum() >= 20
    img_cols = [c for c in cells.columns if c.startswith("img_") and c != "img_valid"]
    assert cells.loc[east, img_cols].isna().all().all()
    assert (cells.loc[east, "img_valid"] == 0).all()
    assert (cells.loc[west, "img_valid"] == 1).all()
    assert cells.loc[west, img_cols].notna().all().all()
    others = [c for c in cells.columns if c.startswith(("nl_", "pop_"))]
    assert cells.loc[east, others].notna().all().all()  # the other blocks are there
    straddling = cells["img_valid"].between(0.01, 0.99)
    assert straddling.sum() >= 10  # partly covered neighbourhoods: a share in between
    coverage = imagery_coverage(cells)
    assert coverage["without_imagery"] == int((cells["img_valid"] == 0).sum()) >= east.sum()
    assert coverage["partial"] >= straddling.sum()
    assert coverage["columns"] == ["img_valid"] and coverage["zones"] == len(cells)
    # every default model predicts every cell, with imagery or without
    y = area.clusters["target"].to_numpy(float)
    stack = ModelConfig(
        name="stack",
        estimators=[ModelConfig(name="lightgbm"), ModelConfig(name="ridge", features=["img"])],
    )
    for cfg in (ModelConfig(name="lightgbm"), ModelConfig(name="ridge"), stack):
        model = make_model(cfg).fit(clusters, y)
        pred = model.predict(cells)
        assert np.isfinite(pred).all(), cfg.name


def test_pixel_stats_see_bright_roofs_and_built_up_texture(area8: StudyArea) -> None:
    """In the deep-test imagery, bright roofs (+90 DN in every band, single pixels) are
    denser in the lit west: the roof share and the pixel-level textures fall eastwards."""
    grid = area8.grid
    feats = ImageryFeatures(pixel_stats=True).transform(area8, grid, engine=ENGINE)
    x = grid.geometry.centroid.x.to_numpy()
    west, east = x < 724_000, (x > 733_000) & (feats["img_valid"] == 1).to_numpy()
    assert feats.loc[west, "img_roof_share"].mean() > 2 * feats.loc[east, "img_roof_share"].mean()
    for col in ("img_texture_mean", "img_built_share"):
        assert feats.loc[west, col].mean() > feats.loc[east, col].mean(), col
    assert (feats.loc[feats["img_valid"] == 1, "img_ndvi_texture"] > 0).all()
    q = feats[["img_ndvi_q10", "img_ndvi_q50", "img_ndvi_q90"]].dropna().to_numpy()
    assert (np.diff(q, axis=1) >= 0).all()  # quantiles in order
    # the median from the histogram is close to the mean of a unimodal NDVI
    ok = feats["img_valid"] == 1
    np.testing.assert_allclose(
        feats.loc[ok, "img_ndvi_q50"], feats.loc[ok, "img_ndvi_mean"], atol=0.06
    )
    # the default block keeps the columns (and figures) of earlier versions; a fresh area,
    # so that both compute their cell sums over the same windows
    fresh = load_study_area(area8.config)
    plain = ImageryFeatures().transform(fresh, fresh.grid, engine=ENGINE)
    again = ImageryFeatures(pixel_stats=True).transform(fresh, fresh.grid, engine=ENGINE)
    assert not any(c in plain for c in ("img_roof_share", "img_texture_mean"))
    shared = list(plain.columns)
    np.testing.assert_array_equal(plain[shared].to_numpy(), again[shared].to_numpy())
