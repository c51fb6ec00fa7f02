"""Small, typed writers for every file format povertymap produces.

Only :mod:`povertymap.io` opens paths (the project's I/O-at-the-edges rule), so stages build
arrays, DataFrames and GeoDataFrames and hand them to these writers. Every writer is atomic:
it writes a hidden temporary file next to the target and renames it into place, so a reader
never sees a half-written file and a failure leaves the previous file (or nothing) behind.
Outputs are byte-for-byte reproducible for identical inputs (no timestamps, single-threaded
compression), which lets run manifests and tests compare sha256 digests.

- :class:`RasterWriter`: windowed GeoTIFF writer whose final file is a Cloud-Optimized
  GeoTIFF (tiled, DEFLATE with predictor, internal overviews, band descriptions, nodata).
- :func:`write_vector`: GeoJSON / GeoPackage / GeoParquet by suffix.
- :func:`write_table`: CSV / Parquet by suffix.
- :func:`write_yaml`, :func:`write_json`: small documents.
- :func:`atomic_directory`: build a whole directory next to its target and rename it in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import rasterio.shutil
import yaml
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window

from povertymap.errors import InputError, RunDirError

__all__ = [
    "RasterWriter",
    "atomic_directory",
    "write_figure",
    "write_json",
    "write_table",
    "write_text",
    "write_vector",
    "write_yaml",
]

log = logging.getLogger(__name__)

_VECTOR_DRIVERS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG"}
_Resampling = Literal["nearest", "average", "bilinear", "mode"]


def _umask() -> int:
    """The process umask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_sibling(path: Path, suffix: str | None = None) -> Path:
    """A fresh hidden temporary path in the directory of ``path`` (same file system)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{path.stem}.",
        suffix=suffix if suffix is not None else path.suffix,
        dir=path.parent,
    )
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def _atomic_file(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` on success, delete on error."""
    path = Path(path)
    tmp = _temp_sibling(path, suffix)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class RasterWriter:
    """Write a raster window by window; the closed file is a Cloud-Optimized GeoTIFF.

    Windows are written to an uncompressed tiled GeoTIFF beside the target (so windows may
    be written in any order and need not align with tiles), and on a clean exit the file is
    copied by GDAL's COG driver (DEFLATE + predictor, internal overviews, tiles of
    ``blocksize``) and renamed onto ``path``. Memory stays bounded by the window size
    whatever the raster size. On an exception nothing is left behind.

    Parameters
    ----------
    path:
        Target file (``.tif``).
    width, height, count:
        Raster size in pixels and number of bands.
    dtype:
        Numpy dtype name (``"float32"``, ``"uint8"``...).
    crs, transform:
        Georeferencing (any CRS pyproj understands; affine pixel-to-CRS transform).
    nodata:
        Value declared as nodata in the file, or None.
    band_names:
        One description per band (``["red", "green", "blue", "nir"]``); readers use them
        to find bands by name.
    units:
        Optional unit string per band (e.g. ``"nW/cm2/sr"``).
    tags:
        Dataset-level metadata (string values).
    resampling:
        Overview resampling (``average`` for continuous data, ``nearest`` or ``mode`` for
        classes).
    blocksize:
        Tile edge in pixels (multiple of 16).
    level:
        DEFLATE level, 1 (fast) to 9 (small); 1 suits noisy imagery, where higher levels
        cost several times the time for a few per cent of size.

    Example::

        with RasterWriter(path, width=w, height=h, count=1, dtype="float32",
                          crs="EPSG:32736", transform=t, nodata=-99999) as out:
            for window, block in blocks:
                out.write(block, window)
    """

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        count: int,
        dtype: str,
        crs: str | CRS,
        transform: Affine,
        nodata: float | None = None,
        band_names: Sequence[str] | None = None,
        units: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        resampling: _Resampling = "average",
        blocksize: int = 512,
        level: int = 6,
    ) -> None:
        if width <= 0 or height <= 0 or count <= 0:
            raise InputError(
                f"raster size must be positive, got width={width}, height={height}, count={count}",
                path=path,
                fix="pass the size of the raster to write",
            )
        if band_names is not None and len(band_names) != count:
            raise InputError(
                f"{len(band_names)} band names for {count} bands",
                path=path,
                fix="give exactly one name per band",
            )
        if blocksize % 16:
            raise InputError(
                f"blocksize must be a multiple of 16, got {blocksize}", path=path, fix="use 512"
            )
        self.path = Path(path)
        self.width, self.height, self.count = int(width), int(height), int(count)
        self.dtype = np.dtype(dtype)
        self.crs = CRS.from_user_input(crs)
        self.transform = transform
        self.nodata = nodata
        self.band_names = list(band_names) if band_names is not None else None
        self.units = list(units) if units is not None else None
        self.tags = dict(tags or {})
        self.resampling = resampling
        self.blocksize = blocksize
        self.level = int(level)
        self._tmp: Path | None = None
        self._ds: Any = None

    def __enter__(self) -> RasterWriter:
        self._tmp = _temp_sibling(self.path, ".stage.tif")
        profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": self.width,
            "height": self.height,
            "count": self.count,
            "dtype": self.dtype.name,
            "crs": self.crs.to_wkt(),
            "transform": self.transform,
            "nodata": self.nodata,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "NONE",
            "interleave": "pixel",
            "BIGTIFF": "IF_SAFER",
        }
        self._ds = rasterio.open(self._tmp, "w", **profile)
        if self.band_names is not None:
            for i, name in enumerate(self.band_names, start=1):
                self._ds.set_band_description(i, name)
        if self.units is not None:
            for i, unit in enumerate(self.units, start=1):
                self._ds.set_band_unit(i, unit)
        if self.tags:
            self._ds.update_tags(**self.tags)
        return self

    def write(self, data: np.ndarray, window: Window | tuple[int, int]) -> None:
        """Write ``data`` (``(bands, rows, cols)`` or ``(rows, cols)`` for one band).

        ``window`` is a rasterio ``Window`` or the ``(row_off, col_off)`` of the block's
        top-left pixel; the block's shape gives the window size.
        """
        if self._ds is None:
            raise RunDirError(f"{self.path}: write() called outside the 'with' block")
        arr = np.asarray(data)
        if arr.ndim == 2:
            arr = arr[np.newaxis]
        if arr.ndim != 3 or arr.shape[0] != self.count:
            raise InputError(
                f"block of shape {np.asarray(data).shape} for a {self.count}-band raster",
                path=self.path,
                fix="pass (bands, rows, cols) or (rows, cols) for a single band",
            )
        if not isinstance(window, Window):
            window = Window(int(window[1]), int(window[0]), arr.shape[2], arr.shape[1])
        if (
            window.col_off < 0
            or window.row_off < 0
            or window.col_off + window.width > self.width
            or window.row_off + window.height > self.height
            or (window.height, window.width) != arr.shape[1:]
        ):
            raise InputError(
                f"window {window} does not fit a {self.width}x{self.height} raster or a "
                f"block of shape {arr.shape[1:]}",
                path=self.path,
                fix="clip the block to the raster before writing",
            )
        self._ds.write(arr.astype(self.dtype, copy=False), window=window)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tmp is not None  # set by __enter__
        tmp = self._tmp
        try:
            self._ds.close()
            self._ds = None
            if exc_type is None:
                factors = []
                f = 2
                while max(self.width, self.height) / (f // 2) > self.blocksize:
                    factors.append(f)
                    f *= 2
                if factors:  # built uncompressed here: far faster than the COG driver's
                    with rasterio.open(tmp, "r+") as ds:
                        ds.build_overviews(factors, Resampling[self.resampling])
                with _atomic_file(self.path) as final:
                    final.unlink()  # GDAL's CreateCopy wants to create the file itself
                    rasterio.shutil.copy(
                        tmp,
                        final,
                        driver="COG",
                        COMPRESS="DEFLATE",
                        LEVEL=self.level,
                        PREDICTOR="YES",
                        BLOCKSIZE=self.blocksize,
                        OVERVIEWS="FORCE_USE_EXISTING" if factors else "NONE",
                        BIGTIFF="IF_SAFER",
                        NUM_THREADS=1,
                    )
                log.debug("wrote COG %s (%dx%dx%d)", self.path, self.width, self.height, self.count)
        finally:
            if self._ds is not None:
                self._ds.close()
                self._ds = None
            tmp.unlink(missing_ok=True)
            for aux in tmp.parent.glob(tmp.name + ".*"):  # .aux.xml, .ovr
                aux.unlink(missing_ok=True)


def write_vector(gdf: gpd.GeoDataFrame, path: Path, *, layer: str | None = None) -> Path:
    """Write a GeoDataFrame by suffix: ``.geojson``/``.json``, ``.gpkg`` or ``.parquet``.

    The GeoDataFrame must have a CRS (a vector without one is ambiguous for every reader).
    GeoParquet keeps the index only when it is named. Returns ``path``.
    """
    path = Path(path)
    if gdf.crs is None:
        raise InputError(
            "GeoDataFrame has no CRS", path=path, fix="set one with gdf.set_crs(...) first"
        )
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        with _atomic_file(path) as tmp:
            gdf.to_parquet(tmp, index=gdf.index.name is not None)
        return path
    driver = _VECTOR_DRIVERS.get(suffix)
    if driver is None:
        raise InputError(
            f"unknown vector suffix {path.suffix!r}",
            path=path,
            fix="use .geojson, .gpkg or .parquet",
        )
    with _atomic_file(path) as tmp:
        tmp.unlink()  # GDAL refuses to overwrite some formats in place
        # the layer name defaults to the file name (GeoJSON stores it), never the temp name
        kwargs: dict[str, Any] = {
            "driver": driver,
            "engine": "pyogrio",
            "layer": layer or path.stem,
        }
        gdf.to_file(tmp, **kwargs)
    return path


def write_table(df: pd.DataFrame, path: Path, *, index: bool = False) -> Path:
    """Write a DataFrame by suffix: ``.csv`` or ``.parquet``. Returns ``path``.

    CSV uses ``,`` and ``.``, UTF-8, ``\\n`` line ends, and Python's shortest round-trip
    float representation, so values read back exactly.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputError(
            f"unknown table suffix {path.suffix!r}", path=path, fix="use .csv or .parquet"
        )
    with _atomic_file(path) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=index, lineterminator="\n")
        else:
            df.to_parquet(tmp, index=index)
    return path


def write_yaml(data: Mapping[str, Any], path: Path) -> Path:
    """Write a mapping as block-style YAML, keys in insertion order. Returns ``path``."""
    path = Path(path)
    text = yaml.safe_dump(_plain(data), sort_keys=False, default_flow_style=False)
    with _atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json(data: Mapping[str, Any], path: Path) -> Path:
    """Write a mapping as indented JSON (numpy scalars converted). Returns ``path``."""
    path = Path(path)
    text = json.dumps(_plain(data), indent=2, allow_nan=True) + "\n"
    with _atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _plain(node: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and Paths to plain YAML/JSON types."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    if isinstance(node, np.ndarray):
        return [_plain(v) for v in node.tolist()]
    if isinstance(node, np.generic):
        return node.item()
    if isinstance(node, Path):
        return str(node)
    return node


@contextlib.contextmanager
def atomic_directory(out: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory atomically: yield an empty sibling temp dir, rename it to ``out``.

    Refuses (``RunDirError``) when ``out`` exists and is not empty unless ``overwrite``; an
    existing ``out`` is swapped out only after the new one is complete. On an exception the
    temporary directory is removed and ``out`` is left as it was.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} exists and is not a directory; choose another output path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise RunDirError(
            f"{out} is not empty; choose an empty or new directory, or pass overwrite=True"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700; give the usual mode
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, trash / out.name)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(text: str, path: Path) -> Path:
    """Write UTF-8 text (an HTML report, a README). Returns ``path``."""
    path = Path(path)
    with _atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_figure(fig: Any, path: Path, *, dpi: int = 110) -> Path:
    """Save a matplotlib Figure as PNG without metadata (same figure, same bytes)."""
    path = Path(path)
    with _atomic_file(path, ".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", metadata={"Software": None})
    return path
