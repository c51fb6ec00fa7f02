"""The parameters of a synthetic country (:class:`WorldSpec`) and the named presets.

A spec fixes the size of the country, its resolutions, how many settlements and admin
units it has, the survey design and the poverty headcount. Everything random is then drawn
from the seed given to :func:`povertymap.world.generate`, so ``(spec, seed)`` identifies a
country byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from povertymap.errors import ConfigError

__all__ = ["PRESETS", "WorldSpec", "resolve_spec"]


@dataclass(frozen=True)
class WorldSpec:
    """Parameters of a synthetic country.

    Extent and resolutions
        ``width_km`` x ``height_km`` is the bounding box of the country (the outline fills
        about two thirds of it; a lake takes part of the west side), centred on
        ``center_lon``/``center_lat`` (real WGS84 degrees) in the working ``crs``.
        ``cell_size_m`` is the grid cell of truth and of the pipeline; population is
        written at ``population_res_m``, imagery at ``imagery_res_m`` (None: no imagery),
        nightlights on a WGS84 grid of ``lights_res_deg`` degrees (15 arc-seconds, VIIRS).
        Both raster resolutions must divide the cell size.

    Admin units and settlements
        ``n_admin1`` regions made of ``n_admin2`` districts; ``n_cities`` cities and
        ``n_towns`` towns (together ``urban_share`` of the people, cities taking
        ``city_share`` of that), ``n_villages`` villages (``village_share`` of the people);
        ``dispersed_share`` in scattered homesteads, everyone else in hamlets of
        ``hamlet_size`` people on average.
        ``population_density`` is people per km² of land. ``n_rivers`` rivers flow to the
        lake.

    Welfare
        ``poverty_headcount`` is the share of people below the national poverty line (the
        line is set to hit it). ``household_sd_rural``/``household_sd_urban`` are the
        within-cell standard deviations of log consumption per capita;
        ``local_scale_km`` is the correlation length of the local welfare noise.

    Survey
        ``n_clusters`` clusters of ``households_per_cluster`` households, drawn from
        enumeration areas of about ``ea_households`` households (PPS by population within
        admin-1 x urban/rural strata). ``measurement_error_sd`` is the error of measured
        log consumption. ``survey_district_share`` (0, 1] is the share of admin-2 units
        the survey visits: 1 (default) spreads the clusters over the whole country; below
        1 the sample is spatially clustered: in each admin-1 unit that share of its admin-2
        units is drawn first (PPS on population, at least one) and the clusters come from
        their EAs only (two-phase design weights).

    Sensors
        ``lights_floor`` (detection floor) and ``lights_saturation`` in nW/cm²/sr;
        ``cloud_share`` is the share of the image under cloud; ``season`` (``wet`` or
        ``dry``) sets the greenness of fields.

    Scale
        ``block_cells`` is the processing window (cells per side): memory grows with it,
        not with the country. ``registry_fraction`` < 1 keeps a uniform random sample of
        households in the registry and in ``truth/households.parquet`` (large countries).
    """

    name: str
    width_km: float
    height_km: float
    n_admin1: int
    n_admin2: int
    n_cities: int
    n_towns: int
    n_villages: int
    n_clusters: int
    center_lon: float = 35.0
    center_lat: float = -6.0
    crs: str = "EPSG:32736"
    cell_size_m: float = 1000.0
    population_res_m: float = 100.0
    imagery_res_m: float | None = 20.0
    lights_res_deg: float = 1.0 / 240.0
    population_density: float = 80.0
    urban_share: float = 0.33
    city_share: float = 0.6
    village_share: float = 0.32
    hamlet_size: float = 60.0
    dispersed_share: float = 0.10
    n_rivers: int = 2
    poverty_headcount: float = 0.40
    household_sd_rural: float = 0.50
    household_sd_urban: float = 0.58
    local_scale_km: float = 6.0
    households_per_cluster: int = 25
    ea_households: int = 150
    measurement_error_sd: float = 0.18
    survey_district_share: float = 1.0
    lights_floor: float = 0.6
    lights_saturation: float = 60.0
    cloud_share: float = 0.03
    season: Literal["wet", "dry"] = "wet"
    block_cells: int = 25
    registry_fraction: float = 1.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.width_km < 5 or self.height_km < 5:
            problems.append(f"extent {self.width_km}x{self.height_km} km is below 5 km")
        for res_name in ("population_res_m", "imagery_res_m"):
            res = getattr(self, res_name)
            if res is not None and (
                res <= 0 or abs(self.cell_size_m / res - round(self.cell_size_m / res)) > 1e-9
            ):
                problems.append(f"{res_name}={res} does not divide cell_size_m={self.cell_size_m}")
        if not 0.05 <= self.poverty_headcount <= 0.95:
            problems.append(f"poverty_headcount={self.poverty_headcount} outside 0.05-0.95")
        if not 0 <= self.cloud_share < 0.5:
            problems.append(f"cloud_share={self.cloud_share} outside [0, 0.5)")
        if self.n_admin1 < 1 or self.n_admin2 < self.n_admin1:
            problems.append(f"need 1 <= n_admin1 <= n_admin2, got {self.n_admin1}, {self.n_admin2}")
        if self.n_cities < 1:
            problems.append("need at least one city")
        if self.n_clusters < 2 or self.households_per_cluster < 2:
            problems.append("need at least 2 clusters of 2 households")
        if not 0 < self.survey_district_share <= 1:
            problems.append(f"survey_district_share={self.survey_district_share} outside (0, 1]")
        if not 0 < self.registry_fraction <= 1:
            problems.append(f"registry_fraction={self.registry_fraction} outside (0, 1]")
        if self.urban_share + self.village_share + self.dispersed_share >= 1:
            problems.append(
                "urban_share + village_share + dispersed_share must leave people for hamlets"
            )
        if self.season not in ("wet", "dry"):
            problems.append(f"season={self.season!r} is neither 'wet' nor 'dry'")
        if self.block_cells < 4:
            problems.append(f"block_cells={self.block_cells} is below 4")
        if problems:
            raise ConfigError(
                "invalid world spec: " + "; ".join(problems),
                where=f"WorldSpec {self.name!r}",
                fix="adjust the fields named (see the WorldSpec docstring)",
            )

    @property
    def pixels_per_cell(self) -> int:
        """Population pixels along one cell edge."""
        return round(self.cell_size_m / self.population_res_m)

    @property
    def imagery_pixels_per_cell(self) -> int:
        """Imagery pixels along one cell edge (0 without imagery)."""
        if self.imagery_res_m is None:
            return 0
        return round(self.cell_size_m / self.imagery_res_m)

    def with_(self, **changes: Any) -> WorldSpec:
        """A copy with some fields changed (validated again)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(
                f"unknown WorldSpec field(s) {', '.join(unknown)}",
                fix=f"valid fields: {', '.join(sorted(known))}",
            )
        return replace(self, **changes)


