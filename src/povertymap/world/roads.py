"""The road network and travel times to markets.

Cities are joined by a minimum spanning tree of paved primary roads (plus trunk roads that
leave the country); towns join that network through a spanning tree of paved secondary
roads; each village links to the nearest of the main network, a town, or a larger village
by an unpaved tertiary road or track. Roads meander a little. Travel time is the
least-cost path over the cell grid (Dijkstra, 8 neighbours) with speeds by road class and
walking elsewhere; market access is the travel time to the nearest town and city.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from rasterio.features import rasterize
from scipy.ndimage import distance_transform_edt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra, minimum_spanning_tree
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist
from shapely.geometry import LineString

from povertymap.world.frame import Frame
from povertymap.world.geography import Geography
from povertymap.world.randomness import Streams
from povertymap.world.settlements import Settlements

__all__ = ["ROAD_CLASSES", "Access", "make_access", "make_roads"]

#: Road classes (OSM ``highway`` values), their speed (km/h), width (m) and surface.
ROAD_CLASSES: dict[str, tuple[float, float, str]] = {
    "primary": (80.0, 10.0, "paved"),
    "secondary": (60.0, 8.0, "paved"),
    "tertiary": (35.0, 6.0, "unpaved"),
    "track": (20.0, 4.0, "unpaved"),
}
_WALK_KMH = 5.0


@dataclass(frozen=True)
class Access:
    """Cell-grid travel times (hours) and distance to the power grid (km)."""

    tt_town_h: np.ndarray
    tt_city_h: np.ndarray
    grid_km: np.ndarray
    road_speed: np.ndarray  #: fastest road speed in each cell (walking where none)


def _wiggly(p: np.ndarray, q: np.ndarray, amp: float, rng: np.random.Generator) -> LineString:
    """A road from p to q with smooth lateral meanders of relative amplitude ``amp``."""
    d = q - p
    length = float(np.hypot(*d))
    if length == 0:
        return LineString([p, q + 1.0])
    n = int(np.clip(length / 400.0, 3, 200))
    t = np.linspace(0, 1, n)
    normal = np.array([-d[1], d[0]]) / length
    lateral = np.zeros(n)
    for k in (1, 2, 3):
        lateral += rng.normal(0, amp / k) * np.sin(k * np.pi * t + rng.uniform(0, np.pi))
    lateral *= np.sin(np.pi * t) * length
    return LineString(p + t[:, None] * d + lateral[:, None] * normal)


def _mst_edges(xy: np.ndarray, fixed: set[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """Edges of the Euclidean minimum spanning tree of points (``fixed`` edges forced in)."""
    n = len(xy)
    if n < 2:
        return []
    d = cdist(xy, xy)
    for i, j in fixed or ():
        d[i, j] = d[j, i] = 1e-9
    tree = minimum_spanning_tree(np.triu(d)).tocoo()
    return sorted((int(min(i, j)), int(max(i, j))) for i, j in zip(tree.row, tree.col, strict=True))


def _nearest_bigger(xy: np.ndarray, pop: np.ndarray, k: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to the nearest more populous point among the ``k`` nearest."""
    n = len(xy)
    if n < 2:
        return np.zeros(n, np.int64), np.full(n, np.inf)
    k = min(k, n)
    dist, idx = cKDTree(xy).query(xy, k=k)
    bigger = pop[idx] > pop[:, None]
    dist = np.where(bigger, dist, np.inf)
    j = np.argmin(dist, axis=1)
    rows = np.arange(n)
    return idx[rows, j], dist[rows, j]


