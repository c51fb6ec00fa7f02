"""Re-displacing survey cluster points by the DHS rules.

DHS, MIS and AIS surveys publish cluster coordinates offset at random to protect
respondents (Burgert et al. 2013, DHS Spatial Analysis Reports 7): urban clusters by 0-2 km,
rural clusters by 0-5 km, and a further 1 % of rural clusters by 0-10 km; the angle is
uniform and the *distance* uniform on its range (so points concentrate near the origin,
unlike a uniform draw over the disc), and a draw that leaves the cluster's admin-2 unit
is redrawn. The pipeline applies the same rules to the already-displaced points many
times and re-runs cross-validation to see how much the measured accuracy moves with the
positional error (a second displacement roughly doubles the positional variance, so it
brackets the effect of the first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from numpy.typing import ArrayLike

from povertymap.errors import InputError, ModelError

__all__ = ["Displacement", "displace_clusters", "displace_points"]


@dataclass(frozen=True)
class Displacement:
    """Displaced coordinates with how far each moved and whether it was a 10 km draw."""

    x: np.ndarray
    y: np.ndarray
    distance: np.ndarray
    far: np.ndarray
    tries: np.ndarray


def displace_points(
    x: ArrayLike,
    y: ArrayLike,
    urban: ArrayLike,
    rng: np.random.Generator,
    *,
    polygons: Sequence[shapely.Geometry | None] | np.ndarray | None = None,
    urban_max_m: float = 2_000.0,
    rural_max_m: float = 5_000.0,
    far_max_m: float = 10_000.0,
    far_share: float = 0.01,
    max_tries: int = 1_000,
) -> Displacement:
    """Displace points (projected metres) by the DHS rules.

    ``round(far_share x n_rural)`` rural points, chosen at random, get the ``far_max_m``
    cap. ``polygons`` (one geometry per point, or None for no constraint) must contain the
    displaced point; failing draws are redrawn (angle and distance) up to ``max_tries``
    times, after which a :class:`ModelError` names the point.
    """
    xx = np.asarray(x, dtype=float).ravel()
    yy = np.asarray(y, dtype=float).ravel()
    u = np.asarray(urban).astype(bool).ravel()
    n = xx.size
    if yy.size != n or u.size != n:
        raise InputError(f"x, y and urban have {n}, {yy.size} and {u.size} values; align them")
    if not 0 <= far_share <= 1:
        raise InputError(f"far_share={far_share} must lie in [0, 1]")
    cap = np.where(u, urban_max_m, rural_max_m)
    far = np.zeros(n, dtype=bool)
    rural_idx = np.flatnonzero(~u)
    n_far = round(far_share * rural_idx.size)
    if n_far:
        far[rng.choice(rural_idx, size=n_far, replace=False)] = True
    cap = np.where(far, far_max_m, cap)
    geoms = None
    if polygons is not None:
        geoms = np.asarray(polygons, dtype=object)
        if geoms.size != n:
            raise InputError(f"{geoms.size} polygons for {n} points; pass one per point")
        has = np.array([g is not None for g in geoms])
        shapely.prepare(geoms[has])
    out_x, out_y, dist = xx.copy(), yy.copy(), np.zeros(n)
    tries = np.zeros(n, dtype=int)
    todo = np.arange(n)
    for _ in range(max_tries):
        if todo.size == 0:
            break
        theta = rng.uniform(0.0, 2 * np.pi, todo.size)
        d = rng.uniform(0.0, 1.0, todo.size) * cap[todo]
        nx = xx[todo] + d * np.cos(theta)
        ny = yy[todo] + d * np.sin(theta)
        tries[todo] += 1
        if geoms is None:
            ok = np.ones(todo.size, dtype=bool)
        else:
            g = geoms[todo]
            has = np.array([gg is not None for gg in g])
            ok = ~has
            if has.any():
                ok[has] = shapely.contains_xy(g[has].tolist(), nx[has], ny[has])
        idx = todo[ok]
        out_x[idx], out_y[idx], dist[idx] = nx[ok], ny[ok], d[ok]
        todo = todo[~ok]
    if todo.size:
        raise ModelError(
            f"{todo.size} point(s) (first at position {int(todo[0])}) stayed outside their "
            f"polygon after {max_tries} draws; the polygon is too small for the displacement "
            "cap or does not surround the point. Check the cluster's admin unit"
        )
    return Displacement(x=out_x, y=out_y, distance=dist, far=far, tries=tries)


def displace_clusters(
    clusters: pd.DataFrame,
    rng: np.random.Generator,
    *,
    admin: pd.DataFrame | None = None,
    x: str = "easting",
    y: str = "northing",
    urban: str = "urban",
    admin_id: str = "admin_id",
    urban_max_m: float = 2_000.0,
    rural_max_m: float = 5_000.0,
    far_max_m: float = 10_000.0,
    far_share: float = 0.01,
    max_tries: int = 1_000,
) -> pd.DataFrame:
    """A copy of ``clusters`` with ``x``/``y`` displaced, kept inside each admin unit.

    ``admin`` is a GeoDataFrame of admin-2 polygons (in the clusters' CRS) indexed by admin
    id, or with an ``admin_id`` column. Adds ``displacement_m`` and ``displaced_far``.
    The caps are those of :func:`displace_points`.
    """
    for col in (x, y, urban):
        if col not in clusters:
            raise InputError(f"clusters lack column {col!r}", fix=f"add {col!r}")
    polygons = None
    if admin is not None:
        geo = admin.set_index(admin_id) if admin_id in admin.columns else admin
        if admin_id not in clusters:
            raise InputError(
                f"clusters lack column {admin_id!r} to find their admin polygon",
                fix="add the admin-2 id of each cluster",
            )
        unknown = ~clusters[admin_id].isin(geo.index)
        if unknown.any():
            raise InputError(
                f"{int(unknown.sum())} cluster(s) name admin units absent from the polygons "
                f"(first {clusters[admin_id][unknown].iloc[0]!r})",
                fix="pass the admin-2 layer the clusters were coded with",
            )
        polygons = geo.geometry.reindex(clusters[admin_id]).to_numpy()
    res = displace_points(
        clusters[x].to_numpy(),
        clusters[y].to_numpy(),
        clusters[urban].to_numpy(),
        rng,
        polygons=polygons,
        urban_max_m=urban_max_m,
        rural_max_m=rural_max_m,
        far_max_m=far_max_m,
        far_share=far_share,
        max_tries=max_tries,
    )
    out = clusters.copy()
    out[x] = res.x
    out[y] = res.y
    out["displacement_m"] = res.distance
    out["displaced_far"] = res.far
    return out
