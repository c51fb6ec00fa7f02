"""A DHS/LSMS-like two-stage household survey, with DHS coordinate displacement.

Stage 1: every populated cell is split into enumeration areas (EAs) of about
``ea_households`` households; EAs are stratified by admin-1 x urban/rural, the clusters
are allocated to strata in proportion to their population (at least two per stratum), and
drawn by systematic sampling with probability proportional to EA population (implicit
stratification by admin-2 and position; EAs whose probability would exceed one are taken
with certainty). Stage 2: a simple random sample of ``households_per_cluster`` households
in each EA. The design weight of a household is the inverse of
``pi_EA * m / H_EA``.

A spatially clustered survey (``WorldSpec.survey_district_share`` < 1, see
:func:`select_districts`) first draws a share of the admin-2 units and then the clusters
from their EAs only; by default (share 1) every unit's EAs are eligible and the sample
spreads over the whole country.

Published cluster coordinates are the EA's household centroid displaced by the DHS rules:
a random direction and a distance uniform on [0, cap], cap 2 km urban, 5 km rural and
10 km for a random 1% of rural clusters, redrawn until the point stays in the same admin-2
polygon.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from povertymap.errors import PovertyMapError

__all__ = [
    "EAFrame",
    "displace",
    "ea_of_rank",
    "make_ea_frame",
    "select_clusters",
    "select_districts",
]


@dataclass(frozen=True)
class EAFrame:
    """The enumeration areas, one row per EA, and the EA of every cell's households."""

    row: np.ndarray  #: representative cell (the one with most households)
    col: np.ndarray
    households: np.ndarray
    first_ea: np.ndarray  #: (ny, nx) id of the cell's first EA (-1 without households)
    n_ea: np.ndarray  #: (ny, nx) EAs splitting the cell (1 for a cell in a grouped EA)