def make_roads(geo: Geography, settlements: Settlements, streams: Streams) -> gpd.GeoDataFrame:
    """The true road network: one LineString per link, with ``highway`` and ``surface``."""
    rng = streams.get("roads")
    table = settlements.table
    xy = table[["x", "y"]].to_numpy()
    kind = table["kind"].to_numpy()
    pop = table["population"].to_numpy()
    cities = np.flatnonzero(kind == "city")
    towns = np.flatnonzero(kind == "town")
    villages = np.flatnonzero(kind == "village")
    geoms: list[LineString] = []
    classes: list[str] = []

    # primary: cities spanning tree + trunk roads to the border
    primary = [(cities[i], cities[j]) for i, j in _mst_edges(xy[cities])]
    for i, j in primary:
        geoms.append(_wiggly(xy[i], xy[j], 0.015, rng))
        classes.append("primary")
    n_exits = max(2, len(cities) // 3 + 1)
    boundary = geo.outline.exterior
    for k in range(n_exits):
        c = cities[k % len(cities)]
        ang = rng.uniform(0, 2 * np.pi)
        far = xy[c] + 4 * max(geo.frame.bounds[2] - geo.frame.bounds[0], 1.0) * np.array(
            [np.cos(ang), np.sin(ang)]
        )
        hit = shapely.intersection(LineString([xy[c], far]), boundary)
        pts = shapely.get_coordinates(hit)
        if len(pts) == 0:
            continue
        end = pts[np.argmin(np.hypot(*(pts - xy[c]).T))]
        end = end + 2000.0 * (end - xy[c]) / max(np.hypot(*(end - xy[c])), 1.0)
        geoms.append(_wiggly(xy[c], end, 0.01, rng))
        classes.append("primary")

    # secondary: spanning tree of cities and towns, city links forced in
    ct = np.r_[cities, towns]
    pos = {int(v): k for k, v in enumerate(ct)}
    fixed = {(pos[int(i)], pos[int(j)]) for i, j in primary}
    for i, j in _mst_edges(xy[ct], fixed):
        if (i, j) in fixed or (j, i) in fixed:
            continue
        geoms.append(_wiggly(xy[ct[i]], xy[ct[j]], 0.03, rng))
        classes.append("secondary")

    # villages: to the main network, a town, or a bigger village
    main = np.array(geoms, dtype=object)
    tree = shapely.STRtree(main) if len(main) else None
    vpts = shapely.points(xy[villages])
    if tree is not None and len(villages):
        near_idx, d_net = tree.query_nearest(vpts, return_distance=True, all_matches=False)
        net_pt = shapely.get_coordinates(
            shapely.shortest_line(vpts[near_idx[0]], main[near_idx[1]])
        ).reshape(-1, 2, 2)[:, 1]
        d_road = np.full(len(villages), np.inf)
        d_road[near_idx[0]] = d_net
        road_pt = np.zeros((len(villages), 2))
        road_pt[near_idx[0]] = net_pt
    else:
        d_road = np.full(len(villages), np.inf)
        road_pt = np.zeros((len(villages), 2))
    d_ct = cdist(xy[villages], xy[ct]) if len(ct) else np.full((len(villages), 1), np.inf)
    k_ct = np.argmin(d_ct, axis=1)
    d_town = d_ct[np.arange(len(villages)), k_ct]
    k_v, d_vill = _nearest_bigger(xy[villages], pop[villages])
    big_village = pop[villages] >= np.median(pop[villages]) if len(villages) else np.zeros(0, bool)
    for v in range(len(villages)):
        best_main = min(d_road[v], d_town[v])
        if d_vill[v] < 0.6 * best_main:
            geoms.append(_wiggly(xy[villages[v]], xy[villages[k_v[v]]], 0.05, rng))
            classes.append("track")
        else:
            target = road_pt[v] if d_road[v] <= d_town[v] else xy[ct[k_ct[v]]]
            geoms.append(_wiggly(xy[villages[v]], target, 0.05, rng))
            classes.append("tertiary" if big_village[v] else "track")
    out = gpd.GeoDataFrame(
        {
            "highway": classes,
            "surface": [ROAD_CLASSES[c][2] for c in classes],
        },
        geometry=geoms,
        crs=geo.frame.crs,
    )
    out.insert(0, "road_id", np.arange(1, len(out) + 1))
    return out


def _travel_time(speed: np.ndarray, sources: np.ndarray, cell_km: float) -> np.ndarray:
    """Least travel time (hours) from every cell to the nearest source cell."""
    ny, nx = speed.shape
    idx = np.arange(ny * nx).reshape(ny, nx)
    pace = 1.0 / speed  # hours per km
    rows, cols, w = [], [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        r = np.arange(ny - dr)
        c = np.arange(max(0, -dc), nx - max(0, dc))
        a = idx[np.ix_(r, c)]
        b = idx[np.ix_(r + dr, c + dc)]
        length = cell_km * (np.sqrt(2.0) if dr and dc else 1.0)
        cost = length * 0.5 * (pace.ravel()[a.ravel()] + pace.ravel()[b.ravel()])
        rows += [a.ravel(), b.ravel()]
        cols += [b.ravel(), a.ravel()]
        w += [cost, cost]
    graph = coo_matrix(
        (np.concatenate(w), (np.concatenate(rows), np.concatenate(cols))), shape=(ny * nx, ny * nx)
    ).tocsr()
    if sources.size == 0:
        return np.full((ny, nx), np.inf)
    dist = dijkstra(graph, directed=False, indices=np.unique(sources), min_only=True)
    return np.asarray(dist).reshape(ny, nx)


def make_access(frame: Frame, roads: gpd.GeoDataFrame, settlements: Settlements) -> Access:
    """Travel times to towns and cities and distance to the grid, per cell."""
    speed = np.full(frame.shape, _WALK_KMH)
    for cls in ("track", "tertiary", "secondary", "primary"):  # fastest last wins
        geoms = roads.geometry[roads["highway"] == cls].to_numpy()
        if len(geoms) == 0:
            continue
        mask = rasterize(
            [(g, 1) for g in geoms],
            out_shape=frame.shape,
            transform=frame.transform(),
            dtype="uint8",
            all_touched=True,
        )
        speed = np.where(mask > 0, ROAD_CLASSES[cls][0], speed)
    t = settlements.table
    r, c = frame.row_col(t["x"].to_numpy(), t["y"].to_numpy())
    ok = (r >= 0) & (r < frame.ny) & (c >= 0) & (c < frame.nx)
    flat = r * frame.nx + c
    is_town = t["kind"].isin(["city", "town"]).to_numpy() & ok
    is_city = (t["kind"] == "city").to_numpy() & ok
    cell_km = frame.cell_size / 1000.0
    tt_town = _travel_time(speed, flat[is_town], cell_km)
    tt_city = _travel_time(speed, flat[is_city], cell_km)
    main = roads.geometry[roads["highway"].isin(["primary", "secondary"])].to_numpy()
    grid_mask = np.zeros(frame.shape, bool)
    if len(main):
        grid_mask |= rasterize(
            [(g, 1) for g in main],
            out_shape=frame.shape,
            transform=frame.transform(),
            dtype="uint8",
            all_touched=True,
        ).astype(bool)
    grid_mask.ravel()[flat[is_town]] = True
    grid_km = distance_transform_edt(~grid_mask) * cell_km
    return Access(tt_town, tt_city, grid_km, speed)
