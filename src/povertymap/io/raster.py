"""Raster sources: GeoTIFF/COG (anything GDAL reads) opened lazily and read by windows.

A :class:`RasterSource` holds the metadata of a raster checked once when it is opened
(CRS present, nodata resolved, no undeclared sentinel values); pixel data are read window
by window through a :class:`WindowReader`, in the raster's own grid or warped to another
CRS with a WarpedVRT. Any GDAL failure while reading (a truncated or corrupt file) becomes a
:class:`~povertymap.errors.RasterError` that names the file.

Imagery is a :class:`ImagerySource` (:func:`open_imagery`): the same raster plus its
radiometry (reflectance ``= DN * scale + offset``, defaults by data type, see
:func:`default_scale`), an optional class mask (a band of the imagery or a separate raster
such as a Sentinel-2 SCL layer, read nearest-neighbour onto the imagery's pixel grid) and an
optional valid reflectance range. Its readers return raw DN (so models that standardise
their input see the same numbers whatever the scale) with every masked pixel masked.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds

from povertymap.errors import ConfigError, InputNotFoundError, RasterError

if TYPE_CHECKING:
    from povertymap.config import RasterConfig

__all__ = [
    "SENTINELS",
    "ImageryReader",
    "ImagerySource",
    "PixelMask",
    "RasterSource",
    "RasterWindow",
    "WindowReader",
    "default_scale",
    "open_imagery",
    "open_raster",
    "radiometry",
]

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
        with self._dataset(crs, resampling) as (ds, target):
            yield WindowReader(self, ds, target)

    @contextmanager
    def _dataset(
        self, crs: CRS | None, resampling: Resampling
    ) -> Iterator[tuple[rasterio.io.DatasetReaderBase, CRS]]:
        """The open file (or a WarpedVRT of it in ``crs``) and the CRS it is read in."""
        with _gdal_errors(self.path), rasterio.open(self.path) as ds:
            if crs is None or CRS.from_user_input(crs) == self.crs:
                yield ds, self.crs
            else:
                target = CRS.from_user_input(crs)
                with WarpedVRT(
                    ds,
                    crs=target.to_wkt(),
                    resampling=resampling,
                    src_nodata=self.nodata,
                    nodata=self.nodata,
                ) as vrt:
                    yield vrt, target

    @contextmanager
    def aligned(
        self, like: WindowReader, resampling: Resampling = Resampling.nearest
    ) -> Iterator[WindowReader]:
        """A reader of this raster on the pixel grid of ``like`` (same CRS, transform, shape).

        Reads the file directly when its grid already is that grid, else through a
        WarpedVRT; window ``w`` of the result covers the pixels of window ``w`` of ``like``.
        """
        with _gdal_errors(self.path), rasterio.open(self.path) as ds:
            same = (
                like.crs == self.crs
                and ds.transform.almost_equals(like.transform)
                and (ds.height, ds.width) == like.shape
            )
            if same:
                yield WindowReader(self, ds, like.crs)
                return
            rows, cols = like.shape
            with WarpedVRT(
                ds,
                crs=like.crs.to_wkt(),
                transform=like.transform,
                width=cols,
                height=rows,
                resampling=resampling,
                src_nodata=self.nodata,
                nodata=self.nodata,
            ) as vrt:
                yield WindowReader(self, vrt, like.crs)


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
        return self._read_file_bands(window, bands or list(range(1, self.source.count + 1)))

    def _read_file_bands(self, window: Window, idx: list[int]) -> RasterWindow:
        """Pixels of ``window`` of the file's bands ``idx`` (1-based)."""
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


def default_scale(dtype: str) -> float:
    """Reflectance per DN when the config gives no ``scale``, by the raster's data type.

    uint8: 1/255 (DN / 255, a 0-1 brightness: 8-bit exports are rarely calibrated);
    uint16 and int16: 1e-4 (Sentinel-2 L2A and most surface-reflectance products; add the
    offset yourself, -0.1 for Sentinel-2 from processing baseline 04.00 on); float and any
    other type: 1 (values are taken as reflectance).
    """
    kind = np.dtype(dtype)
    if kind == np.uint8:
        return 1.0 / 255.0
    if kind in (np.dtype(np.uint16), np.dtype(np.int16)):
        return 1e-4
    return 1.0