def _morton(row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Z-order key of cells (interleaved bits), so consecutive keys are close in space."""

    def spread(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.uint64) & np.uint64(0xFFFF)
        v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF)
        v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F)
        v = (v | (v << np.uint64(2))) & np.uint64(0x33333333)
        return (v | (v << np.uint64(1))) & np.uint64(0x55555555)

    return spread(row) | (spread(col) << np.uint64(1))


def make_ea_frame(
    n_households: np.ndarray, admin2: np.ndarray, urban: np.ndarray, ea_households: int
) -> EAFrame:
    """Enumeration areas of about ``ea_households`` households.

    A cell with at least ``ea_households`` households is split into
    ``round(H / ea_households)`` EAs (household of rank r goes to EA ``floor(r n / H)``).
    Smaller cells are grouped with their neighbours (Z-order within the same admin-2 unit
    and urban/rural class) until a group reaches ``ea_households``; a short last group
    joins the previous one. So sparse countryside makes large EAs, as in real censuses.
    """
    h = np.asarray(n_households, dtype=np.int64)
    first_ea = np.full(h.shape, -1, np.int64)
    n_ea = np.zeros(h.shape, np.int64)
    big = h >= ea_households
    br, bc = np.nonzero(big)
    nb = np.maximum(1, np.round(h[br, bc] / ea_households)).astype(np.int64)
    starts = np.cumsum(nb) - nb
    first_ea[br, bc] = starts
    n_ea[br, bc] = nb
    cell = np.repeat(np.arange(br.size), nb)
    k = np.arange(cell.size) - starts[cell]
    hc, ncell = h[br, bc][cell], nb[cell]
    ea_hh = [_ceil_div((k + 1) * hc, ncell) - _ceil_div(k * hc, ncell)]
    ea_row, ea_col = [br[cell]], [bc[cell]]
    next_id = int(nb.sum())

    sr, sc = np.nonzero((h > 0) & ~big)
    order = np.lexsort((_morton(sr, sc), urban[sr, sc], admin2[sr, sc]))
    sr, sc = sr[order], sc[order]
    run = admin2[sr, sc].astype(np.int64) * 2 + urban[sr, sc]
    group = np.empty(sr.size, np.int64)
    g, acc = -1, 0  # current group, its households so far
    for i in range(sr.size):
        if i == 0 or run[i] != run[i - 1] or acc >= ea_households:
            g, acc = g + 1, 0
        group[i] = g
        acc += int(h[sr[i], sc[i]])
    if sr.size:
        # a last group short of ea_households/2 joins the previous group of its run
        sizes = np.bincount(group, weights=h[sr, sc])
        last_of_run = np.r_[run[1:] != run[:-1], True]
        for last in np.flatnonzero(last_of_run):
            gi = group[last]
            if sizes[gi] < ea_households / 2 and gi > 0:
                prev = np.flatnonzero(group == gi - 1)
                if prev.size and run[prev[0]] == run[last]:
                    group[group == gi] = gi - 1
        _, group = np.unique(group, return_inverse=True)
        n_groups = int(group.max()) + 1
        ghh = np.bincount(group, weights=h[sr, sc], minlength=n_groups).astype(np.int64)
        # representative: the group's cell with most households
        rep = np.lexsort((-h[sr, sc], group))
        first_of = rep[np.r_[True, group[rep][1:] != group[rep][:-1]]]
        first_ea[sr, sc] = next_id + group
        n_ea[sr, sc] = 1
        ea_hh.append(ghh)
        ea_row.append(sr[first_of])
        ea_col.append(sc[first_of])
    return EAFrame(
        np.concatenate(ea_row), np.concatenate(ea_col), np.concatenate(ea_hh), first_ea, n_ea
    )


def ea_household_ids(
    frame: EAFrame, ea_ids: np.ndarray, n_households: np.ndarray, hh_offset: np.ndarray
) -> list[np.ndarray]:
    """The household ids of each EA in ``ea_ids`` (ids are ``hh_offset[cell] + rank + 1``).

    Households are listed cell by cell in raster order, by rank within a cell.
    """
    populated = np.flatnonzero(frame.first_ea.ravel() >= 0)
    first = frame.first_ea.ravel()[populated]
    order = np.lexsort((populated, first))
    cells, first = populated[order], first[order]
    n_ea = frame.n_ea.ravel()[cells]
    h = np.asarray(n_households).ravel()[cells]
    off = np.asarray(hh_offset).ravel()[cells]
    out = []
    for e in np.asarray(ea_ids):
        i = int(np.searchsorted(first, e, side="right")) - 1
        if n_ea[i] > 1 or first[i] != e:  # one EA of a split cell
            k = e - first[i]
            lo, hi = _ceil_div(k * h[i], n_ea[i]), _ceil_div((k + 1) * h[i], n_ea[i])
            out.append(off[i] + np.arange(int(lo), int(hi)) + 1)
        else:  # a grouped EA: every household of its cells
            j = int(np.searchsorted(first, e, side="left"))
            out.append(np.concatenate([off[c] + np.arange(h[c]) + 1 for c in range(j, i + 1)]))
    return out


def _ceil_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -(-a // b)


def ea_of_rank(rank: np.ndarray, n_households: np.ndarray, n_ea: np.ndarray) -> np.ndarray:
    """EA number within the cell of households of given rank (see :func:`make_ea_frame`)."""
    return (np.asarray(rank) * np.asarray(n_ea)) // np.maximum(np.asarray(n_households), 1)


def _allocate(pop: np.ndarray, n: int, n_units: np.ndarray) -> np.ndarray:
    """Clusters per stratum: proportional to population (largest remainder), at least 2
    (or every unit), never more than the stratum's units."""
    n_units = np.asarray(n_units, dtype=np.int64)
    n = min(int(n), int(n_units.sum()))
    floor_n = np.minimum(2, n_units)
    if floor_n.sum() > n:
        raise PovertyMapError(f"world: {n} clusters cannot cover {len(pop)} strata; ask for more")
    share = pop / pop.sum() * n
    alloc = np.clip(np.floor(share).astype(np.int64), floor_n, n_units)
    while alloc.sum() > n:  # minimums pushed us over: take from the largest
        alloc[np.argmax(alloc - floor_n)] -= 1
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    while alloc.sum() < n:
        room = order[alloc[order] < n_units[order]]
        for s in room[: n - int(alloc.sum())]:
            alloc[s] += 1
    return alloc


def _systematic_pps(
    size: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Systematic PPS of ``n`` units in the given order; returns (selected idx, pi)."""
    size = np.asarray(size, dtype=float)
    certain = np.zeros(size.size, bool)
    pi = np.zeros(size.size)
    while True:
        m = n - int(certain.sum())
        rest = np.where(certain, 0.0, size)
        if m <= 0 or rest.sum() <= 0:
            pi = certain.astype(float)
            break
        pi = np.where(certain, 1.0, m * rest / rest.sum())
        newly = (pi >= 1.0) & ~certain
        if not newly.any():
            break
        certain |= newly
    if certain.sum() > n:  # more certainty units than clusters: keep the largest
        keep = np.argsort(-np.where(certain, size, -1.0), kind="stable")[:n]
        certain = np.zeros(size.size, bool)
        certain[keep] = True
        pi = certain.astype(float)
    m = n - int(certain.sum())
    picked = np.flatnonzero(certain).tolist()
    if m > 0:
        rest = np.where(certain, 0.0, size)
        cum = np.cumsum(rest)
        step = cum[-1] / m
        points = rng.uniform(0, step) + step * np.arange(m)
        picked += np.searchsorted(cum, points, side="right").tolist()
    idx = np.array(sorted(picked), dtype=np.int64)
    return idx, pi[idx]


def select_clusters(
    frame: EAFrame,
    ea_population: np.ndarray,
    stratum: np.ndarray,
    order_key: np.ndarray,
    n_clusters: int,
    rng: np.random.Generator,
    *,
    first_phase: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Select EAs; returns (EA ids in stratum order, first-stage inclusion probabilities).

    ``first_phase`` (per EA, from :func:`select_districts`) restricts the draw to the EAs
    with a positive value; their probabilities are then the product of that value and the
    probability of the draw within the eligible EAs (allocation, strata and PPS as usual).
    """
    if first_phase is not None:
        keep = np.flatnonzero(np.asarray(first_phase) > 0)
        chosen, pi_within = select_clusters(
            frame, ea_population[keep], stratum[keep], order_key[keep], n_clusters, rng
        )
        return keep[chosen], pi_within * np.asarray(first_phase)[keep[chosen]]
    strata = np.unique(stratum)
    pop = np.array([ea_population[stratum == s].sum() for s in strata], dtype=float)
    units = np.array([(stratum == s).sum() for s in strata])
    alloc = _allocate(pop, n_clusters, units)
    ids, probs = [], []
    for s, n_s in zip(strata, alloc, strict=True):
        members = np.flatnonzero(stratum == s)
        members = members[np.lexsort((members, order_key[members]))]
        sel, pi = _systematic_pps(ea_population[members], int(n_s), rng)
        ids.append(members[sel])
        probs.append(pi)
    return np.concatenate(ids), np.concatenate(probs)


def select_districts(
    district: np.ndarray,
    region: np.ndarray,
    ea_population: np.ndarray,
    share: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """First phase of a spatially clustered survey: per EA, the inclusion probability of its
    admin-2 unit (0 where the unit is not drawn).

    In each admin-1 unit (``region``), ``max(1, round(share x its admin-2 units))`` admin-2
    units (``district``) are drawn by systematic PPS on their population, in id order (a
    unit larger than the sampling step is taken with certainty). Passed to
    :func:`select_clusters` as ``first_phase``, the clusters then come from the drawn units
    only and the design weights stay those of a two-phase sample (unbiased for totals
    except in a stratum left without eligible EAs, e.g. an admin-1 unit's urban EAs when
    none of its drawn units has any).
    """
    districts, first, inverse = np.unique(
        np.asarray(district), return_index=True, return_inverse=True
    )
    sizes = np.bincount(inverse, weights=np.asarray(ea_population, dtype=float))
    unit_region = np.asarray(region)[first]  # region of each unit's first EA
    pi_unit = np.zeros(districts.size)
    for r in np.unique(unit_region):
        members = np.flatnonzero(unit_region == r)
        k = min(members.size, max(1, round(share * members.size)))
        sel, pi = _systematic_pps(sizes[members], k, rng)
        pi_unit[members[sel]] = pi
    return pi_unit[inverse]


def displace(
    x: np.ndarray,
    y: np.ndarray,
    urban: np.ndarray,
    admin_polygons: np.ndarray,
    to_lonlat: object,
    rng: np.random.Generator,
    *,
    max_tries: int = 1000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """DHS displacement of cluster points, kept inside their admin-2 polygon.

    ``admin_polygons`` holds each cluster's admin-2 polygon in WGS84 (as published) and
    ``to_lonlat`` a pyproj Transformer from the working CRS to WGS84 (always_xy).
    Returns displaced ``x, y`` (working CRS), ``lon, lat`` and the cap in metres.
    """
    n = x.size
    urban = np.asarray(urban, dtype=bool)
    cap = np.where(urban, 2000.0, 5000.0)
    rural = np.flatnonzero(~urban)
    n_far = round(0.01 * rural.size)
    if n_far == 0 and rural.size >= 50:
        n_far = 1
    if n_far:
        cap[rng.choice(rural, size=n_far, replace=False)] = 10000.0
    dx = np.zeros(n)
    dy = np.zeros(n)
    lon = np.zeros(n)
    lat = np.zeros(n)
    todo = np.arange(n)
    for _ in range(max_tries):
        if todo.size == 0:
            break
        ang = rng.uniform(0, 2 * np.pi, todo.size)
        dist = rng.uniform(0, 1, todo.size) * cap[todo]
        tx = x[todo] + dist * np.cos(ang)
        ty = y[todo] + dist * np.sin(ang)
        tlon, tlat = to_lonlat.transform(tx, ty)  # type: ignore[attr-defined]
        ok = shapely.contains_xy(admin_polygons[todo], np.asarray(tlon), np.asarray(tlat))
        done = todo[ok]
        dx[done], dy[done] = tx[ok] - x[done], ty[ok] - y[done]
        lon[done], lat[done] = np.asarray(tlon)[ok], np.asarray(tlat)[ok]
        todo = todo[~ok]
    if todo.size:
        raise PovertyMapError(
            f"world: {todo.size} clusters could not be displaced inside their admin-2 unit"
        )
    return x + dx, y + dy, lon, lat, cap


def admin_polygons_wgs84(admin2: gpd.GeoDataFrame) -> np.ndarray:
    """Admin-2 polygons in WGS84 as published (for the displacement constraint)."""
    geoms = admin2.to_crs("EPSG:4326").geometry.to_numpy()
    shapely.prepare(geoms)
    return geoms
