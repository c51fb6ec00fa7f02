"""Raster sources: GeoTIFF/COG (anything GDAL reads) opened lazily and read by windows.

A :class:`RasterSource` holds the metadata of a raster checked once when it is opened
(CRS present, nodata resolved, no undeclared sentinel values); pixel data are read window
by window through a :class:`WindowReader`, in the raster's own grid or warped to another
CRS with a WarpedVRT. Any GDAL failure while reading (a truncated or corrupt file) becomes a
:class:`~povertymap.errors.RasterError` that names the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds

from povertymap.errors import InputNotFoundError, RasterError

__all__ = ["SENTINELS", "RasterSource", "RasterWindow", "WindowReader", "open_raster"]

#: Values that data producers use for "no data" without always declaring it
#: (ESRI/ArcGIS -9999, WorldPop -99999, GDAL/float32 lowest value -3.4e38).
SENTINELS: tuple[float, ...] = (-9999.0, -99999.0, -3.4028234663852886e38)
_SAMPLE_PIXELS = 1024  # edge of the decimated read used to look for sentinels at open

NodataSpec = float | Literal["none"] | None


@dataclass(frozen=True)
class RasterWindow:
    """Pixels of one window: a masked array (bands, rows, cols) and its georeferencing."""

    data: np.ma.MaskedArray
    transform: Affine
    crs: CRS

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the window in ``crs``."""
        _, rows, cols = self.data.shape
        x0, y0 = self.transform @ (0, 0)
        x1, y1 = self.transform @ (cols, rows)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


@dataclass(frozen=True)
class RasterSource:
    """A raster file checked at open: CRS, grid, bands and its resolved nodata value."""

    path: Path
    crs: CRS
    width: int
    height: int
    count: int
    dtype: str
    transform: Affine
    nodata: float | None
    band_names: tuple[str, ...]
    nodata_declared: bool = True
    """False when neither the file nor the config says what nodata is: reads then refuse
    sentinel values instead of treating them as data."""
    block_shape: tuple[int, int] = field(default=(256, 256))

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units."""
        return (abs(self.transform.a), abs(self.transform.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in the raster's CRS."""
        x0, y0 = self.transform @ (0, 0)
        x1, y1 = self.transform @ (self.width, self.height)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    @contextmanager
    def reader(
        self, crs: CRS | None = None, resampling: Resampling = Resampling.nearest
    ) -> Iterator[WindowReader]:
        """Open the file once for many window reads, in its own CRS or warped to ``crs``."""
        with _gdal_errors(self.path), rasterio.open(self.path) as ds:
            if crs is None or CRS.from_user_input(crs) == self.crs:
                yield WindowReader(self, ds, self.crs)
            else:
                target = CRS.from_user_input(crs)
                with WarpedVRT(
                    ds,
                    crs=target.to_wkt(),
                    resampling=resampling,
                    src_nodata=self.nodata,
                    nodata=self.nodata,
                ) as vrt:
                    yield WindowReader(self, vrt, target)


class WindowReader:
    """Reads windows of an open raster (or WarpedVRT) as masked arrays.

    Pixels equal to the nodata value are masked. If the raster declares no nodata, a window
    that holds a sentinel value (e.g. -99999) raises instead of being summed as data.
    """

    def __init__(self, source: RasterSource, dataset: rasterio.io.DatasetReaderBase, crs: CRS):
        self.source = source
        self._ds = dataset
        self.crs = crs

    @property
    def transform(self) -> Affine:
        """Transform of the dataset being read (warped grid when warping)."""
        return self._ds.transform

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the dataset being read."""
        return (self._ds.height, self._ds.width)

    def read(
        self, bounds: tuple[float, float, float, float], bands: list[int] | None = None
    ) -> RasterWindow:
        """Pixels covering ``bounds`` (in the reader's CRS), masked outside the raster."""
        win = from_bounds(*bounds, transform=self._ds.transform)
        col0, row0 = math.floor(win.col_off + 1e-9), math.floor(win.row_off + 1e-9)
        col1 = math.ceil(win.col_off + win.width - 1e-9)
        row1 = math.ceil(win.row_off + win.height - 1e-9)
        return self.read_pixels(Window(col0, row0, max(col1 - col0, 1), max(row1 - row0, 1)), bands)

    def read_pixels(self, window: Window, bands: list[int] | None = None) -> RasterWindow:
        """Pixels of ``window`` (in this dataset's pixel grid); parts outside are masked."""
        idx = bands or list(range(1, self.source.count + 1))
        col0, row0 = int(window.col_off), int(window.row_off)
        width, height = int(window.width), int(window.height)
        out = np.zeros((len(idx), height, width), dtype=self.source.dtype)
        mask = np.ones(out.shape, dtype=bool)
        c0, r0 = max(col0, 0), max(row0, 0)
        c1, r1 = min(col0 + width, self._ds.width), min(row0 + height, self._ds.height)
        if c1 > c0 and r1 > r0:
            with _gdal_errors(self.source.path):
                part = self._ds.read(idx, window=Window(c0, r0, c1 - c0, r1 - r0), masked=False)
            sl = (slice(None), slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0))
            out[sl] = part
            mask[sl] = self._nodata_mask(part)
        transform = self._ds.transform @ Affine.translation(col0, row0)
        return RasterWindow(np.ma.MaskedArray(out, mask=mask), transform, self.crs)

    def _nodata_mask(self, part: np.ndarray) -> np.ndarray:
        nodata = self.source.nodata
        if not self.source.nodata_declared:
            _refuse_sentinels(part, self.source.path)
        if nodata is None:
            mask = np.zeros(part.shape, dtype=bool)
        elif isinstance(nodata, float) and math.isnan(nodata):
            mask = np.isnan(part)
        else:
            mask = part == np.asarray(nodata, dtype=part.dtype)
        if part.dtype.kind == "f":
            mask |= ~np.isfinite(part)
        return mask


def open_raster(
    path: str | Path, *, nodata: NodataSpec = None, band_names: list[str] | None = None
) -> RasterSource:
    """Open and check a raster file.

    ``nodata`` overrides the file's value: a number, ``"none"`` (every value is data) or
    ``None`` (use the file's). A raster with a CRS-less grid, a band-name list of the wrong
    length, or sentinel values without declared nodata is refused with a RasterError.
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError("file does not exist", path=path, fix="correct the path")
    with _gdal_errors(path), rasterio.open(path) as ds:
        if ds.crs is None:
            raise RasterError(
                "raster has no CRS",
                path=path,
                fix="assign one, e.g. gdal_edit.py -a_srs EPSG:4326 FILE (the CRS it was made in)",
            )
        crs = CRS.from_user_input(ds.crs.to_wkt())
        if ds.transform == Affine.identity():
            raise RasterError(
                "raster has no georeferencing (identity transform)",
                path=path,
                fix="re-export it as a GeoTIFF with its geotransform",
            )
        resolved = _resolve_nodata(ds.nodata, nodata)
        names = _band_names(ds, band_names, path)
        # A decimated read touches blocks across the whole file: it finds truncation early
        # and, when no nodata is declared, sentinel values used as nodata.
        sample = ds.read(
            out_shape=(ds.count, min(ds.height, _SAMPLE_PIXELS), min(ds.width, _SAMPLE_PIXELS)),
            resampling=Resampling.nearest,
        )
        declared = ds.nodata is not None or nodata is not None
        if not declared:
            _refuse_sentinels(sample, path)
        block = ds.block_shapes[0] if ds.block_shapes else (256, 256)
        return RasterSource(
            path=path,
            crs=crs,
            width=ds.width,
            height=ds.height,
            count=ds.count,
            dtype=ds.dtypes[0],
            transform=ds.transform,
            nodata=resolved,
            band_names=names,
            nodata_declared=declared,
            block_shape=(int(block[0]), int(block[1])),
        )


def _resolve_nodata(file_value: float | None, override: NodataSpec) -> float | None:
    if override == "none":
        return None
    if override is not None:
        return float(override)
    return None if file_value is None else float(file_value)


def _band_names(
    ds: rasterio.io.DatasetReader, names: list[str] | None, path: Path
) -> tuple[str, ...]:
    if names is not None:
        if len(names) != ds.count:
            raise RasterError(
                f"config lists {len(names)} band names ({', '.join(names)}) but the file has "
                f"{ds.count} bands",
                path=path,
                where="bands",
                fix="list exactly one name per band, in file order",
            )
        return tuple(names)
    return tuple(d if d else f"band{i + 1}" for i, d in enumerate(ds.descriptions))


def _refuse_sentinels(values: np.ndarray, path: Path) -> None:
    """Raise if ``values`` hold a usual nodata sentinel while the raster declares none."""
    if values.dtype.kind not in "if":
        return
    for sentinel in SENTINELS:
        if values.dtype.kind == "i" and not np.can_cast(np.min_scalar_type(sentinel), values.dtype):
            continue
        hit = (
            np.isclose(values, sentinel, rtol=1e-6, atol=0)
            if sentinel < -1e30
            else values == sentinel
        )
        if np.any(hit):
            band = int(np.argwhere(hit)[0][0]) + 1
            shown = "-3.4e38" if sentinel < -1e30 else f"{sentinel:g}"
            raise RasterError(
                f"holds the value {shown} (a usual nodata marker) but declares no nodata",
                path=path,
                where=f"band {band}",
                fix=f"add 'nodata: {shown}' to this raster in the config, or 'nodata: none' "
                "if it is a real value",
            )


@contextmanager
def _gdal_errors(path: Path) -> Iterator[None]:
    """Report GDAL failures (not a raster, truncated, corrupt) as a RasterError on ``path``."""
    try:
        yield
    except rasterio.errors.RasterioIOError as exc:
        msg = str(exc.__cause__ or exc)
        if "not recognized as" in msg or "not a supported" in msg.lower():
            problem = "is not a raster file GDAL can read"
            fix = "point the config at a GeoTIFF/COG (check the file type and extension)"
        else:
            problem = f"cannot be read, the file is truncated or corrupt ({msg.strip()[:160]})"
            fix = "re-download or re-export the file"
        raise RasterError(problem, path=path, fix=fix) from exc
    except rasterio.errors.RasterioError as exc:
        raise RasterError(
            f"cannot be read ({str(exc).strip()[:160]})",
            path=path,
            fix="check the file with gdalinfo",
        ) from exc
