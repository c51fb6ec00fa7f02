"""Physical and administrative geography: outline, lake, rivers, admin units, climate fields.

The country is a star-shaped outline (an ellipse with random harmonics) cut on its west
side by a lake. Admin-2 units are the Voronoi cells of well-spread seeds (two Lloyd steps)
clipped to the outline on a 1 m precision grid, so they tile the outline exactly;
admin-1 units are contiguous unions of admin-2 units grown on their adjacency graph.
Climate is a set of smooth fields on the cell grid: highlands in the east, rain rising with
altitude and near the lake (see docs/world.md for the equations).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from rasterio.features import rasterize
from scipy.ndimage import distance_transform_edt
from shapely import affinity
from shapely.geometry import LineString, MultiPoint, Polygon, box

from povertymap.errors import PovertyMapError
from povertymap.world.frame import Frame
from povertymap.world.randomness import Streams, gaussian_field
from povertymap.world.spec import WorldSpec

__all__ = ["Climate", "Geography", "make_geography", "place_names"]

#: Vertices snap to a 1 m grid offset by half a metre, so no outline or admin edge can lie
#: exactly on a cell boundary (multiples of the cell size) and the set of grid cells that
#: overlap the country is stable under reprojection round trips.
_GRID = 1.0
_OFFSET = 0.5

# fmt: off
_SYLLABLES = (
    "ki", "ma", "nga", "bo", "to", "ru", "si", "mwa", "ta", "la", "ngo", "ba", "ka", "ndi",
    "mo", "li", "nza", "ra", "ga", "tu", "wa", "se", "ne", "mbe", "ho", "ku", "za", "pa", "da",
    "fu", "la", "mu", "ye", "chi", "shi",
)
# fmt: on


@dataclass(frozen=True)
class Climate:
    """Cell-grid climate and water fields, arrays of shape ``frame.shape``."""

    elevation_m: np.ndarray
    rainfall_mm: np.ndarray
    agro: np.ndarray  #: agricultural suitability in [0, 1]
    zone: np.ndarray  #: agro-ecological zone: 0 semi-arid, 1 sub-humid, 2 humid
    dist_lake_km: np.ndarray
    dist_river_km: np.ndarray


@dataclass(frozen=True)
class Geography:
    """The country's shapes (working CRS) and climate."""

    frame: Frame
    outline: shapely.Polygon
    lake: shapely.Polygon
    rivers: list[LineString]
    river_width_m: np.ndarray
    admin2: gpd.GeoDataFrame  #: admin2_id, admin2_name, admin1_id, admin1_name, geometry
    admin1: gpd.GeoDataFrame  #: admin1_id, admin1_name, geometry
    climate: Climate


def _snap(geom: shapely.Geometry) -> shapely.Geometry:
    """Snap vertices to the offset 1 m grid."""
    shifted = affinity.translate(geom, -_OFFSET, -_OFFSET)
    return affinity.translate(shapely.set_precision(shifted, _GRID), _OFFSET, _OFFSET)


def _largest_polygon(geom: shapely.Geometry) -> shapely.Polygon:
    polys = [g for g in shapely.get_parts(geom) if isinstance(g, Polygon)]
    if not polys:
        raise PovertyMapError("world: the outline vanished; use a larger extent")
    return max(polys, key=lambda p: p.area)


def _outline_and_lake(
    frame: Frame, rng: np.random.Generator
) -> tuple[shapely.Polygon, shapely.Polygon]:
    """A star-shaped country outline and the lake on its west side."""
    xmin, ymin, xmax, ymax = frame.bounds
    w, h = xmax - xmin, ymax - ymin
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 9):
        r += (
            rng.uniform(0.015, 0.06)
            / np.sqrt(k - 1)
            * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        )
    star = Polygon(np.c_[cx + 0.42 * w * r * np.cos(theta), cy + 0.42 * h * r * np.sin(theta)])
    star = star.intersection(box(xmin + 1, ymin + 1, xmax - 1, ymax - 1))
    ys = np.linspace(ymin - 1, ymax + 1, 120)
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    shore = (
        xmin
        + 0.2 * w
        + 0.035 * w * np.sin(2 * np.pi * (ys - ymin) / h * 1.3 + p1)
        + 0.012 * w * np.sin(2 * np.pi * (ys - ymin) / h * 4.1 + p2)
    )
    lake = Polygon(np.r_[np.c_[shore, ys], [[xmin - 1, ymax + 1], [xmin - 1, ymin - 1]]])
    outline = _largest_polygon(_snap(star.difference(lake)))
    return outline, _snap(lake)


