"""Tile cutting: exact window arithmetic (aligned, edge, unaligned, margin), masks, stats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.transform import from_origin

from builders import write_tif
from povertymap.errors import RasterError
from povertymap.io.raster import open_raster
from povertymap.models.deep.labels import LightClasses, cell_means, light_classes
from povertymap.models.deep.tiles import (
    TileBatch,
    TileGrid,
    band_stats,
    cell_blocks,
    cloud_mask,
    iter_tile_blocks,
    normalise_tiles,
    read_tiles,
    sample_tiles,
)

UTM = "EPSG:32736"
X0, Y1 = 700_000.0, 9_300_000.0  # raster origin, a multiple of the 100 m cells
CELL = 100.0  # cells of 100 m, pixels of 20 m: 5 x 5 pixels per cell


def ramp(rows: int = 20, cols: int = 30) -> np.ndarray:
    """Three bands: band b holds 1000 * b + 100 * row + col (+1 so nothing is 0)."""
    r, c = np.mgrid[0:rows, 0:cols]
    return np.stack([1000 * b + 100 * r + c + 1 for b in range(3)]).astype("int32")


@pytest.fixture
def raster(tmp_path: Path) -> Path:
    return write_tif(
        tmp_path / "img.tif", ramp(), crs=UTM, transform=from_origin(X0, Y1, 20, 20), nodata=0
    )


def cell_of(col: int, row: int) -> tuple[int, int]:
    """(ix, iy) of the cell whose top-left pixel is (col, row) of the aligned raster."""
    return int((X0 + col * 20) // CELL), int((Y1 - row * 20) // CELL) - 1


def test_aligned_tile_is_exactly_the_cells_pixels(raster: Path) -> None:
    src = open_raster(raster)
    with src.reader() as r:
        grid = TileGrid(r.transform, CELL)
        assert grid.shape == (5, 5)
        ix, iy = cell_of(10, 5)  # pixels rows 5-9, cols 10-14
        tiles = read_tiles(r, grid, np.array([ix]), np.array([iy]))
    expected = np.moveaxis(ramp()[:, 5:10, 10:15], 0, -1)
    np.testing.assert_array_equal(tiles.pixels[0], expected)
    assert tiles.valid.all()


def test_many_tiles_from_one_read_match_single_reads(raster: Path) -> None:
    src = open_raster(raster)
    ix = np.array([7000, 7001, 7005, 7002])
    iy = np.array([92999, 92998, 92996, 92999])
    with src.reader() as r:
        grid = TileGrid(r.transform, CELL)
        together = read_tiles(r, grid, ix, iy)
        for k in range(len(ix)):
            alone = read_tiles(r, grid, ix[k : k + 1], iy[k : k + 1])
            np.testing.assert_array_equal(together.pixels[k], alone.pixels[0])
            np.testing.assert_array_equal(together.valid[k], alone.valid[0])


def test_tile_at_the_raster_edge_is_masked_outside(raster: Path) -> None:
    src = open_raster(raster)
    with src.reader() as r:
        grid = TileGrid(r.transform, CELL)
        # the cell left of the raster's last column of cells, shifted half out: use the
        # cell whose tile covers cols 25-29 and the one beyond (cols 30-34, all outside)
        ix, iy = cell_of(25, 15)
        tiles = read_tiles(r, grid, np.array([ix, ix + 1]), np.array([iy, iy - 1]))
    np.testing.assert_array_equal(tiles.pixels[0], np.moveaxis(ramp()[:, 15:20, 25:30], 0, -1))
    assert tiles.valid[0].all()
    assert not tiles.valid[1].any() and (tiles.pixels[1] == 0).all()


def test_tile_straddling_the_corner(raster: Path) -> None:
    src = open_raster(raster)
    with src.reader() as r:
        grid = TileGrid(r.transform, CELL, margin_m=40.0)  # 2 pixels of margin: 9 x 9
        assert grid.shape == (9, 9)
        ix, iy = cell_of(0, 0)  # tile covers rows -2..6, cols -2..6
        tiles = read_tiles(r, grid, np.array([ix]), np.array([iy]))
    valid = tiles.valid[0]
    assert not valid[:2].any() and not valid[:, :2].any() and valid[2:, 2:].all()
    np.testing.assert_array_equal(tiles.pixels[0, 2:, 2:], np.moveaxis(ramp()[:, 0:7, 0:7], 0, -1))
    assert tiles.valid_fraction[0] == pytest.approx(49 / 81)


def test_margin_widens_the_tile_symmetrically(raster: Path) -> None:
    src = open_raster(raster)
    with src.reader() as r:
        grid = TileGrid(r.transform, CELL, margin_m=20.0)
        ix, iy = cell_of(10, 5)
        tiles = read_tiles(r, grid, np.array([ix]), np.array([iy]))
    np.testing.assert_array_equal(tiles.pixels[0], np.moveaxis(ramp()[:, 4:11, 9:16], 0, -1))


@pytest.mark.parametrize(
    ("shift", "col_offset"),
    [(7.0, 0), (-7.0, 0), (13.0, -1), (-13.0, 1)],  # the tile starts at the nearest pixel edge
)
def test_unaligned_cell_starts_at_the_nearest_pixel_edge(
    tmp_path: Path, shift: float, col_offset: int
) -> None:
    """Raster shifted east by ``shift`` m: cell edges fall inside pixels."""
    path = write_tif(
        tmp_path / "shifted.tif",
        ramp(),
        crs=UTM,
        transform=from_origin(X0 + shift, Y1, 20, 20),
        nodata=0,
    )
    src = open_raster(path)
    with src.reader() as r:
        grid = TileGrid(r.transform, CELL)
        ix, iy = cell_of(10, 5)  # x0 = X0 + 200: pixel col 10 - shift/20
        tiles = read_tiles(r, grid, np.array([ix]), np.array([iy]))
    c0 = 10 + col_offset
    np.testing.assert_array_equal(tiles.pixels[0], np.moveaxis(ramp()[:, 5:10, c0 : c0 + 5], 0, -1))


def test_non_divisible_pixel_size_rounds_the_tile_size(tmp_path: Path) -> None:
    path = write_tif(
        tmp_path / "px30.tif", ramp(), crs=UTM, transform=from_origin(X0, Y1, 30, 30), nodata=0
    )
    with open_raster(path).reader() as r:
        grid = TileGrid(r.transform, CELL)  # 100 / 30 = 3.33 pixels -> 3
        assert grid.shape == (3, 3)
        row0, col0 = grid.origin(np.array([7002]), np.array([92998]))  # x0 = +200, y1 = -100
    assert (int(row0[0]), int(col0[0])) == (3, 7)  # 100/30 = 3.33 -> 3, 200/30 = 6.67 -> 7


def test_rotated_grid_is_refused() -> None:
    with pytest.raises(RasterError, match="north-up"):
        TileGrid(Affine(20, 5, X0, 5, -20, Y1), CELL)


def test_nodata_in_any_band_and_clouds_are_invalid(tmp_path: Path) -> None:
    # 8-bit values 1-200 (reflectance DN / 255), below the cloud threshold 0.94 (DN 240)
    data = (ramp() % 200 + 1).astype("uint8")
    data[1, 6, 11] = 0  # nodata in band 2 only
    data[:, 8, 12] = 250  # white in every band: cloud
    data[:2, 9, 13] = 250  # bright in two bands only: not cloud
    path = write_tif(
        tmp_path / "masked.tif", data, crs=UTM, transform=from_origin(X0, Y1, 20, 20), nodata=0
    )
    with open_raster(path).reader() as r:
        grid = TileGrid(r.transform, CELL)
        ix, iy = cell_of(10, 5)
        tiles = read_tiles(r, grid, np.array([ix]), np.array([iy]), cloud_min=0.94)
    expected_valid = np.ones((5, 5), bool)
    expected_valid[1, 1] = False  # (row 6, col 11)
    expected_valid[3, 2] = False  # (row 8, col 12)
    np.testing.assert_array_equal(tiles.valid[0], expected_valid)
    assert (tiles.pixels[0][~expected_valid] == 0).all()
    assert tiles.pixels[0, 4, 3, 0] == 250  # the two-band bright pixel is kept


def test_cloud_mask_needs_all_visible_bands() -> None:
    px = np.array([[[200, 200, 200, 10], [200, 199, 200, 255], [10, 10, 10, 255]]])
    # cloud_min is a reflectance: 0.782 is between DN 199 and 200 at a scale of 1/255
    np.testing.assert_array_equal(cloud_mask(px, 0.782, scale=1 / 255), [[True, False, False]])
    assert not cloud_mask(px, None).any()


def test_blocks_group_aligned_cells_in_raster_order() -> None:
    ix = np.array([0, 5, 3, 9, -1])
    iy = np.array([0, 0, 9, 5, 0])
    blocks = cell_blocks(ix, iy, 4)
    keys = [(int(ix[b[0]] // 4), int(iy[b[0]] // 4)) for b in blocks]
    assert keys == [(0, 2), (2, 1), (-1, 0), (0, 0), (1, 0)]
    assert sorted(np.concatenate(blocks).tolist()) == list(range(5))


def test_blocks_stream_the_same_tiles(raster: Path) -> None:
    ix = np.arange(7000, 7006).repeat(4)
    iy = np.tile(np.arange(92996, 93000), 6)
    with open_raster(raster).reader() as r:
        grid = TileGrid(r.transform, CELL)
        whole = read_tiles(r, grid, ix, iy)
        seen = np.zeros(len(ix), bool)
        for idx, batch in iter_tile_blocks(r, grid, ix, iy, block_cells=2):
            np.testing.assert_array_equal(batch.pixels, whole.pixels[idx])
            seen[idx] = True
    assert seen.all()


def test_sample_tiles_is_reproducible(raster: Path) -> None:
    ix = np.arange(7000, 7006).repeat(4)
    iy = np.tile(np.arange(92996, 93000), 6)
    with open_raster(raster).reader() as r:
        grid = TileGrid(r.transform, CELL)
        a = sample_tiles(r, grid, ix, iy, 5, random_state=3)
        b = sample_tiles(r, grid, ix, iy, 5, random_state=3)
        whole = read_tiles(r, grid, ix, iy)
    assert len(a) == 5 and len(set(zip(a.ix, a.iy, strict=True))) == 5
    np.testing.assert_array_equal(a.pixels, b.pixels)
    for k in range(5):
        j = int(np.flatnonzero((ix == a.ix[k]) & (iy == a.iy[k]))[0])
        np.testing.assert_array_equal(a.pixels[k], whole.pixels[j])


def test_band_stats_use_valid_pixels_only() -> None:
    rng = np.random.default_rng(0)
    px = rng.normal([10, -5], [2, 0.5], size=(3, 4, 4, 2))
    valid = rng.random((3, 4, 4)) > 0.3
    px[~valid] = 1e6  # would wreck the stats if counted
    half = TileBatch(np.zeros(3), np.zeros(3), px, valid)
    stats = band_stats(iter([half.subset(slice(0, 1)), half.subset(slice(1, 3))]))
    v = px[valid]
    np.testing.assert_allclose(stats.mean, v.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, v.std(axis=0), rtol=1e-9)


def test_constant_band_gets_unit_std_and_normalised_tiles_zero_where_invalid() -> None:
    px = np.full((2, 3, 3, 2), 7.0)
    px[..., 1] = np.arange(18).reshape(2, 3, 3)
    valid = np.ones((2, 3, 3), bool)
    valid[0, 0, 0] = False
    batch = TileBatch(np.zeros(2), np.zeros(2), px, valid)
    stats = band_stats([batch])
    assert stats.std[0] == 1.0 and stats.mean[0] == 7.0
    z = normalise_tiles(batch, stats)
    assert z.dtype == np.float32
    assert (z[0, 0, 0] == 0).all()
    np.testing.assert_allclose(z[..., 1][valid].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(z[..., 1][valid].std(), 1.0, rtol=1e-5)


def test_no_valid_pixel_is_an_error() -> None:
    batch = TileBatch(np.zeros(1), np.zeros(1), np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2), bool))
    with pytest.raises(RasterError, match="no valid imagery"):
        band_stats([batch])


def test_cell_means_of_a_raster_in_another_crs(tmp_path: Path) -> None:
    """Nightlights in EPSG:4326 read warped to UTM: lit block cells get its value."""
    lights = np.zeros((16, 16), "float32")
    lights[4:12, 4:12] = 12.0  # lon 35.04-35.14, lat -6.04 to -6.14
    path = write_tif(
        tmp_path / "nl.tif",
        lights,
        crs="EPSG:4326",
        transform=from_origin(34.99, -5.99, 0.0125, 0.0125),
    )
    src = open_raster(path)
    from pyproj import Transformer

    to_utm = Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    inside = to_utm.transform(35.09, -6.09)
    outside = to_utm.transform(35.17, -6.17)
    ix = np.array([int(inside[0] // 1000), int(outside[0] // 1000)])
    iy = np.array([int(inside[1] // 1000), int(outside[1] // 1000)])
    with src.reader(crs=UTM) as r:
        means = cell_means(r, 1000.0, ix, iy)
    np.testing.assert_allclose(means, [12.0, 0.0])
    with src.reader(crs=UTM) as r:
        far = cell_means(r, 1000.0, np.array([ix[0] + 500]), np.array([iy[0]]))
    assert np.isnan(far[0])


def test_light_classes_split_lit_cells_when_terciles_tie() -> None:
    r = np.r_[np.zeros(80), np.arange(1.0, 21.0), np.nan]
    c = light_classes(r)
    assert c == LightClasses(0.0, 10.5)
    y = c.classify(r)
    assert (y[:80] == 0).all() and (y[80:90] == 1).all() and (y[90:100] == 2).all()
    assert y[-1] == -1
    spread = light_classes(np.arange(9.0))
    assert spread.dark_max == pytest.approx(8 / 3) and spread.dim_max == pytest.approx(16 / 3)


def test_tiles_from_a_raster_in_another_crs_are_cut_from_the_warped_grid(tmp_path: Path) -> None:
    """Imagery in EPSG:4326 read warped to UTM: tiles of the VRT grid, valid inside."""
    data = np.full((2, 200, 200), 50, "uint8")
    path = write_tif(
        tmp_path / "ll.tif",
        data,
        crs="EPSG:4326",
        transform=from_origin(34.99, -5.99, 0.0002, 0.0002),  # ~22 m pixels
        nodata=0,
    )
    src = open_raster(path)
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(35.01, -6.01)
    with src.reader(crs=UTM) as r:
        grid = TileGrid(r.transform, 1000.0)
        tiles = read_tiles(r, grid, np.array([int(x // 1000)]), np.array([int(y // 1000)]))
    assert tiles.pixels.shape == (1, *grid.shape, 2)
    assert 40 <= grid.shape[0] <= 50  # 1 km of ~22 m pixels
    assert tiles.valid.all() and (tiles.pixels == 50).all()
