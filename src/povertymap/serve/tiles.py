"""Web-mercator PNG tiles of a loaded map, rendered by rio-tiler and cached per version.

Each layer is stretched over a fixed range chosen when the map is loaded (estimate: its
2nd to 98th percentile; poverty: 0 to 1; uncertainty: 0 to the 98th percentile of the
interval's width), so adjacent tiles share one colour scale; cells without a value are
transparent, and so is a tile inside the raster's bounding box (``tile_bounds``) that
misses its outline (a 404 is only for tiles outside the box). The cache lives on the
:class:`~povertymap.serve.maps.LoadedMap`, so a swap never serves a tile of the old version.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from povertymap.serve.maps import LoadedMap

__all__ = ["render_tile", "tile_of"]


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The web-mercator tile ``(x, y)`` holding ``(lon, lat)`` at zoom ``z``."""
    n = 2**z
    lat = max(min(lat, 85.0511), -85.0511)
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def _in_box(m: LoadedMap, z: int, x: int, y: int) -> bool:
    """Whether tile ``z/x/y`` meets the raster's bounding box in longitude and latitude
    (``tile_bounds`` of ``GET /v1/maps``): the raster's own outline is curved there, so a
    tile near a corner of the box can miss it."""
    n = 2**z
    west, east = x / n * 360.0 - 180.0, (x + 1) / n * 360.0 - 180.0
    north = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n))))
    south = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + 1) / n))))
    bw, bs, be, bn = m.raster.bounds_wgs84()
    return west < be and east > bw and south < bn and north > bs


def _empty_tile() -> bytes:
    """A fully transparent 256 px PNG."""
    from rio_tiler.models import ImageData

    empty = np.ma.masked_all((1, 256, 256), dtype="uint8")
    return bytes(ImageData(empty).render(img_format="PNG"))


def render_tile(m: LoadedMap, layer: str, z: int, x: int, y: int) -> bytes | None:
    """The PNG of tile ``z/x/y`` of ``layer`` (None outside the raster's bounding box,
    below its ``min_zoom``, or for a layer the map lacks)."""
    from rio_tiler.colormap import cmap

    from povertymap.serve.maps import LAYERS

    if layer not in m.raster.layers or z < m.min_zoom:
        return None
    key = (layer, z, x, y)
    found, png = m.tiles.get(key)
    if found:
        return png
    img = m.raster.tile(layer, z, x, y)
    if img is None:
        png = _empty_tile() if _in_box(m, z, x, y) else None
        m.tiles.put(key, png)
        return png
    lo, hi = m.ranges[layer]
    mask = np.ma.getmaskarray(img.array)
    data = np.clip(np.where(mask, lo, img.array.data), lo, hi)
    img.array = np.ma.MaskedArray(data, mask=mask, fill_value=0)
    img = img.rescale(in_range=((lo, hi),), out_range=((1, 255),))
    png = img.render(img_format="PNG", colormap=cmap.get(LAYERS[layer]))
    m.tiles.put(key, png)
    return png