def _random_points_in(poly: shapely.Polygon, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly inside ``poly`` (rejection sampling), shape (n, 2)."""
    xmin, ymin, xmax, ymax = poly.bounds
    shapely.prepare(poly)
    out = np.empty((0, 2))
    while len(out) < n:
        cand = rng.uniform([xmin, ymin], [xmax, ymax], size=(max(2 * n, 64), 2))
        out = np.vstack([out, cand[shapely.contains_xy(poly, cand[:, 0], cand[:, 1])]])
    return out[:n]


def _spread_seeds(poly: shapely.Polygon, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` well-spread points in ``poly`` (best-candidate sampling), shape (n, 2)."""
    pts = _random_points_in(poly, 1, rng)
    for _ in range(n - 1):
        cand = _random_points_in(poly, 16, rng)
        d = np.min(
            np.hypot(cand[:, None, 0] - pts[None, :, 0], cand[:, None, 1] - pts[None, :, 1]), axis=1
        )
        pts = np.vstack([pts, cand[np.argmax(d)]])
    return pts


def _voronoi_units(outline: shapely.Polygon, seeds: np.ndarray) -> np.ndarray:
    """Voronoi cells of ``seeds`` clipped to ``outline`` on the precision grid."""
    env = box(*outline.buffer(outline.length).bounds)
    cells = shapely.get_parts(
        shapely.voronoi_polygons(MultiPoint(seeds), extend_to=env, ordered=True)
    )
    shifted_outline = affinity.translate(outline, -_OFFSET, -_OFFSET)
    shifted = shapely.intersection(
        np.array([affinity.translate(c, -_OFFSET, -_OFFSET) for c in cells]),
        shifted_outline,
        grid_size=_GRID,
    )
    out = []
    for g in shifted:
        polys = [p for p in shapely.get_parts(g) if isinstance(p, Polygon) and p.area > 0]
        merged = (
            shapely.multipolygons(polys) if len(polys) > 1 else (polys[0] if polys else Polygon())
        )
        out.append(affinity.translate(merged, _OFFSET, _OFFSET))
    return np.array(out, dtype=object)


def _admin2_polygons(outline: shapely.Polygon, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` admin-2 polygons tiling ``outline``."""
    seeds = _spread_seeds(outline, n, rng)
    for _ in range(2):  # Lloyd relaxation: move seeds to the centroids of their cells
        cells = _voronoi_units(outline, seeds)
        cent = shapely.centroid(cells)
        inside = shapely.contains(outline, cent)
        rep = shapely.point_on_surface(cells)
        pts = np.where(inside, cent, rep)
        seeds = np.c_[shapely.get_x(pts), shapely.get_y(pts)]
    units = _voronoi_units(outline, seeds)
    if any(u.is_empty for u in units):
        raise PovertyMapError("world: an admin-2 unit is empty; use fewer admin-2 units")
    return units


def _grow_regions(units: np.ndarray, n_regions: int, rng: np.random.Generator) -> np.ndarray:
    """Assign each unit to one of ``n_regions`` contiguous regions; returns region index."""
    n = len(units)
    tree = shapely.STRtree(units)
    a, b = tree.query(units, predicate="intersects")
    adjacent: list[set[int]] = [set() for _ in range(n)]
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        if i != j and shapely.length(shapely.intersection(units[i], units[j])) > 0:
            adjacent[i].add(j)
    cent = np.c_[shapely.get_x(shapely.centroid(units)), shapely.get_y(shapely.centroid(units))]
    # region seeds: farthest-point sampling from a random unit
    seeds = [int(rng.integers(n))]
    while len(seeds) < n_regions:
        d = np.min(
            np.hypot(cent[:, None, 0] - cent[seeds, 0], cent[:, None, 1] - cent[seeds, 1]), axis=1
        )
        seeds.append(int(np.argmax(d)))
    region = np.full(n, -1)
    region[seeds] = np.arange(n_regions)
    area = np.array([units[s].area for s in seeds])
    while (region < 0).any():
        grew = False
        for r in np.argsort(area, kind="stable"):
            members = np.flatnonzero(region == r)
            frontier = sorted({j for m in members for j in adjacent[m] if region[j] < 0})
            if not frontier:
                continue
            d = np.hypot(*(cent[frontier] - cent[seeds[r]]).T)
            pick = frontier[int(np.argmin(d))]
            region[pick] = r
            area[r] += units[pick].area
            grew = True
            break
        if not grew:  # disconnected leftovers (islands): join the nearest region
            for u in np.flatnonzero(region < 0):
                region[u] = region[
                    np.argmin(np.where(region >= 0, np.hypot(*(cent - cent[u]).T), np.inf))
                ]
    return region


def place_names(n: int, rng: np.random.Generator, taken: set[str] | None = None) -> list[str]:
    """``n`` distinct pronounceable place names (Bantu-like syllables)."""
    taken = set() if taken is None else taken
    names: list[str] = []
    while len(names) < n:
        k = int(rng.integers(2, 4))
        name = "".join(rng.choice(_SYLLABLES, size=k)).capitalize()
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


def _admin_frames(
    units: np.ndarray, region: np.ndarray, crs: object, rng: np.random.Generator
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Admin-2 and admin-1 GeoDataFrames with ids ordered north-west to south-east."""
    n_regions = int(region.max()) + 1
    taken: set[str] = set()
    region_names = place_names(n_regions, rng, taken)
    unit_names = place_names(len(units), rng, taken)
    cent = shapely.centroid(units)
    cx, cy = shapely.get_x(cent), shapely.get_y(cent)
    # region order: by centroid north to south, then west to east
    rc = np.array([[cy[region == r].mean(), cx[region == r].mean()] for r in range(n_regions)])
    region_rank = np.empty(n_regions, dtype=int)
    region_rank[np.lexsort((rc[:, 1], -rc[:, 0]))] = np.arange(n_regions)
    order = np.lexsort((cx, -cy, region_rank[region]))
    admin1_ids = [f"R{k + 1:02d}" for k in range(n_regions)]
    admin2 = gpd.GeoDataFrame(
        {
            "admin2_id": [f"D{k + 1:03d}" for k in range(len(units))],
            "admin2_name": [unit_names[i] for i in order],
            "admin1_id": [admin1_ids[region_rank[region[i]]] for i in order],
            "admin1_name": [region_names[region[i]] for i in order],
        },
        geometry=list(units[order]),
        crs=crs,
    )
    admin1 = admin2.dissolve(by=["admin1_id", "admin1_name"], as_index=False)[
        ["admin1_id", "admin1_name", "geometry"]
    ]
    admin1["geometry"] = [_snap(g) for g in admin1.geometry]
    return admin2, admin1.sort_values("admin1_id", ignore_index=True)


def _rivers(
    outline: shapely.Polygon, lake: shapely.Polygon, n: int, rng: np.random.Generator
) -> tuple[list[LineString], np.ndarray]:
    """``n`` meandering rivers from the eastern highlands to the lake."""
    xmin, ymin, xmax, ymax = outline.bounds
    w = xmax - xmin
    shore = shapely.intersection(outline.boundary, lake.buffer(5.0))
    sy0, sy1 = (shore.bounds[1], shore.bounds[3]) if not shore.is_empty else (ymin, ymax)
    east = outline.intersection(box(xmin + 0.55 * w, ymin, xmax, ymax))
    east = _largest_polygon(east) if not east.is_empty else outline
    rivers, widths = [], []
    for k in range(n):
        src = _random_points_in(east, 1, rng)[0]
        my = sy0 + (sy1 - sy0) * (k + rng.uniform(0.2, 0.8)) / n
        line = LineString([(xmin - w, my), (xmax, my)])
        cut = line.intersection(lake)
        mx = cut.bounds[2] - 300.0 if not cut.is_empty else xmin
        mouth = np.array([mx, my])
        d = mouth - src
        length = float(np.hypot(*d))
        t = np.linspace(0, 1, max(int(length / 150), 20))
        normal = np.array([-d[1], d[0]]) / length
        lateral = np.zeros_like(t)
        for j in range(1, 5):
            lateral += rng.normal(0, 0.05 / j) * np.sin(j * np.pi * t + rng.uniform(0, np.pi))
        meander = np.zeros_like(t)
        for _ in range(4):  # meanders: amplitude about a tenth of their wavelength
            wavelength = rng.uniform(1500.0, 6000.0)
            meander += (
                rng.uniform(0.04, 0.1)
                * wavelength
                * np.sin(2 * np.pi * t * length / wavelength + rng.uniform(0, 2 * np.pi))
            )
        lateral = lateral * np.sin(np.pi * t) * length + meander * np.sin(np.pi * t) ** 0.3
        pts = src + t[:, None] * d + lateral[:, None] * normal
        rivers.append(LineString(pts))
        widths.append(rng.uniform(30, 80))
    return rivers, np.array(widths)


def _climate(
    frame: Frame,
    spec: WorldSpec,
    lake: shapely.Polygon,
    rivers: list[LineString],
    streams: Streams,
) -> Climate:
    """Elevation, rainfall, agro suitability and zones on the cell grid."""
    rng = streams.get("climate")
    x, y = frame.centers()
    xmin, ymin, xmax, ymax = frame.bounds
    w, h = xmax - xmin, ymax - ymin
    cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
    cs = frame.cell_size
    regional = gaussian_field(rng, frame.shape, 0.1 * min(w, h) / cs)
    local = gaussian_field(rng, frame.shape, spec.local_scale_km * 1000 / cs)
    lake_mask = rasterize(
        [(lake, 1)], out_shape=frame.shape, transform=frame.transform(), dtype="uint8"
    )
    dist_lake = distance_transform_edt(lake_mask == 0) * cs / 1000.0
    river_mask = (
        rasterize(
            [(r, 1) for r in rivers],
            out_shape=frame.shape,
            transform=frame.transform(),
            dtype="uint8",
            all_touched=True,
        )
        if rivers
        else np.zeros(frame.shape, np.uint8)
    )
    dist_river = distance_transform_edt(river_mask == 0) * cs / 1000.0
    highland = 1 / (1 + np.exp(-(x - (cx + 0.15 * w)) / (0.12 * w)))
    elev_norm = np.clip(highland + 0.25 * regional, -0.2, 1.4)
    elevation = 900.0 + 1300.0 * elev_norm
    rain = (
        520.0
        + 600.0 * elev_norm
        + 380.0 * np.exp(-dist_lake / (0.08 * w / 1000))
        + 110.0 * local
        + 90.0 * (y - cy) / (h / 2)
    )
    rain = np.clip(rain, 250.0, 2400.0)
    agro = np.clip((rain - 450.0) / 800.0, 0.0, 1.0) * np.where(elevation > 2300, 0.6, 1.0)
    zone = np.digitize(rain, [750.0, 1100.0]).astype(np.int8)
    return Climate(elevation, rain, agro, zone, dist_lake, dist_river)


def make_geography(spec: WorldSpec, streams: Streams) -> Geography:
    """Draw the outline, lake, rivers, admin units and climate of a country."""
    from pyproj import CRS

    crs = CRS.from_user_input(spec.crs)
    if not crs.is_projected:
        raise PovertyMapError(f"world: CRS {spec.crs} is not projected; use a UTM zone")
    frame = Frame.around(
        crs,
        spec.cell_size_m,
        spec.center_lon,
        spec.center_lat,
        spec.width_km * 1000,
        spec.height_km * 1000,
    )
    outline, lake = _outline_and_lake(frame, streams.get("outline"))
    rivers, widths = _rivers(outline, lake, spec.n_rivers, streams.get("rivers"))
    units = _admin2_polygons(outline, spec.n_admin2, streams.get("admin2"))
    # the country is exactly the union of its units (snap rounding moved the outline's
    # vertices by under a metre where unit edges cross it)
    outline = _largest_polygon(shapely.coverage_union_all(units))
    region = _grow_regions(units, spec.n_admin1, streams.get("admin1"))
    admin2, admin1 = _admin_frames(units, region, crs, streams.get("names"))
    climate = _climate(frame, spec, lake, rivers, streams)
    return Geography(frame, outline, lake, rivers, widths, admin2, admin1, climate)