@dataclass(frozen=True)
class PixelMask:
    """Pixels whose mask value is one of ``classes`` are invalid.

    ``source`` is a separate mask raster (read on the imagery's pixel grid) and ``band``
    its band; with ``source`` None, ``band`` is a band of the imagery file itself.
    """

    classes: tuple[int, ...]
    band: int = 1
    source: RasterSource | None = None


@dataclass(frozen=True)
class ImagerySource(RasterSource):
    """An imagery raster with its radiometry, class mask and valid reflectance range.

    ``count`` and ``band_names`` are those of the data bands (a mask band of the file is
    not one); ``file_bands`` maps them to the file's 1-based bands. Readers yield raw DN;
    :meth:`reflectance` converts them.
    """

    scale: float = 1.0
    offset: float = 0.0
    mask: PixelMask | None = None
    valid_range: tuple[float, float] | None = None
    file_bands: tuple[int, ...] = ()
    extent_band: bool = False
    """Readers append a last band that is 1 where the pixel lies inside the raster (or the
    warped grid) and 0 beyond its edge, never masked: what tells "no imagery here" apart
    from "imagery masked here" (see :func:`~povertymap.features.imagery`)."""

    def reflectance(self, values: np.ndarray) -> np.ndarray:
        """``values * scale + offset`` in float64."""
        return np.asarray(values, dtype=np.float64) * self.scale + self.offset

    def describe(self) -> dict[str, Any]:
        """What, besides the file, decides the pixels read (for cache keys)."""
        mask = None
        if self.mask is not None:
            mask = {
                "classes": list(self.mask.classes),
                "band": self.mask.band,
                "path": None if self.mask.source is None else str(self.mask.source.path),
            }
        return {
            "scale": self.scale,
            "offset": self.offset,
            "bands": list(self.file_bands),
            "mask": mask,
            "valid_range": None if self.valid_range is None else list(self.valid_range),
        }

    @contextmanager
    def reader(
        self, crs: CRS | None = None, resampling: Resampling = Resampling.nearest
    ) -> Iterator[WindowReader]:
        """Like :meth:`RasterSource.reader`; mask, range and nodata mask the pixels read."""
        with self._dataset(crs, resampling) as (ds, target):
            reader = ImageryReader(self, ds, target)
            if self.mask is None or self.mask.source is None:
                yield reader
                return
            with self.mask.source.aligned(reader) as mask_reader:
                reader.mask_reader = mask_reader
                yield reader


class ImageryReader(WindowReader):
    """Reads the data bands of an :class:`ImagerySource`, masking mask classes and pixels
    outside the valid reflectance range (in every band) as well as nodata."""

    source: ImagerySource

    def __init__(
        self, source: ImagerySource, dataset: rasterio.io.DatasetReaderBase, crs: CRS
    ) -> None:
        super().__init__(source, dataset, crs)
        self.mask_reader: WindowReader | None = None

    def read_pixels(self, window: Window, bands: list[int] | None = None) -> RasterWindow:
        """Raw DN of the data bands ``bands`` (1-based among the data bands; all if None)."""
        src = self.source
        chosen = [src.file_bands[b - 1] for b in bands] if bands else list(src.file_bands)
        own_mask = src.mask is not None and src.mask.source is None
        idx = chosen + ([src.mask.band] if own_mask and src.mask is not None else [])
        win = self._read_file_bands(window, idx)
        values = np.ma.getdata(win.data)[: len(chosen)]
        mask = np.ma.getmaskarray(win.data)[: len(chosen)].copy()
        bad = np.zeros(values.shape[1:], dtype=bool)
        if src.mask is not None:
            if own_mask:
                classes = np.ma.getdata(win.data)[-1]
            else:
                assert self.mask_reader is not None  # set by ImagerySource.reader
                band = [src.mask.band]
                classes = np.ma.getdata(self.mask_reader.read_pixels(window, band).data)[0]
            bad |= np.isin(classes, np.asarray(src.mask.classes))
        if src.valid_range is not None:
            lo, hi = src.valid_range
            refl = src.reflectance(values)
            bad |= np.any((refl < lo) | (refl > hi), axis=0)
        mask |= bad[None]
        if src.extent_band:
            inside = np.zeros((1, *values.shape[1:]), dtype=values.dtype)
            col0, row0 = int(window.col_off), int(window.row_off)
            r0, c0 = max(row0, 0) - row0, max(col0, 0) - col0
            r1 = min(row0 + int(window.height), self._ds.height) - row0
            c1 = min(col0 + int(window.width), self._ds.width) - col0
            if r1 > r0 and c1 > c0:
                inside[0, r0:r1, c0:c1] = 1
            values = np.concatenate([values, inside])
            mask = np.concatenate([mask, np.zeros(inside.shape, dtype=bool)])
        return RasterWindow(np.ma.MaskedArray(values, mask=mask), win.transform, win.crs)


