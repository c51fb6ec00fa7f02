"""The country on its cell grid: everything drawn before any household exists (pass 0).

:func:`build_country` draws the geography, settlements, roads and travel times, then the
per-cell fields every later pass reads: expected people, urban flag, admin units, the
welfare field ``mu_c``, household counts, electrification and the enumeration-area frame.
Per-cell arrays have the frame's shape ``(ny, nx)``; a country of a million cells holds a
few hundred megabytes of them, while everything finer is generated window by window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from povertymap.world.cells import CellLayer, make_cell_layer
from povertymap.world.frame import Block, Frame
from povertymap.world.geography import Geography, make_geography
from povertymap.world.kernels import splat
from povertymap.world.lights import electrification
from povertymap.world.randomness import Streams, gaussian_field
from povertymap.world.roads import Access, make_access, make_roads
from povertymap.world.settlements import (
    MEAN_HH_SIZE,
    Settlements,
    expected_population,
    make_settlements,
)
from povertymap.world.spec import WorldSpec
from povertymap.world.survey import EAFrame, ea_of_rank, make_ea_frame
from povertymap.world.welfare import WelfareDraw, cell_mean_log_consumption, draw_welfare

__all__ = ["URBAN_DENSITY", "Country", "build_country"]

#: A cell is urban when towns and cities alone put this many people on its land (per km²).
URBAN_DENSITY = 400.0


@dataclass
class Country:
    """A country before its households: shapes, settlements, roads and cell fields."""

    spec: WorldSpec
    streams: Streams
    geo: Geography
    cells: CellLayer
    settlements: Settlements
    roads: gpd.GeoDataFrame  #: the true road network (working CRS)
    access: Access
    density: np.ndarray  #: expected people per km² of land
    urban_density: np.ndarray  #: people per km² from towns and cities only
    urban: np.ndarray  #: bool
    admin1: np.ndarray  #: admin-1 index per cell (-1 outside)
    admin2: np.ndarray  #: admin-2 index per cell (-1 outside)
    admin1_codes: np.ndarray  #: admin-1 ids, indexed by admin-1 index
    admin1_of_admin2: np.ndarray  #: admin-1 index of each admin-2 unit
    mu: np.ndarray  #: latent mean log consumption per capita
    n_households: np.ndarray  #: int64
    household_offset: np.ndarray  #: households in cells before this one (raster order)
    electrified: np.ndarray  #: bool
    roof_preference: np.ndarray  #: logit shift per admin-1 unit
    town_access: np.ndarray  #: exp(-travel time to a town / 1.5 h)
    cultivation: np.ndarray  #: share of land under fields
    ea: EAFrame
    lights_gain: float = 1.0  #: nightlight product gain (a later round's recalibration)
    round_info: dict[str, Any] | None = None  #: what a later round changed (world/rounds.py)

    @property
    def frame(self) -> Frame:
        return self.geo.frame

    def block_cells(self, b: Block) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of the block's cells with households, in raster order."""
        rr, cc = np.nonzero(self.n_households[b.r0 : b.r1, b.c0 : b.c1] > 0)
        return rr + b.r0, cc + b.c0

    def welfare(self, b: Block, rows: np.ndarray, cols: np.ndarray) -> WelfareDraw:
        """The households of a block's cells (always the same draws for the same block)."""
        return draw_welfare(
            self.mu[rows, cols],
            self.n_households[rows, cols],
            self.urban[rows, cols],
            self.spec,
            self.streams.get("welfare", b.index),
        )

    def ea_id(self, rows: np.ndarray, cols: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """EA of households given their cell and rank within it."""
        return self.ea.first_ea[rows, cols] + ea_of_rank(
            rank, self.n_households[rows, cols], self.ea.n_ea[rows, cols]
        )

    def household_id(self, rows: np.ndarray, cols: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """Global household ids: 1, 2, ... in raster order of cells, then by rank."""
        return self.household_offset[rows, cols] + rank + 1


def build_country(spec: WorldSpec, streams: Streams) -> Country:
    """Draw everything that lives on the cell grid (see the module docstring)."""
    geo = make_geography(spec, streams)
    frame = geo.frame
    cells = make_cell_layer(frame, geo.admin2, spec.pixels_per_cell, spec.block_cells)
    settlements = make_settlements(spec, geo, cells, streams)
    roads = make_roads(geo, settlements, streams)
    access = make_access(frame, roads, settlements)

    blobs = settlements.blobs
    xmin, _, _, ymax = frame.bounds
    land_share = cells.habitable / cells.ppc**2
    land_km2 = land_share * (frame.cell_size / 1000.0) ** 2
    expected = expected_population(frame, settlements, cells)
    towns = blobs.select(blobs.kind <= 1)
    urban_people = land_share * splat(
        towns.x, towns.y, towns.sigma, towns.people,
        x0=xmin, y_top=ymax, res=frame.cell_size, shape=frame.shape,
    )  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        urban_density = np.where(land_km2 > 0, urban_people / land_km2, 0.0)
        density = np.where(land_km2 > 0, expected / land_km2, 0.0)
    urban = (urban_density >= URBAN_DENSITY) & (cells.habitable > 0)

    admin2 = cells.admin2.astype(np.int64)
    a1_of_a2 = pd.factorize(geo.admin2["admin1_id"], sort=True)[0]
    admin1_codes = np.array(sorted(geo.admin2["admin1_id"].unique()))
    admin1 = np.where(admin2 >= 0, a1_of_a2[np.maximum(admin2, 0)], -1)

    mu, _ = cell_mean_log_consumption(
        spec=spec,
        urban=urban.astype(float),
        urban_density=urban_density,
        tt_city_h=access.tt_city_h,
        tt_town_h=access.tt_town_h,
        agro=geo.climate.agro,
        admin1=admin1,
        admin2=admin2,
        populated=expected > 0.5,
        rng=streams.get("welfare-field"),
        cell_size_m=frame.cell_size,
    )
    mean_size = np.where(urban, MEAN_HH_SIZE[True], MEAN_HH_SIZE[False])
    n_hh = streams.get("household-count").poisson(expected / mean_size)
    n_hh = np.where(cells.habitable > 0, n_hh, 0).astype(np.int64)
    offset = (np.cumsum(n_hh.ravel()) - n_hh.ravel()).reshape(frame.shape)

    rng = streams.get("electrification")
    patch = 1.2 * gaussian_field(rng, frame.shape, 3000.0 / frame.cell_size)
    electrified = electrification(mu, urban, density, access.grid_km, patch, rng) & (n_hh > 0)

    rain = geo.climate.rainfall_mm
    cultivation = (
        np.clip(gaussian_filter(density, 1.5, mode="reflect") / 400.0, 0.0, 0.6)
        * np.clip((rain - 350.0) / 300.0, 0.0, 1.0)
        * (urban_density < 800.0)
    )
    return Country(
        spec=spec,
        streams=streams,
        geo=geo,
        cells=cells,
        settlements=settlements,
        roads=roads,
        access=access,
        density=density,
        urban_density=urban_density,
        urban=urban,
        admin1=admin1,
        admin2=admin2,
        admin1_codes=admin1_codes,
        admin1_of_admin2=a1_of_a2,
        mu=mu,
        n_households=n_hh,
        household_offset=offset,
        electrified=electrified,
        roof_preference=streams.get("roof-tradition").normal(0.0, 0.3, len(admin1_codes)),
        town_access=np.exp(-access.tt_town_h / 1.5),
        cultivation=cultivation,
        ea=make_ea_frame(n_hh, admin2, urban, spec.ea_households),
    )
