"""Generate a synthetic country: the files a real user brings, plus the ground truth.

The work runs in passes over windows of ``block_cells`` cells, so memory grows with the
number of cells (a few hundred bytes each) but not with the number of pixels:

0. :func:`~povertymap.world.country.build_country`: geography, settlements, roads,
   travel times, the welfare field, household counts, electrification, the EA frame;
1. households' welfare and size, window by window, to set the poverty line (a people-
   weighted quantile) and the EA populations the survey's first stage needs; then the
   survey sample;
2. the same households again (same random streams) with their characteristics and
   dwellings: the population raster, the imagery, the registry, the survey's households,
   points of interest and every per-cell and per-area total;
3. the nightlights composite from the per-cell emission;

then the survey tables, the OSM layers, the truth tables and the study-area config.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer
from threadpoolctl import threadpool_limits

from povertymap.errors import ConfigError
from povertymap.io.writers import (
    RasterWriter,
    atomic_directory,
    write_json,
    write_table,
    write_vector,
    write_yaml,
)
from povertymap.world import survey as sv
from povertymap.world.blocks import (
    POP_NODATA,
    Totals,
    block_pois,
    household_tables,
    simulate_block,
)
from povertymap.world.country import Country, build_country
from povertymap.world.imagery import (
    BANDS,
    DN_PER_REFLECTANCE,
    IMAGERY_FORMATS,
    S2_DN_PER_REFLECTANCE,
    S2_OFFSET_DN,
    SCL_MASKED,
    ImageryContext,
    cloud_threshold,
    render_block,
    render_block_s2,
)
from povertymap.world.lights import lights_grid, render_lights, street_light
from povertymap.world.osm import osm_pois, osm_roads, road_midpoints
from povertymap.world.randomness import Streams
from povertymap.world.rounds import advance, check_round
from povertymap.world.spec import WorldSpec, resolve_spec
from povertymap.world.tables import (
    Survey,
    SurveyTables,
    admin_truth,
    cells_truth,
    spec_dict,
    study_config,
    survey_tables,
)
from povertymap.world.welfare import WelfareHistogram

__all__ = ["GENERATOR_VERSION", "Progress", "generate"]

log = logging.getLogger(__name__)

#: Bumped whenever the same (spec, seed) would give different files.
GENERATOR_VERSION = "1"
#: ``progress(step, done, total)``.
Progress = Callable[[str, int, int], None]
LIGHTS_NODATA = -999.0


def generate(
    preset: str | WorldSpec = "demo",
    *,
    seed: int = 7,
    out: Path,
    progress: Progress | None = None,
    overwrite: bool = False,
    imagery: str = "uint8",
    imagery_coverage: float = 1.0,
    survey_round: int = 1,
    lights_gain: float = 1.0,
) -> Path:
    """Simulate a country and write its inputs and truth into ``out``; return ``study.yaml``.

    ``preset`` is a name in :data:`povertymap.world.PRESETS` (``tiny``, ``demo``,
    ``large``) or a :class:`~povertymap.world.WorldSpec`. The same ``(preset, seed)``
    always writes the same bytes. The directory is built next to ``out`` and renamed into
    place, so a failure leaves nothing behind; a non-empty ``out`` is refused
    (:class:`~povertymap.errors.RunDirError`) unless ``overwrite``.
    ``progress(step, done, total)`` is called during long steps.

    ``imagery`` is how the imagery is written: ``"uint8"`` (the default, ``DN = 320 x
    reflectance``) or ``"sentinel2"`` (16-bit Sentinel-2 L2A-like ``DN = 10000 x
    reflectance + 1000`` and a scene classification raster ``scl.tif`` whose cloud and
    shadow classes the study config masks, with its ``scale``/``offset``/``mask`` set).
    ``imagery_coverage`` (0-1] is the share of the country's width, from the west, that the
    imagery covers; pixels beyond are no data (and SCL 0).

    ``survey_round`` > 1 writes a later round of the same country with its truth (growth,
    new electrification, roads and households, a new survey sample; the poverty line of
    round 1); ``lights_gain`` != 1 recalibrates its nightlight product
    (:mod:`povertymap.world.rounds`). Round 1 is unchanged by either argument's default.
    """
    spec = resolve_spec(preset)
    output = _imagery_output(imagery, imagery_coverage)
    check_round(survey_round, lights_gain)
    out = Path(out)
    report = progress if progress is not None else _silent
    # one BLAS thread: identical floating-point sums (hence bytes) on any machine, and no
    # oversubscription on small ones
    with threadpool_limits(limits=1), atomic_directory(out, overwrite=overwrite) as tmp:
        _write_world(spec, int(seed), tmp, report, output, (int(survey_round), lights_gain))
    log.info("world %s (seed %d) written to %s", spec.name, seed, out)
    return out / "study.yaml"


def _silent(step: str, done: int, total: int) -> None:
    """The default progress callback."""


def _imagery_output(fmt: str, coverage: float) -> tuple[str, float]:
    """The checked ``(imagery format, coverage)`` of :func:`generate`."""
    if fmt not in IMAGERY_FORMATS:
        raise ConfigError(
            f"unknown imagery format {fmt!r}",
            where="generate(imagery=...)",
            fix=f"use one of {', '.join(IMAGERY_FORMATS)}",
        )
    if not 0 < coverage <= 1:
        raise ConfigError(
            f"imagery_coverage={coverage!r} is outside (0, 1]",
            where="generate(imagery_coverage=...)",
            fix="give the share of the country's width the imagery covers",
        )
    return fmt, float(coverage)


def _write_world(
    spec: WorldSpec,
    seed: int,
    out: Path,
    progress: Progress,
    output: tuple[str, float] = ("uint8", 1.0),
    survey_round: tuple[int, float] = (1, 1.0),
) -> None:
    # every io writer creates its file's folder, so ``truth/`` appears with its first file
    streams = Streams(seed)
    progress("geography", 0, 1)
    country = build_country(spec, streams)
    progress("geography", 1, 1)
    line, ea_population = _poverty_line(country, progress)
    if survey_round[0] > 1 or survey_round[1] != 1.0:  # a later round: the line of round 1
        country = advance(country, survey_round[0], lights_gain=survey_round[1])
        _, ea_population = _poverty_line(country, progress)
    survey = _draw_survey(country, ea_population)
    totals, frames = _households_and_rasters(country, line, survey, out, progress, output)
    radiance = _nightlights(country, totals, out, progress)
    progress("tables", 0, 1)
    tables = survey_tables(
        country, survey, frames["survey"], frames["truth"][["household_id", "x", "y", "cell_id"]],
        (totals.ea_x, totals.ea_y, totals.ea_n, totals.ea_wsum),
    )  # fmt: skip
    write_table(tables.households, out / "households.csv")
    write_table(tables.clusters, out / "clusters.csv")
    write_table(tables.truth, out / "truth" / "clusters.csv")
    n_pois = _write_vectors(country, frames["pois"], out)
    cells = cells_truth(country, totals, radiance)
    write_table(cells, out / "truth" / "cells.parquet")
    admin = admin_truth(country, totals)
    write_table(admin, out / "truth" / "admin2.csv")
    write_table(
        admin[["admin2_id", "admin2_name", "admin1_id", "population", "households"]],
        out / "census.csv",
    )
    truth_hh = frames["truth"].merge(
        tables.households[["household_id", "cluster_id"]], on="household_id", how="left"
    )
    truth_hh["cluster_id"] = truth_hh["cluster_id"].fillna(0).astype(np.int64)
    write_table(
        truth_hh.sort_values("household_id", ignore_index=True),
        out / "truth" / "households.parquet",
    )
    registry = frames["registry"].sort_values("household_id", ignore_index=True)
    write_table(registry, out / "registry.parquet")
    info = _world_info(country, seed, line, totals, cells, tables, len(registry), n_pois)
    if country.round_info is not None:
        info["round"] = country.round_info
    config = study_config(spec, line)
    if spec.imagery_res_m is not None and output != ("uint8", 1.0):
        info["imagery"].update(format=output[0], coverage=output[1])
        if output[0] == "sentinel2":
            info["imagery"].update(dn_per_reflectance=S2_DN_PER_REFLECTANCE, offset_dn=S2_OFFSET_DN)
            config["rasters"]["imagery"].update(
                scale=1.0 / S2_DN_PER_REFLECTANCE,
                offset=-S2_OFFSET_DN / S2_DN_PER_REFLECTANCE,
                mask={"path": "scl.tif", "classes": list(SCL_MASKED)},
            )
    write_json(info, out / "truth" / "world.json")
    write_yaml(config, out / "study.yaml")
    progress("tables", 1, 1)


def _poverty_line(country: Country, progress: Progress) -> tuple[float, np.ndarray]:
    """Pass 1: the people-weighted quantile of log consumption, and people per EA."""
    frame, spec = country.frame, country.spec
    hist = WelfareHistogram()
    ea_pop = np.zeros(country.ea.households.size, np.int64)
    total = frame.n_blocks(spec.block_cells)
    for b in frame.blocks(spec.block_cells):
        progress("welfare", b.index, total)
        rows, cols = country.block_cells(b)
        draw = country.welfare(b, rows, cols)
        hist.add(draw.log_consumption, draw.size)
        ea = country.ea_id(rows[draw.cell], cols[draw.cell], draw.rank)
        ea_pop += np.bincount(ea, weights=draw.size, minlength=ea_pop.size).astype(np.int64)
    progress("welfare", total, total)
    line = hist.quantile(spec.poverty_headcount)
    log.debug("poverty line %.4f", line)
    return line, ea_pop


def _draw_survey(country: Country, ea_population: np.ndarray) -> Survey:
    """Both sampling stages: PPS selection of EAs, then households within them."""
    ea, frame, spec = country.ea, country.frame, country.spec
    stratum = country.admin1[ea.row, ea.col] * 2 + country.urban[ea.row, ea.col]
    order = country.admin2[ea.row, ea.col] * frame.nx * frame.ny + ea.row * frame.nx + ea.col
    first_phase = None  # spread over the country; else a spatially clustered sample
    if spec.survey_district_share < 1:
        first_phase = sv.select_districts(
            country.admin2[ea.row, ea.col], country.admin1[ea.row, ea.col],
            ea_population.astype(float), spec.survey_district_share,
            country.streams.get("survey-districts"),
        )  # fmt: skip
    ids, pi = sv.select_clusters(
        ea, ea_population.astype(float), stratum, order, spec.n_clusters,
        country.streams.get("survey-ea"), first_phase=first_phase,
    )  # fmt: skip
    picked = []
    members = sv.ea_household_ids(ea, ids, country.n_households, country.household_offset)
    for e, hids in zip(ids, members, strict=True):
        m = min(spec.households_per_cluster, hids.size)
        rng = country.streams.get("survey-households", int(e))
        picked.append(np.sort(rng.choice(hids, size=m, replace=False)))
    return Survey(ids, pi, np.sort(np.concatenate(picked)), ea_population)


def _households_and_rasters(
    country: Country,
    line: float,
    survey: Survey,
    out: Path,
    progress: Progress,
    output: tuple[str, float] = ("uint8", 1.0),
) -> tuple[Totals, dict[str, pd.DataFrame]]:
    """Pass 2: households window by window, the population raster and the imagery."""
    spec, frame = country.spec, country.frame
    ppc = country.cells.ppc
    res = frame.cell_size / ppc
    ny, nx = frame.shape
    totals = Totals(country)
    parts: dict[str, list[pd.DataFrame]] = {"registry": [], "truth": [], "survey": [], "pois": []}
    polygons = country.geo.admin2.geometry.to_numpy()
    shapely.prepare(polygons)
    texture_key = country.streams.key("population-texture")
    imagery = _imagery_context(country) if spec.imagery_res_m is not None else None
    with contextlib.ExitStack() as stack:
        pop_out = stack.enter_context(
            RasterWriter(
                out / "population.tif", width=nx * ppc, height=ny * ppc, count=1,
                dtype="float32", crs=frame.crs, transform=frame.transform(res),
                nodata=POP_NODATA, band_names=["population"], units=["people per pixel"],
                tags={"source": "povertymap.world", "description": "people per pixel"},
            )
        )  # fmt: skip
        s2 = output[0] == "sentinel2"
        if imagery is not None:
            ipc = spec.imagery_pixels_per_cell
            tags = {
                "source": "povertymap.world",
                "reflectance_scale": f"{1 / DN_PER_REFLECTANCE:.6f}",
                "season": spec.season,
            }
            if s2:
                tags.update(
                    reflectance_scale=f"{1 / S2_DN_PER_REFLECTANCE:g}",
                    BOA_ADD_OFFSET=str(-S2_OFFSET_DN),
                )
            img_out = stack.enter_context(
                RasterWriter(
                    out / "imagery.tif", width=nx * ipc, height=ny * ipc, count=4,
                    dtype="uint16" if s2 else "uint8", crs=frame.crs,
                    transform=frame.transform(imagery.res), nodata=0, band_names=list(BANDS),
                    level=1, tags=tags,
                )
            )  # fmt: skip
            if s2:
                scl_out = stack.enter_context(
                    RasterWriter(
                        out / "scl.tif", width=nx * ipc, height=ny * ipc, count=1,
                        dtype="uint8", crs=frame.crs, transform=frame.transform(imagery.res),
                        band_names=["scl"], resampling="nearest", level=1,
                        tags={"source": "povertymap.world",
                              "description": "Sentinel-2 L2A-like scene classification"},
                    )
                )  # fmt: skip
            covered_cols = round(output[1] * nx * ipc)
            cloud_out = stack.enter_context(
                RasterWriter(
                    out / "truth" / "cloud_mask.tif", width=nx * ipc, height=ny * ipc,
                    count=1, dtype="uint8", crs=frame.crs,
                    transform=frame.transform(imagery.res), nodata=255, band_names=["cloud"],
                    resampling="nearest", level=1,
                )
            )  # fmt: skip
        total = frame.n_blocks(spec.block_cells)
        for b in frame.blocks(spec.block_cells):
            progress("households", b.index, total)
            bh = simulate_block(country, b, line, texture_key, polygons)
            totals.add(bh)
            registry, truth, sampled = household_tables(country, bh, survey.household_ids, b)
            parts["registry"].append(registry)
            parts["truth"].append(truth)
            parts["survey"].append(sampled)
            parts["pois"].append(block_pois(country, bh, b))
            pop_out.write(bh.population, (b.r0 * ppc, b.c0 * ppc))
            if imagery is not None:
                rng = country.streams.get("imagery", b.index)
                covered = None
                if covered_cols < nx * ipc:
                    cols = b.c0 * ipc + np.arange((b.c1 - b.c0) * ipc)
                    covered = np.broadcast_to(cols < covered_cols, ((b.r1 - b.r0) * ipc, cols.size))
                if s2:
                    dn, scl, cloud = render_block_s2(
                        imagery, b, bh.x, bh.y, bh.dwellings, rng, covered
                    )
                    scl_out.write(scl, (b.r0 * ipc, b.c0 * ipc))
                else:
                    dn, cloud = render_block(imagery, b, bh.x, bh.y, bh.dwellings, rng)
                    if covered is not None:
                        dn[:, ~covered] = 0
                img_out.write(dn, (b.r0 * ipc, b.c0 * ipc))
                cloud_out.write(cloud, (b.r0 * ipc, b.c0 * ipc))
                nr, nc = b.shape
                cell_cloud = cloud.reshape(nr, ipc, nc, ipc).mean(axis=(1, 3))
                totals.cloud[b.r0 : b.r1, b.c0 : b.c1] = cell_cloud
        progress("households", total, total)
    frames = {k: pd.concat(v, ignore_index=True) for k, v in parts.items()}
    return totals, frames


def _imagery_context(country: Country) -> ImageryContext:
    spec, geo, frame = country.spec, country.geo, country.frame
    assert spec.imagery_res_m is not None  # checked by the caller
    rain = geo.climate.rainfall_mm
    season = 1.0 if spec.season == "wet" else 0.45
    names = (
        "veg",
        "forest",
        "soil",
        "plot_angle",
        "plot_size",
        "plot_use",
        "cloud",
        "urban_blocks",
    )
    keys = {k: country.streams.key(f"imagery-{k}") for k in names}
    thr = cloud_threshold(
        frame, spec.cloud_share, keys["cloud"], country.streams.get("cloud-threshold")
    )
    rivers = [r.buffer(w / 2) for r, w in zip(geo.rivers, geo.river_width_m, strict=True)]
    roads = country.roads
    roads.sindex  # noqa: B018  (build the spatial index once, not in every window)
    return ImageryContext(
        frame=frame,
        res=float(spec.imagery_res_m),
        season=spec.season,
        veg=np.clip((rain - 350.0) / 900.0, 0.05, 0.95) * season,
        cultivation=country.cultivation,
        urban_density=country.urban_density * country.urban,
        rainfall=rain,
        lake=geo.lake,
        rivers=rivers,
        riparian=[r.buffer(150.0) for r in geo.rivers],
        roads=roads,
        keys=keys,
        cloud_threshold=thr,
    )


def _nightlights(country: Country, totals: Totals, out: Path, progress: Progress) -> np.ndarray:
    """Pass 3: the VIIRS-like composite; returns the radiance at every cell centre."""
    spec, frame = country.spec, country.frame
    grid = lights_grid(frame, spec.lights_res_deg)
    light = totals.light + street_light(
        country.urban, totals.people, country.density, country.electrified
    )
    radiance = render_lights(
        spec, frame, country.cells, country.settlements, light, grid,
        country.streams.key("population-texture"), country.streams.get("lights-noise"),
        progress=lambda d, t: progress("nightlights", d, t),
    )  # fmt: skip
    if country.lights_gain != 1.0:  # a recalibrated product: same light, other numbers
        radiance = np.where(radiance > 0, radiance * country.lights_gain, radiance)
    with RasterWriter(
        out / "nightlights.tif", width=grid.width, height=grid.height, count=1,
        dtype="float32", crs="EPSG:4326", transform=grid.transform, nodata=LIGHTS_NODATA,
        band_names=["radiance"], units=["nW/cm2/sr"], blocksize=256,
        tags={
            "source": "povertymap.world",
            "description": "VIIRS-like annual radiance composite, background masked",
            "detection_floor": str(spec.lights_floor),
            "saturation": str(spec.lights_saturation),
        },
    ) as writer:  # fmt: skip
        writer.write(radiance, (0, 0))
    x, y = frame.centers()
    lon, lat = Transformer.from_crs(frame.crs, "EPSG:4326", always_xy=True).transform(x, y)
    t = grid.transform
    col = np.clip(np.floor((np.asarray(lon) - t.c) / t.a).astype(np.int64), 0, grid.width - 1)
    row = np.clip(np.floor((np.asarray(lat) - t.f) / t.e).astype(np.int64), 0, grid.height - 1)
    return np.asarray(radiance[row, col])


def _write_vectors(country: Country, pois: pd.DataFrame, out: Path) -> tuple[int, int]:
    """Admin units, OSM roads and POIs (and their truth); returns (true, mapped) POIs."""
    geo, frame, streams = country.geo, country.frame, country.streams
    admin = geo.admin2[["admin2_id", "admin2_name", "admin1_id", "admin1_name", "geometry"]]
    write_vector(admin.to_crs("EPSG:4326"), out / "admin.geojson")
    write_vector(geo.admin1.to_crs("EPSG:4326"), out / "admin1.geojson")
    mid = road_midpoints(country.roads)
    r, c = frame.row_col(mid["x"].to_numpy(), mid["y"].to_numpy())
    r, c = np.clip(r, 0, frame.ny - 1), np.clip(c, 0, frame.nx - 1)
    osm, mapped = osm_roads(
        country.roads, country.mu[r, c], country.urban[r, c], geo.outline, streams.get("osm-roads")
    )
    write_vector(osm, out / "roads.geojson")
    write_vector(
        country.roads.assign(mapped=mapped).to_crs("EPSG:4326"), out / "truth" / "roads.geojson"
    )
    rows, cols = pois["row"].to_numpy(dtype=np.int64), pois["col"].to_numpy(dtype=np.int64)
    gdf, pmapped = osm_pois(
        pois["x"].to_numpy(dtype=float), pois["y"].to_numpy(dtype=float),
        pois["code"].to_numpy(dtype=np.int64), country.mu[rows, cols], country.urban[rows, cols],
        frame, streams.get("osm-pois"),
    )  # fmt: skip
    write_vector(gdf.assign(mapped=pmapped), out / "truth" / "pois.geojson")
    mapped_pois = gdf[pmapped].reset_index(drop=True)
    mapped_pois["osm_id"] = np.arange(1, len(mapped_pois) + 1, dtype=np.int64)
    write_vector(mapped_pois, out / "pois.geojson")
    water = gpd.GeoDataFrame(
        {
            "kind": ["lake"] + ["river"] * len(geo.rivers),
            "width_m": np.r_[np.nan, geo.river_width_m],
        },
        geometry=[geo.lake, *geo.rivers],
        crs=frame.crs,
    )
    write_vector(water.to_crs("EPSG:4326"), out / "truth" / "water.geojson")
    st = country.settlements.table
    places = gpd.GeoDataFrame(
        st.drop(columns=["x", "y"]), geometry=shapely.points(st["x"], st["y"]), crs=frame.crs
    )
    write_vector(places.to_crs("EPSG:4326"), out / "truth" / "settlements.geojson")
    return len(gdf), int(pmapped.sum())


def _world_info(
    country: Country,
    seed: int,
    line: float,
    totals: Totals,
    cells: pd.DataFrame,
    tables: SurveyTables,
    registry_rows: int,
    n_pois: tuple[int, int],
) -> dict[str, Any]:
    """``truth/world.json``: the parameters and the headline figures of the country."""
    spec = country.spec
    people = int(totals.people.sum())
    populated = cells["population"].to_numpy() > 0
    lit = cells["lit"].to_numpy()
    kinds = country.settlements.table["kind"]
    return {
        "generator_version": GENERATOR_VERSION,
        "preset": spec.name,
        "seed": seed,
        "spec": spec_dict(spec),
        "crs": spec.crs,
        "poverty_line": line,
        "poverty_line_usd_per_day": float(np.exp(line)),
        "national_headcount": float(totals.poor.sum() / max(people, 1)),
        "population": people,
        "households": int(country.n_households.sum()),
        "cells": len(cells),
        "populated_cells": int(populated.sum()),
        "urban_population_share": float(totals.people[country.urban].sum() / max(people, 1)),
        "electrified_population_share": float(totals.connected.sum() / max(people, 1)),
        "dark_populated_cell_share": float((~lit[populated]).mean()) if populated.any() else None,
        "clusters": len(tables.clusters),
        "survey_households": len(tables.households),
        "pmt_r2": tables.pmt_r2,
        "pmt_r2_true_consumption": tables.pmt_r2_true,
        "registry_households": registry_rows,
        "registry_fraction": spec.registry_fraction,
        "pois": n_pois[0],
        "pois_mapped": n_pois[1],
        "roads": len(country.roads),
        "settlements": {k: int((kinds == k).sum()) for k in ("city", "town", "village")},
        "lights": {
            "floor": spec.lights_floor,
            "saturation": spec.lights_saturation,
            "units": "nW/cm2/sr",
        },
        "imagery": None
        if spec.imagery_res_m is None
        else {
            "resolution_m": spec.imagery_res_m,
            "bands": list(BANDS),
            "dn_per_reflectance": DN_PER_REFLECTANCE,
            "cloud_share": float(np.nanmean(cells["cloud_fraction"])),
        },
        "units": {"log_consumption": "natural log of consumption per capita, 2017 PPP $ a day"},
    }