#: The named presets: ``tiny`` for unit tests, ``demo`` for the demo and most tests,
#: ``large`` for scale tests (no imagery, 5% household registry; see docs/world.md).
PRESETS: dict[str, WorldSpec] = {
    "tiny": WorldSpec(
        name="tiny",
        width_km=24,
        height_km=20,
        n_admin1=2,
        n_admin2=6,
        n_cities=1,
        n_towns=3,
        n_villages=30,
        n_clusters=60,
        ea_households=60,
        n_rivers=1,
        population_density=90.0,
        local_scale_km=3.0,
        block_cells=32,
    ),
    "demo": WorldSpec(
        name="demo",
        width_km=100,
        height_km=80,
        n_admin1=5,
        n_admin2=40,
        n_cities=3,
        n_towns=20,
        n_villages=300,
        n_clusters=400,
    ),
    "large": WorldSpec(
        name="large",
        width_km=1000,
        height_km=1000,
        n_admin1=26,
        n_admin2=180,
        n_cities=25,
        n_towns=400,
        n_villages=15000,
        n_clusters=1600,
        n_rivers=8,
        population_density=50.0,
        local_scale_km=10.0,
        imagery_res_m=None,
        registry_fraction=0.05,
        block_cells=128,
    ),
}


def resolve_spec(preset: str | WorldSpec) -> WorldSpec:
    """The spec named ``preset`` (or ``preset`` itself when it already is a spec)."""
    if isinstance(preset, WorldSpec):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ConfigError(
            f"unknown world preset {preset!r}",
            fix=f"use one of {', '.join(PRESETS)} or pass a WorldSpec",
        ) from None
