"""The published survey tables, the truth tables and the study-area config.

Pure functions from the simulation's state to DataFrames and mappings; writing them is
:mod:`povertymap.world.generate`'s job (through :mod:`povertymap.io.writers`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from povertymap.errors import PovertyMapError
from povertymap.world import households as hh
from povertymap.world import survey as sv
from povertymap.world.blocks import Totals
from povertymap.world.country import Country
from povertymap.world.imagery import BANDS
from povertymap.world.spec import WorldSpec

__all__ = ["Survey", "SurveyTables", "admin_truth", "cells_truth", "study_config", "survey_tables"]

_HOUSEHOLD_COLUMNS = [
    "household_id", "cluster_id", "weight", "hh_size", "log_consumption", "asset_index", "urban",
    "admin1_id",
]  # fmt: skip


@dataclass(frozen=True)
class Survey:
    """The drawn sample: selected EAs (cluster ``k + 1`` is EA ``ea[k]``) and households."""

    ea: np.ndarray  #: selected EA indices, in cluster order
    pi: np.ndarray  #: first-stage inclusion probabilities
    household_ids: np.ndarray  #: sorted ids of the sampled households
    ea_population: np.ndarray  #: people per EA (all EAs)

    @property
    def cluster_of_ea(self) -> np.ndarray:
        """Cluster id of every EA (0 when not selected)."""
        out = np.zeros(self.ea_population.size, np.int64)
        out[self.ea] = np.arange(1, self.ea.size + 1)
        return out


@dataclass(frozen=True)
class SurveyTables:
    households: pd.DataFrame  #: households.csv
    clusters: pd.DataFrame  #: clusters.csv
    truth: pd.DataFrame  #: truth/clusters.csv
    pmt_r2: float  #: R² of the PMT regression on measured log consumption
    pmt_r2_true: float  #: same on true log consumption


def survey_tables(
    country: Country,
    survey: Survey,
    sampled: pd.DataFrame,
    positions: pd.DataFrame,
    ea_centroid: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> SurveyTables:
    """Measured survey tables and their truth.

    ``sampled`` holds the sampled households' registry rows plus ``ea_id`` and
    ``true_log_consumption``; ``positions`` their dwellings (household_id, x, y, cell_id);
    ``ea_centroid`` the sums of x, y, count and size-weighted log consumption per EA.
    """
    spec, geo, frame = country.spec, country.geo, country.frame
    s = sampled.sort_values(["ea_id", "household_id"], ignore_index=True)
    ea = s["ea_id"].to_numpy()
    cluster = survey.cluster_of_ea[ea]
    pi_ea = np.zeros(survey.ea_population.size)
    pi_ea[survey.ea] = survey.pi
    m = s.groupby("ea_id")["household_id"].transform("size").to_numpy()
    rng = country.streams.get("measurement")
    true = s["true_log_consumption"].to_numpy()
    measured = true + rng.normal(0, spec.measurement_error_sd, len(s))
    s["asset_index"] = hh.asset_index(s)
    s["cluster_id"] = cluster
    s["weight"] = 1.0 / (pi_ea[ea] * m / country.ea.households[ea])
    s["log_consumption"] = measured

    # the true location: the sampled dwelling nearest the centroid of all the EA's
    # dwellings (the centre of its populated area, on a real house)
    ex, ey, en, ew = ea_centroid
    ids = survey.ea
    pos = positions.set_index("household_id").loc[s["household_id"].to_numpy()].reset_index()
    pos["cluster_id"] = cluster
    pos["d"] = np.hypot(
        pos["x"].to_numpy() - (ex / en)[ids][cluster - 1],
        pos["y"].to_numpy() - (ey / en)[ids][cluster - 1],
    )
    centre = pos.sort_values(["cluster_id", "d", "household_id"]).groupby("cluster_id").first()
    cx, cy = centre["x"].to_numpy(), centre["y"].to_numpy()
    tree = shapely.STRtree(geo.admin2.geometry.to_numpy())
    hit, unit_hit = tree.query(shapely.points(cx, cy), predicate="within")
    unit = np.full(ids.size, -1)
    unit[hit] = unit_hit
    if (unit < 0).any():
        raise PovertyMapError("world: a cluster centre fell outside every admin-2 unit")
    urban = country.urban[country.ea.row[ids], country.ea.col[ids]]
    to_ll = Transformer.from_crs(frame.crs, "EPSG:4326", always_xy=True)
    polys_ll = sv.admin_polygons_wgs84(geo.admin2)
    dx, dy, lon, lat, cap = sv.displace(
        cx, cy, urban, polys_ll[unit], to_ll, country.streams.get("displacement")
    )
    lon_true, lat_true = to_ll.transform(cx, cy)
    admin1 = country.admin1_codes[country.admin1_of_admin2[unit]]
    # DHS publishes the region of the cluster, and household urbanity is the cluster's
    s["admin1_id"] = admin1[cluster - 1]
    s["urban"] = np.where(urban[cluster - 1], "U", "R")

    grp = s.assign(_m=measured * s["hh_size"], _t=true * s["hh_size"]).groupby("cluster_id")
    people = grp["hh_size"].sum()
    cid = np.arange(1, ids.size + 1)
    clusters = pd.DataFrame(
        {
            "cluster_id": cid,
            "lon": lon,
            "lat": lat,
            "urban": np.where(urban, "U", "R"),
            "n_households": grp.size().reindex(cid).to_numpy(),
            # households listed in the EA before the second stage (a survey's listing)
            "ea_households": country.ea.households[ids],
            "weight": grp["weight"].first().reindex(cid).to_numpy(),
            "log_consumption": (grp["_m"].sum() / people).reindex(cid).to_numpy(),
            "asset_index": grp["asset_index"].mean().reindex(cid).to_numpy(),
            "admin1_id": admin1,
        }
    )
    truth = pd.DataFrame(
        {
            "cluster_id": cid,
            "ea_id": ids + 1,
            "cell_id": centre["cell_id"].to_numpy(),
            "admin2_id": geo.admin2["admin2_id"].to_numpy()[unit],
            "admin1_id": admin1,
            "urban": urban,
            "x_true": cx,
            "y_true": cy,
            "lon_true": np.asarray(lon_true),
            "lat_true": np.asarray(lat_true),
            "lon": lon,
            "lat": lat,
            "displacement_m": np.hypot(dx - cx, dy - cy),
            "cap_m": cap,
            "ea_households": country.ea.households[ids],
            "ea_population": survey.ea_population[ids],
            "pi_ea": survey.pi,
            "true_mean_log_consumption": ew[ids] / survey.ea_population[ids],
            "sample_true_mean_log_consumption": (grp["_t"].sum() / people).reindex(cid).to_numpy(),
        }
    )
    columns = _HOUSEHOLD_COLUMNS + [c for c in hh.PMT_COLUMNS if c != "hh_size"]
    households = s[columns].sort_values(["cluster_id", "household_id"], ignore_index=True)
    return SurveyTables(
        households=households,
        clusters=clusters,
        truth=truth,
        pmt_r2=hh.pmt_r2(s, measured),
        pmt_r2_true=hh.pmt_r2(s, true),
    )


def cells_truth(country: Country, totals: Totals, radiance: np.ndarray) -> pd.DataFrame:
    """``truth/cells.parquet``: one row per grid cell, in the pipeline's (raster) order."""
    spec, geo, frame, cells = country.spec, country.geo, country.frame, country.cells
    sel = cells.in_grid
    ix, iy = frame.ix_iy()
    people = totals.people[sel]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(people > 0, totals.wsum[sel] / people, np.nan)
        rate = np.where(people > 0, totals.poor[sel] / people, np.nan)
    a2 = country.admin2[sel]
    return pd.DataFrame(
        {
            "cell_id": [f"{a}_{b}" for a, b in zip(ix[sel], iy[sel], strict=True)],
            "ix": ix[sel],
            "iy": iy[sel],
            "population": people,
            "households": country.n_households[sel],
            "mean_log_consumption": mean,
            "poverty_rate": rate,
            "urban": country.urban[sel],
            "admin2_id": geo.admin2["admin2_id"].to_numpy()[a2],
            "admin1_id": country.admin1_codes[country.admin1_of_admin2[a2]],
            "electrified": country.electrified[sel],
            "lit": radiance[sel] >= spec.lights_floor,
            "radiance": radiance[sel],
            "cloud_fraction": totals.cloud[sel],
            "aoi_fraction": cells.aoi_fraction[sel],
            "expected_mean_log_consumption": country.mu[sel],
            "rainfall_mm": geo.climate.rainfall_mm[sel],
            "agro_zone": np.array(["semi-arid", "sub-humid", "humid"])[geo.climate.zone[sel]],
            "travel_time_town_h": country.access.tt_town_h[sel],
            "travel_time_city_h": country.access.tt_city_h[sel],
        }
    )