def radiometry(source: RasterSource) -> tuple[float, float]:
    """``(scale, offset)`` of ``source``: its own for imagery, else the data type default."""
    if isinstance(source, ImagerySource):
        return source.scale, source.offset
    return default_scale(source.dtype), 0.0


def open_imagery(source: RasterSource, cfg: RasterConfig | None = None) -> ImagerySource:
    """The imagery ``source`` with the radiometry, mask and valid range of its config.

    Without ``scale``/``offset`` the data type decides (:func:`default_scale`). A mask
    raster is opened (and checked) here; a mask band of the imagery must exist and leave at
    least one data band.
    """
    if isinstance(source, ImagerySource):
        return source
    scale = cfg.scale if cfg is not None and cfg.scale is not None else None
    offset = cfg.offset if cfg is not None and cfg.offset is not None else 0.0
    if scale is None:
        scale = default_scale(source.dtype)
    if not math.isfinite(scale) or scale == 0 or not math.isfinite(offset):
        raise ConfigError(
            f"imagery scale {scale!r} / offset {offset!r} must be finite and scale non-zero",
            path=source.path,
            where="key rasters.imagery.scale",
            fix="set scale to the reflectance per DN (e.g. 1.0e-4 for Sentinel-2 L2A)",
        )
    file_bands = tuple(range(1, source.count + 1))
    mask = None
    if cfg is not None and cfg.mask is not None:
        m = cfg.mask
        classes = tuple(int(c) for c in m.classes)
        if m.path is None:
            band = int(m.band or 0)
            if not 1 <= band <= source.count or source.count < 2:
                raise ConfigError(
                    f"mask band {band} is not one of the imagery's {source.count} bands "
                    "(or would leave no data band)",
                    path=source.path,
                    where="key rasters.imagery.mask.band",
                    fix="give the 1-based band holding the mask classes, or a mask path",
                )
            file_bands = tuple(b for b in file_bands if b != band)
            mask = PixelMask(classes, band, None)
        else:
            mask_source = open_raster(m.path)
            band = int(m.band or 1)
            if not 1 <= band <= mask_source.count:
                raise ConfigError(
                    f"mask band {band} is not one of the mask raster's {mask_source.count} bands",
                    path=m.path,
                    where="key rasters.imagery.mask.band",
                    fix="give the 1-based band of the mask raster holding the classes",
                )
            mask = PixelMask(classes, band, mask_source)
    fields = {f.name: getattr(source, f.name) for f in dataclasses.fields(RasterSource)}
    fields.update(
        count=len(file_bands),
        band_names=tuple(source.band_names[b - 1] for b in file_bands),
    )
    return ImagerySource(
        **fields,
        scale=float(scale),
        offset=float(offset),
        mask=mask,
        valid_range=None if cfg is None or cfg.valid_range is None else cfg.valid_range,
        file_bands=file_bands,
    )


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
