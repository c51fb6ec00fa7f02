"""What the poverty-map service reads and opens: the map raster for tiles and the database.

The service (``povertymap.serve``) opens no path itself: :func:`read_map_bands` reads a
run's ``map.tif``, :class:`MapRaster` holds the tile layers as an in-memory GeoTIFF that
rio-tiler reads (one dataset handle per thread: GDAL handles are not shared across
threads), and :func:`open_database` makes the SQLAlchemy engine of the key store and
audit trail (a SQLite file is a path too).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.crs import CRS
    from rio_tiler.models import ImageData
    from sqlalchemy.engine import Engine

__all__ = ["MapBands", "MapRaster", "open_database", "read_map_bands"]


@dataclass(frozen=True)
class MapBands:
    """The bands of a map raster, by name, with their grid."""

    bands: dict[str, np.ndarray]
    crs: CRS
    transform: Affine


def read_map_bands(path: Path) -> MapBands:
    """Every band of ``map.tif`` as float32 arrays (NaN for nodata), named by description."""
    import rasterio

    with rasterio.open(path) as ds:
        names = [d or f"band{i + 1}" for i, d in enumerate(ds.descriptions)]
        data = ds.read(masked=True).astype("float32").filled(np.nan)
        return MapBands(dict(zip(names, data, strict=True)), ds.crs, ds.transform)


@dataclass
class MapRaster:
    """Named float32 layers on one grid as an in-memory GeoTIFF, tiled through rio-tiler."""

    layers: tuple[str, ...]
    _memfile: Any
    _local: threading.local = field(default_factory=threading.local)

    @classmethod
    def build(cls, layers: Mapping[str, np.ndarray], crs: CRS, transform: Affine) -> MapRaster:
        """An in-memory GeoTIFF of ``layers`` (NaN as nodata)."""
        from rasterio.io import MemoryFile

        names = tuple(layers)
        stack = np.stack([np.asarray(layers[n], dtype="float32") for n in names])
        memfile = MemoryFile(filename=f"povertymap-map-{uuid.uuid4().hex}.tif")
        with memfile.open(
            driver="GTiff",
            width=stack.shape[2],
            height=stack.shape[1],
            count=stack.shape[0],
            dtype="float32",
            crs=crs,
            transform=transform,
            nodata=float("nan"),
        ) as ds:
            ds.write(stack)
            for i, name in enumerate(names, start=1):
                ds.set_band_description(i, name)
        return cls(names, memfile)

    def _reader(self) -> Any:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            from rio_tiler.io import Reader

            reader = Reader(None, dataset=self._memfile.open())
            self._local.reader = reader
        return reader

    def bounds_wgs84(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)`` of the raster in longitude and latitude."""
        bounds: tuple[float, float, float, float] = tuple(
            self._reader().get_geographic_bounds("EPSG:4326")
        )
        return bounds

    def native_zoom(self) -> int:
        """The web-mercator zoom closest to the raster's own resolution (rio-tiler's)."""
        return int(self._reader().minzoom)

    def tile(self, layer: str, z: int, x: int, y: int, tilesize: int = 256) -> ImageData | None:
        """The web-mercator tile ``z/x/y`` of ``layer`` (None when it misses the raster)."""
        from rio_tiler.errors import TileOutsideBounds

        reader = self._reader()
        try:
            return reader.tile(x, y, z, tilesize=tilesize, indexes=self.layers.index(layer) + 1)
        except TileOutsideBounds:
            return None


def open_database(url: str) -> Engine:
    """The SQLAlchemy engine for ``url``; a SQLite file gets WAL journaling and a busy
    timeout, so several threads and worker processes can append to it."""
    from sqlalchemy import create_engine, event

    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if ":memory:" not in url and url not in ("sqlite://", "sqlite:///"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine
