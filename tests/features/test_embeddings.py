"""Imagery embedding feature blocks: zone means, missing imagery, cache, pickling, light import."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import joblib
import numpy as np
import pandas as pd
import pytest
import shapely

from models.deep.deep_builders import CLOUD, write_imagery_area
from povertymap.engine.local import LocalEngine
from povertymap.errors import ModelError
from povertymap.features.base import ZoneChunk
from povertymap.features.embeddings import RandomConvFeatures, TransferCNNFeatures
from povertymap.io.configfile import read_config
from povertymap.models.deep.store import EmbeddingStore
from povertymap.models.deep.tiles import TileGrid, read_tiles
from povertymap.models.deep.zones import ZoneEmbeddingKernel, overlap_weights, zone_means
from povertymap.studyarea import StudyArea, load_study_area

ENGINE = LocalEngine()


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> StudyArea:
    return load_study_area(read_config(write_imagery_area(tmp_path_factory.mktemp("emb"))))


@pytest.fixture(scope="module")
def rcf(area: StudyArea) -> RandomConvFeatures:
    block = RandomConvFeatures(n_filters=8, sample_tiles=32, cloud_min=0.94, random_state=1)
    return block.fit(area, engine=ENGINE)


def test_importing_the_blocks_does_not_import_tensorflow() -> None:
    code = (
        "import sys, povertymap.features.embeddings;"
        "print(','.join(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_availability_follows_the_rasters(area: StudyArea) -> None:
    assert RandomConvFeatures().is_available(area)
    assert TransferCNNFeatures().is_available(area)
    no_lights = replace(area, rasters={"imagery": area.rasters["imagery"]})
    assert RandomConvFeatures().is_available(no_lights)
    assert not TransferCNNFeatures().is_available(no_lights)
    no_imagery = replace(area, rasters={"nightlights": area.rasters["nightlights"]})
    assert not RandomConvFeatures().is_available(no_imagery)


def test_transform_before_fit_is_an_error(area: StudyArea) -> None:
    with pytest.raises(ModelError, match="not fitted"):
        RandomConvFeatures().transform(area, area.grid, engine=ENGINE)


def test_cell_features_are_the_tiles_features(area: StudyArea, rcf: RandomConvFeatures) -> None:
    grid = area.grid
    out = rcf.transform(area, grid, engine=ENGINE)
    assert list(out.index) == list(grid.index) and out.index.name == "cell_id"
    assert list(out.columns) == [f"rcf_{k:02d}" for k in range(16)] + ["rcf_valid"]
    with area.rasters["imagery"].reader() as r:
        tiles = read_tiles(
            r,
            TileGrid(r.transform, area.cell_size),
            grid["ix"].to_numpy()[:20],
            grid["iy"].to_numpy()[:20],
            cloud_min=0.94,
        )
    direct = rcf.embed_tiles(tiles.pixels, tiles.valid)
    np.testing.assert_allclose(out.iloc[:20, :16].to_numpy(), direct, rtol=1e-5)
    assert (out["rcf_valid"].iloc[:20] == 1.0).all()


def test_cloudy_cells_get_nan_and_zones_skip_them(area: StudyArea, rcf: RandomConvFeatures) -> None:
    grid = area.grid
    cells = rcf.transform(area, grid, engine=ENGINE)
    x0, y0, x1, y1 = CLOUD
    inside = grid.index[shapely.within(grid.geometry.values, shapely.box(x0, y0, x1, y1))]
    assert len(inside) == 4
    assert cells.loc[inside, "rcf_00"].isna().all() and (cells.loc[inside, "rcf_valid"] == 0).all()
    # a zone of 2 x 2 cloudy cells plus a clear column of 2: mean of the clear ones only
    zone = shapely.box(x0, y0, x1 + 1000, y1)
    out = rcf.transform(area, _zones([zone]), engine=ENGINE)
    clear = grid.index[shapely.within(grid.geometry.values, shapely.box(x1, y0, x1 + 1000, y1))]
    np.testing.assert_allclose(
        out.iloc[0, :16].to_numpy(), cells.loc[clear].iloc[:, :16].mean().to_numpy(), rtol=1e-6
    )
    assert out["rcf_valid"].iloc[0] == pytest.approx(1 / 3)
    only_cloud = rcf.transform(area, _zones([shapely.box(x0, y0, x1, y1)]), engine=ENGINE)
    assert only_cloud.iloc[0, :16].isna().all() and only_cloud["rcf_valid"].iloc[0] == 0


def _zones(geoms: list[shapely.Geometry], ids: list[str] | None = None) -> gpd.GeoDataFrame:
    ids = ids or [f"z{i}" for i in range(len(geoms))]
    return gpd.GeoDataFrame(
        index=pd.Index(ids, name="cluster_id"), geometry=geoms, crs="EPSG:32736"
    )


def test_zone_is_the_overlap_weighted_mean_of_its_cells(
    area: StudyArea, rcf: RandomConvFeatures
) -> None:
    """A box over 1/2 of cell A, all of cell B and 1/4 of cell C: weights 1/2 : 1 : 1/4."""
    cells = rcf.transform(area, area.grid, engine=ENGINE)
    a, b, c = "725_9333", "726_9333", "727_9333"
    zone = shapely.box(725_500, 9_333_000, 727_250, 9_334_000)
    out = rcf.transform(area, _zones([zone]), engine=ENGINE)
    emb = cells.loc[[a, b, c]].iloc[:, :16].to_numpy()
    expected = (0.5 * emb[0] + 1.0 * emb[1] + 0.25 * emb[2]) / 1.75
    np.testing.assert_allclose(out.iloc[0, :16].to_numpy(), expected, rtol=1e-5)
    # a circle: weights are the circle's areas in each cell, whatever its centre
    circle = shapely.Point(726_310, 9_333_720).buffer(1600, quad_segs=32)
    out = rcf.transform(area, _zones([circle]), engine=ENGINE)
    parts = {
        cid: shapely.area(shapely.intersection(circle, geom))
        for cid, geom in zip(area.grid.index, area.grid.geometry.values, strict=True)
        if shapely.intersects(circle, geom)
    }
    w = pd.Series(parts)
    manual = (cells.loc[w.index].iloc[:, :16].mul(w, axis=0)).sum() / w.sum()
    np.testing.assert_allclose(out.iloc[0, :16].to_numpy(), manual.to_numpy(), rtol=1e-5)


def test_kernel_and_zone_means_on_a_hand_made_store(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "cells", dim=2, block_cells=4)
    ix = np.array([0, 1, 0, 1, 5])
    iy = np.array([0, 0, 1, 1, -3])
    emb = np.array([[1, 10], [2, 20], [3, 30], [np.nan, np.nan], [7, 70]], np.float32)
    store.put(ix, iy, emb)
    got, present = store.get(np.array([1, 5, 9]), np.array([0, -3, 9]))
    np.testing.assert_array_equal(got[:2], emb[[1, 4]])
    assert present.tolist() == [True, True, False] and np.isnan(got[2]).all()
    # zone over the 2 x 2 cells (0..1, 0..1) of 10 m, quarter of each; one cell is NaN
    geoms = np.array([shapely.box(5, 5, 15, 15), shapely.box(50, -30, 60, -25)])
    zone, cx, cy, area = overlap_weights(geoms, 10.0)
    assert sorted(zip(cx.tolist(), cy.tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (5, -3),
    ]
    np.testing.assert_allclose(area[zone == 0], 25.0)
    means, share = zone_means(2, zone, area, store.get(cx, cy)[0])
    np.testing.assert_allclose(means, [[2, 20], [7, 70]])
    np.testing.assert_allclose(share, [0.75, 1.0])
    kernel = ZoneEmbeddingKernel(store.root, 2, 4, 10.0, "x")
    chunk = ZoneChunk(ids=np.array(["a", "b"]), geometries=geoms, bounds=(5, -30, 60, 15))
    df = kernel(chunk)
    assert list(df.columns) == ["x_0", "x_1", "x_valid"]
    np.testing.assert_allclose(df.to_numpy(), [[2, 20, 0.75], [7, 70, 1.0]])


def test_cell_edge_touching_is_not_overlap() -> None:
    _, ix, iy, _ = overlap_weights(np.array([shapely.box(0, 0, 10, 10)]), 10.0)
    assert (ix.tolist(), iy.tolist()) == ([0], [0])


def test_rcf_cache_is_reused(area: StudyArea, tmp_path: Path) -> None:
    block = RandomConvFeatures(n_filters=4, sample_tiles=16, cache_dir=tmp_path, random_state=2)
    first = block.fit(area, engine=ENGINE).transform(area, area.grid.iloc[:30], engine=ENGINE)
    files = sorted((tmp_path).rglob("*.npz"))
    assert files
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = RandomConvFeatures(n_filters=4, sample_tiles=16, cache_dir=tmp_path, random_state=2)
    second = again.fit(area, engine=ENGINE).transform(area, area.grid.iloc[:30], engine=ENGINE)
    pd.testing.assert_frame_equal(first, second)
    assert [f.stat().st_mtime_ns for f in files] == mtimes  # read, not rewritten
    other = RandomConvFeatures(n_filters=4, sample_tiles=16, cache_dir=tmp_path, random_state=3)
    other.fit(area, engine=ENGINE).transform(area, area.grid.iloc[:30], engine=ENGINE)
    assert len({p.parent.parent for p in tmp_path.rglob("*.npz")}) == 2  # a new key


@pytest.mark.dl
@pytest.mark.slow
def test_cnn_block_trains_caches_and_pickles(
    area: StudyArea, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorflow")
    settings = {
        "width": 8,
        "depth": 2,
        "embedding_dim": 8,
        "epochs": 2,
        "batch_size": 32,
        "val_block_cells": 4,
        "stats_tiles": 64,
        "cloud_min": 0.94,
        "random_state": 0,
    }
    cache, logs = tmp_path / "cache", tmp_path / "logs"
    block = TransferCNNFeatures(cache_dir=cache, log_dir=logs, **settings)  # type: ignore[arg-type]
    block.fit(area, engine=ENGINE)
    assert not block.from_cache_ and len(block.history_["loss"]) >= 1
    assert list(logs.rglob("events.out.tfevents.*"))  # TensorBoard logs
    buffers = area.cluster_buffers()
    feats = block.transform(area, buffers, engine=ENGINE)
    assert feats.shape == (len(buffers), 9) and feats.index.equals(buffers.index)
    assert np.isfinite(feats.to_numpy()).all()

    # a second block with the same inputs and settings loads the model: no training
    import povertymap.models.deep.train as train_module

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("retrained despite the cache")

    monkeypatch.setattr(train_module, "train_transfer_cnn", no_training)
    again = TransferCNNFeatures(cache_dir=cache, log_dir=logs, **settings)  # type: ignore[arg-type]
    again.fit(area, engine=ENGINE)
    assert again.from_cache_
    pd.testing.assert_frame_equal(feats, again.transform(area, buffers, engine=ENGINE))

    # the fitted block pickles (the Keras model travels as .keras bytes), without its folders
    blob = pickle.dumps(block)
    assert str(cache).encode() not in blob and str(logs).encode() not in blob
    clone = pickle.loads(blob)
    assert clone.cache_dir is None and clone.log_dir is None  # cells recomputed in a temp folder
    cells = area.grid.iloc[:12]
    pd.testing.assert_frame_equal(
        block.transform(area, cells, engine=ENGINE), clone.transform(area, cells, engine=ENGINE)
    )


def test_cloud_threshold_on_the_wrong_scale_warns(area: StudyArea) -> None:
    from povertymap.errors import InputWarning

    # blue is about 50 + noise (DN): a reflectance threshold of 0.196 (DN 50 / 255) calls
    # most pixels cloud
    with pytest.warns(InputWarning, match=r"only \d+% of .*cloud_min=0.196"):
        RandomConvFeatures(n_filters=2, sample_tiles=8, cloud_min=0.196, min_valid=0.0).fit(
            area, engine=ENGINE
        )


def test_context_zones_average_the_neighbourhood(area: StudyArea, rcf: RandomConvFeatures) -> None:
    from povertymap.models.deep.zones import cell_context_zones

    cells = area.grid.loc[["726_9333"]]
    zones = cell_context_zones(cells, 1000.0)
    assert zones.index.equals(cells.index) and zones.crs == cells.crs
    assert zones.geometry.iloc[0].equals(shapely.box(725_000, 9_332_000, 728_000, 9_335_000))
    out = rcf.transform(area, zones, engine=ENGINE)
    every = rcf.transform(area, area.grid, engine=ENGINE)
    nine = [f"{x}_{y}" for x in (725, 726, 727) for y in (9332, 9333, 9334)]
    np.testing.assert_allclose(
        out.iloc[0, :16].to_numpy(), every.loc[nine].iloc[:, :16].mean().to_numpy(), rtol=1e-5
    )


def test_a_saved_block_transforms_after_its_run_folder_moves(
    area: StudyArea, tmp_path: Path
) -> None:
    """The cache and log folders are not pickled: a model moved elsewhere still transforms."""
    run_a, run_b = tmp_path / "A", tmp_path / "B"
    cache, logs = run_a / ".cache", run_a / "logs"
    block = RandomConvFeatures(
        n_filters=4, sample_tiles=16, cloud_min=0.94, cache_dir=cache, log_dir=logs
    )
    block.fit(area, engine=ENGINE)
    zones = area.cluster_buffers()
    before = block.transform(area, zones, engine=ENGINE)
    assert list(cache.rglob("*.npz"))  # the cells were cached in the run folder
    joblib.dump(block, run_a / "model.joblib")
    assert str(run_a).encode() not in (run_a / "model.joblib").read_bytes()
    shutil.move(run_a, run_b)
    shutil.rmtree(run_b / ".cache")
    assert not cache.exists()

    loaded = joblib.load(run_b / "model.joblib")
    assert loaded.cache_dir is None and loaded.log_dir is None
    assert loaded.key_ == block.key_
    after = loaded.transform(area, zones, engine=ENGINE)
    pd.testing.assert_frame_equal(before, after)
    assert not cache.exists()  # recomputed in a private temporary folder, not the old path
    assert not (run_b / ".cache").exists()


def test_input_digests_are_memoised_per_block(area: StudyArea) -> None:
    a = RandomConvFeatures(n_filters=2, sample_tiles=8, cloud_min=0.94)
    b = RandomConvFeatures(n_filters=2, sample_tiles=8, cloud_min=0.94)
    key = a._key(area)
    assert len(a._digests) == 1 and b._digests == {}  # one input, no state shared
    assert b._key(area) == key and a._digests == b._digests
    assert "_digests" not in a.__getstate__()
