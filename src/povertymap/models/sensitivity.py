"""How cross-validated accuracy moves when the survey clusters are displaced once more."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd

from povertymap.engine.base import Engine, ProgressCallback
from povertymap.estimate.displacement import displace_clusters
from povertymap.features.base import FeatureBlock
from povertymap.features.build import build_features
from povertymap.features.urban import cluster_urban
from povertymap.models.evaluate import CrossValidation, cross_validate
from povertymap.studyarea import cluster_buffers

if TYPE_CHECKING:
    from povertymap.studyarea import StudyArea

__all__ = ["displacement_sensitivity", "redisplaced_features"]


def redisplaced_features(
    area: StudyArea,
    blocks: list[FeatureBlock],
    draws: int,
    *,
    engine: Engine,
    urban_cells: pd.Series | None = None,
) -> list[pd.DataFrame]:
    """The clusters' features at ``draws`` re-displaced locations, each aligned with the
    clusters.

    Survey coordinates are already displaced (DHS: urban up to 2 km, rural up to 5 km, 1%
    of rural up to 10 km, inside the admin-2 unit). Each draw displaces them again by the
    same rules (seeded by ``model.random_state``) and computes the cluster features there
    with the fitted ``blocks``. ``urban_cells`` (the map's urban flag per cell) picks each
    moved cluster's buffer radius, as for the published points; without it the survey
    flag does.
    """
    if draws < 1:
        return []
    admin = area.require_admin()
    clusters = pd.DataFrame(area.clusters.drop(columns="geometry"))
    clusters["easting"], clusters["northing"] = area.clusters.geometry.x, area.clusters.geometry.y
    if "urban" not in clusters:
        clusters["urban"] = False
    radii = area.config.features.buffer_m.model_dump()
    rng = np.random.default_rng(area.config.model.random_state)
    zones = []
    for k in range(draws):
        moved = displace_clusters(clusters, rng, admin=admin)
        points = area.clusters.set_geometry(
            gpd.points_from_xy(moved["easting"], moved["northing"], crs=area.crs)
        )
        flags = (
            cluster_urban(points, urban_cells, area.cell_size) if urban_cells is not None else None
        )
        buffers = cluster_buffers(points, radii, urban=flags)
        zones.append(buffers.set_index(buffers.index.astype(str) + f"@{k}"))
    # one pass over the rasters and embeddings for every draw's buffers
    features = build_features(blocks, area, pd.concat(zones), engine=engine)
    n = len(area.clusters)
    return [
        features.iloc[k * n : (k + 1) * n].set_axis(area.clusters.index, axis=0)
        for k in range(draws)
    ]


def displacement_sensitivity(
    area: StudyArea,
    blocks: list[FeatureBlock],
    cv: CrossValidation,
    *,
    draws: int,
    engine: Engine,
    urban_cells: pd.Series | None = None,
    progress: ProgressCallback | None = None,
    **cv_options: Any,
) -> dict[str, Any]:
    """How cross-validated r² moves when the clusters are displaced once more.

    Each draw of :func:`redisplaced_features` reruns the cross-validation on the same
    folds with the moved features. A small spread means buffer-averaged features absorb
    the displacement.
    """
    r2 = []
    tables = redisplaced_features(area, blocks, draws, engine=engine, urban_cells=urban_cells)
    for k, X in enumerate(tables):
        again = cross_validate(
            area, X, compare_random=False, references=False, engine=engine, **cv_options
        )
        r2.append(float(again.metrics["r2"]))
        if progress is not None:
            progress("re-displacement", k + 1, draws)
    change = np.asarray(r2) - cv.metrics["r2"]
    return {
        "draws": draws,
        "r2": cv.metrics["r2"],
        "r2_redisplaced": r2,
        "mean_change": float(change.mean()),
        "sd": float(np.std(r2, ddof=1)) if draws > 1 else 0.0,
        "max_abs_change": float(np.abs(change).max()),
    }