def admin_truth(country: Country, totals: Totals) -> pd.DataFrame:
    """``truth/admin2.csv``: true population, households, mean and headcount per unit."""
    geo = country.geo
    with np.errstate(divide="ignore", invalid="ignore"):
        return pd.DataFrame(
            {
                "admin2_id": geo.admin2["admin2_id"].to_numpy(),
                "admin2_name": geo.admin2["admin2_name"].to_numpy(),
                "admin1_id": geo.admin2["admin1_id"].to_numpy(),
                "population": totals.admin_people,
                "households": totals.admin_households,
                "mean_log_consumption": totals.admin_wsum / totals.admin_people,
                "headcount": totals.admin_poor / totals.admin_people,
                "area_km2": geo.admin2.geometry.area.to_numpy() / 1e6,
            }
        )


def study_config(spec: WorldSpec, poverty_line: float) -> dict[str, Any]:
    """The study-area config (``study.yaml``), every path relative to it."""
    rasters: dict[str, Any] = {
        "nightlights": {"path": "nightlights.tif"},
        "population": {"path": "population.tif"},
    }
    features: dict[str, Any] = {}
    model: dict[str, Any] = {"name": "lightgbm"}
    if spec.imagery_res_m is not None:
        rasters["imagery"] = {"path": "imagery.tif", "bands": list(BANDS)}
        # the best model of `povertymap run --compare` on the demo (docs/deep.md): a stack
        # of LightGBM on tabular features and ridge on each kind of image embedding, with
        # the CNN's fast setting (width 8, 4 epochs)
        features = {
            "blocks": ["nl", "pop", "img", "osm", "settle", "cnn", "rcf"],
            "params": {"cnn": {"width": 8, "epochs": 4}},
        }
        model = {
            "name": "stack",
            "estimators": [
                {"name": "lightgbm", "features": ["nl", "pop", "img", "osm", "settle"]},
                {"name": "ridge", "features": ["rcf"]},
                {"name": "ridge", "features": ["cnn"]},
            ],
        }
    return {
        "name": spec.name,
        "crs": spec.crs,
        "grid": {"cell_size_m": spec.cell_size_m},
        "boundaries": {
            "path": "admin.geojson", "id": "admin2_id", "name": "admin2_name",
            "parent": "admin1_id",
        },
        "survey": {
            "clusters": {
                "path": "clusters.csv", "id": "cluster_id", "lon": "lon", "lat": "lat",
                "urban": "urban", "target": "log_consumption", "households": "n_households",
                "weight": "weight",
            },
            "households": {
                "path": "households.csv", "cluster": "cluster_id", "id": "household_id",
                "welfare": "log_consumption", "weight": "weight", "size": "hh_size",
            },
        },
        "rasters": rasters,
        "vectors": {
            "roads": {"path": "roads.geojson", "class": "highway"},
            "pois": {"path": "pois.geojson", "class": "amenity"},
        },
        "census": {
            "path": "census.csv", "id": "admin2_id", "population": "population",
            "households": "households",
        },
        "registry": {"path": "registry.parquet", "weight": "registry_weight"},
        **({"features": features} if features else {}),
        "model": model,
        # the survey is dense: match CV distances to the map's (see docs/methods.md)
        "cv": {"block_size_m": "auto"},
        "poverty_line": round(poverty_line, 6),
    }  # fmt: skip


def spec_dict(spec: WorldSpec) -> dict[str, Any]:
    """The spec as a plain mapping (for world.json).

    ``survey_district_share`` is listed only when it is set below 1, so that the worlds of
    the specs that existed before the field keep their bytes.
    """
    out = asdict(spec)
    if out["survey_district_share"] == 1.0:
        del out["survey_district_share"]
    return out
