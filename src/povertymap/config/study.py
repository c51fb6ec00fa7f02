"""Study-area config: the YAML contract of DESIGN.md as pydantic models.

Every path is relative to the config file and is resolved (and checked to exist) when the
config is loaded. Unknown keys are refused with the closest valid key as a suggestion, so a
typo never silently drops a data source.

Example::

    name: demoland
    crs: EPSG:32736
    grid: {cell_size_m: 1000}
    boundaries: {path: admin.geojson, id: admin2_id, name: admin2_name, parent: admin1_id}
    survey:
      clusters: {path: clusters.csv, target: wealth_index}
    rasters:
      nightlights: {path: nightlights.tif}
      population: {path: population.tif, nodata: -99999}
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from povertymap.config.estimate import EstimationSettings
from povertymap.config.monitoring import MonitoringSettings
from povertymap.config.targeting import TargetingSettings
from povertymap.errors import ConfigError, InputNotFoundError

__all__ = [
    "BoundariesConfig",
    "BufferConfig",
    "CVConfig",
    "CensusConfig",
    "ClustersConfig",
    "DhsConfig",
    "DhsGpsConfig",
    "DhsHouseholdsConfig",
    "FeaturesConfig",
    "GridConfig",
    "HouseholdsConfig",
    "MaskConfig",
    "ModelConfig",
    "RasterConfig",
    "RegistryConfig",
    "StudyAreaConfig",
    "SurveyConfig",
    "TableConfig",
    "VectorConfig",
    "config_from_dict",
    "reference_markdown",
]

#: Raster roles the features know how to use; any other name gets generic zonal statistics.
RASTER_ROLES = ("nightlights", "population", "imagery")
#: Vector roles the features know how to use.
VECTOR_ROLES = ("roads", "pois")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _FileRef(_Model):
    path: Path = Field(description="File path, relative to the config file.")


class BoundariesConfig(_FileRef):
    """Admin units that tile the study area; their union is the area of interest."""

    id: str = Field("admin_id", description="Column with a unique id per unit.")
    name: str | None = Field(None, description="Column with a readable name.")
    parent: str | None = Field(None, description="Column with the parent unit id (admin-1).")
    layer: str | None = Field(None, description="Layer name for multi-layer files (GPKG).")


class ClustersConfig(_FileRef):
    """Survey clusters (enumeration areas): one row per cluster, displaced coordinates."""

    id: str = Field("cluster_id", description="Column with a unique cluster id.")
    lon: str = Field("lon", description="Longitude column, WGS84 degrees.")
    lat: str = Field("lat", description="Latitude column, WGS84 degrees.")
    urban: str | None = Field(
        None,
        description="Urban flag column (U/R, 1/0, true/false). Without it every cluster "
        "gets the rural buffer radius.",
    )
    target: str = Field(description="Numeric column to map (asset index, log consumption...).")
    households: str | None = Field(None, description="Column with surveyed households.")
    weight: str | None = Field(None, description="Column with survey weights, if any.")


class HouseholdsConfig(_FileRef):
    """Survey households: used for proxy means tests, SAE variances and targeting."""

    cluster: str = Field("cluster_id", description="Column linking each household to a cluster.")
    id: str | None = Field(None, description="Column with a unique household id.")
    welfare: str | None = Field(None, description="Household welfare (e.g. log consumption).")
    weight: str | None = Field(None, description="Household survey weight.")
    size: str | None = Field(None, description="Household size (people).")


class RegistryConfig(_FileRef):
    """A household registry or census-like list to target (proxy means test variables)."""

    id: str = Field("household_id", description="Column with a unique household id.")
    cell: str | None = Field("cell_id", description="Column with the grid cell id, if known.")
    admin: str | None = Field("admin2_id", description="Column with the admin-2 id, if known.")
    size: str = Field("hh_size", description="Household size (people).")
    weight: str | None = Field(None, description="Weight when the list is a sample.")


#: Keys of ``survey.dhs`` naming a file, each a mapping with ``path`` or its shorthand.
DHS_FILES = ("gps", "households")


def _path_shorthand(value: Any) -> Any:
    """``gps: XXGE81FL.shp`` stands for ``gps: {path: XXGE81FL.shp}``."""
    return {"path": value} if isinstance(value, str | Path) else value


class DhsGpsConfig(_FileRef):
    """The DHS GPS dataset (``XXGE..FL``): the shapefile, its unzipped folder or the .zip.

    Only the attribute table is read (cluster number, ``LATNUM``/``LONGNUM`` in WGS84
    degrees, urban/rural). Rows at (0, 0) are DHS's marker for a cluster whose coordinates
    are missing: they are dropped, with their households, in one warning that counts them.
    """

    id: str = Field("DHSCLUST", description="Cluster number column (matches hv001).")
    lat: str = Field("LATNUM", description="Latitude column, WGS84 degrees (displaced).")
    lon: str = Field("LONGNUM", description="Longitude column, WGS84 degrees (displaced).")
    urban: str | None = Field(
        "URBAN_RURA",
        description="Urban flag column ('U'/'R'); null: taken from the household recode.",
    )

    def attribute_file(self) -> Path:
        """The file holding the attributes read (the one a run's manifest digests): the
        ``.dbf`` of a shapefile, the ``.zip`` itself, or the ``.dbf`` in a folder (the one
        named after the folder, else the only one)."""
        path = self.path
        if path.is_dir():
            named = path / f"{path.name}.dbf"
            found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".dbf")
            return named if named.exists() or len(found) != 1 else found[0]
        if path.suffix.lower() == ".shp":
            return path.with_suffix(".dbf")
        return path


class DhsHouseholdsConfig(_FileRef):
    """The DHS household recode (``XXHR..FL.DTA``, Stata; the downloaded .zip works too).

    Every household becomes a row of the canonical households table (``cluster_id``,
    ``welfare``, ``weight``, ``hh_size``, ``household_id``; other columns kept); each
    cluster's target is the weighted mean of its households' welfare, with the weights the
    estimation uses (``estimate.person_weighted``: weight x household size, else weight).
    Value labels are not applied: codes are read as numbers.
    """

    cluster: str = Field("hv001", description="Cluster number column (matches DHSCLUST).")
    id: str | None = Field("hhid", description="Household id column; null: none.")
    weight: str = Field("hv005", description="Household weight column (DHS: x 1e6).")
    weight_divisor: Annotated[float, Field(gt=0)] = Field(
        1e6, description="The weight column is divided by this (DHS stores weight x 1e6)."
    )
    urban: str | None = Field(
        "hv025",
        description="Urban/rural column (1 urban, 2 rural): the cluster flag when the GPS has "
        "none, else checked against it (a mismatch means files of different surveys).",
    )
    target: str = Field(
        "hv271",
        description="Household welfare column, averaged into the cluster target (DHS: the "
        "wealth index factor score x 1e5).",
    )
    target_divisor: Annotated[float, Field(gt=0)] = Field(
        1e5, description="The target column is divided by this (hv271 is stored x 1e5)."
    )
    size: str | None = Field("hv009", description="Household size column (members).")
    columns: list[str] | None = Field(
        None,
        description="Other columns to keep (e.g. the PMT variables the registry shares); "
        "default: every column of the file.",
    )


class DhsConfig(_Model):
    """A DHS survey as distributed: the GPS dataset and the household recode.

    ``dhs: {gps: XXGE81FL.shp, households: XXHR81FL.DTA}`` reads both with the DHS column
    names; either file may instead be a mapping (``{path: ..., target: hv270}``).
    """

    gps: DhsGpsConfig = Field(
        description="GPS dataset: its path (XXGE..FL .shp, unzipped folder or .zip) or a "
        "mapping with path and column names."
    )
    households: DhsHouseholdsConfig = Field(
        description="Household recode: its path (XXHR..FL .DTA or its .zip) or a mapping "
        "with path and column names."
    )

    @field_validator("gps", "households", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _path_shorthand(value)


class SurveyConfig(_Model):
    """The survey: a clusters table (and households), or a DHS survey as distributed."""

    clusters_: ClustersConfig | None = Field(
        None,
        alias="clusters",
        description="One row per cluster (enumeration area); or give dhs instead.",
    )
    dhs: DhsConfig | None = Field(
        None, description="A DHS survey: GPS dataset and household recode (instead of clusters)."
    )
    households: HouseholdsConfig | None = Field(
        None, description="One row per household (noise, direct estimates, PMT)."
    )
    max_outside_m: Annotated[float, Field(ge=0)] = Field(
        10_000.0,
        description="Clusters this close outside the admin units (displaced DHS points near "
        "lakes, coasts and coarse borders) are kept, in their nearest unit, with a warning; "
        "farther ones are refused.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> SurveyConfig:
        if self.clusters_ is not None and self.dhs is not None:
            raise PydanticCustomError(
                "config_choice",
                "survey.clusters and survey.dhs are both given; a survey is one or the other",
                {"fix": "keep clusters: (a clusters table) or dhs: (the DHS GPS dataset and "
                 "household recode), not both"},
            )  # fmt: skip
        if self.clusters_ is None and self.dhs is None:
            raise PydanticCustomError(
                "config_choice",
                "the survey has neither clusters nor dhs",
                {"fix": "add clusters: {path: clusters.csv, target: ...} or "
                 "dhs: {gps: XXGE81FL.shp, households: XXHR81FL.DTA}"},
            )  # fmt: skip
        if self.dhs is not None and self.households is not None:
            raise PydanticCustomError(
                "config_choice",
                "survey.households cannot be combined with survey.dhs",
                {"fix": "remove survey.households: the DHS household recode is "
                 "survey.dhs.households"},
            )  # fmt: skip
        return self

    @property
    def target(self) -> str:
        """The name of the survey's target (the clusters' column, or the DHS recode's)."""
        return self.clusters.target

    @property
    def clusters(self) -> ClustersConfig:
        """The clusters' config; for a DHS survey, a view of the GPS dataset with the
        household recode's target (its ``path`` is the GPS dataset's)."""
        if self.clusters_ is not None:
            return self.clusters_
        assert self.dhs is not None  # one of the two, checked by _one_source
        gps = self.dhs.gps
        return ClustersConfig(
            path=gps.path,
            id=gps.id,
            lon=gps.lon,
            lat=gps.lat,
            urban=gps.urban,
            target=self.dhs.households.target,
        )


#: Sentinel-2 L2A scene classification (SCL) classes that are not clear ground: cloud
#: shadow (3), cloud of medium (8) and high (9) probability, thin cirrus (10).
SCL_CLOUD_CLASSES = (3, 8, 9, 10)


class MaskConfig(_Model):
    """Imagery pixels to drop (cloud, shadow, no data), by the class value of a mask.

    Either a separate raster (``path``; any CRS and resolution, read nearest-neighbour onto
    the imagery's pixel grid), e.g. ``{path: scl.tif, classes: [3, 8, 9, 10]}`` for a
    Sentinel-2 SCL layer, or a band of the imagery raster itself (``band`` without
    ``path``; that band is then not used as a data band), e.g. ``{band: 5, classes: [1]}``.
    Pixels beyond the edge of a separate mask raster read as its nodata value (0, SCL's
    no-data class, when it declares none).
    """

    path: Path | None = Field(
        None,
        description="Separate mask raster (e.g. Sentinel-2 SCL), relative to the config file; "
        "omit it to use a band of the imagery raster.",
    )
    band: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="Band (1-based) holding the classes: of the mask raster (default 1) or, "
        "without path, of the imagery raster (required then).",
    )
    classes: list[int] = Field(
        default_factory=lambda: list(SCL_CLOUD_CLASSES),
        min_length=1,
        description="Mask values that make a pixel invalid. Default: the Sentinel-2 SCL "
        "classes 3 (cloud shadow), 8, 9 (cloud, medium/high probability) and 10 (thin "
        "cirrus); add 0 to drop SCL no-data too.",
    )

    @model_validator(mode="after")
    def _path_or_band(self) -> MaskConfig:
        if self.path is None and self.band is None:
            raise ValueError(
                "a mask needs a path (a separate mask raster) or a band (of the imagery)"
            )
        return self


class RasterConfig(_FileRef):
    """A raster source in any CRS and resolution (reprojected on read).

    ``scale``, ``offset``, ``mask`` and ``valid_range`` describe imagery (the ``imagery``
    role); other rasters are read as stored. Reflectance is ``DN * scale + offset``, and
    every imagery threshold (cloud brightness, valid range, bright roofs) is in reflectance.
    Sentinel-2 L2A: ``scale: 1.0e-4`` (the uint16 default) and, for products of processing
    baseline 04.00 (from 25 January 2022) on, ``offset: -0.1`` (their BOA_ADD_OFFSET of
    -1000 DN). Landsat Collection 2 Level-2: ``scale: 2.75e-5, offset: -0.2``.
    """

    nodata: float | Literal["none"] | None = Field(
        None,
        description="Nodata value overriding the file's; 'none' asserts that every value is "
        "data. Needed when the file declares none but holds a sentinel such as -99999.",
    )
    bands: list[str] | None = Field(None, description="Band names, in file order.")
    scale: float | None = Field(
        None,
        description="Imagery: reflectance = DN * scale + offset. Default by data type: "
        "uint8 1/255 (DN / 255, a 0-1 brightness), uint16 and int16 1e-4 (Sentinel-2 L2A), "
        "float 1 (reflectance as stored). Landsat Collection 2 Level-2: 2.75e-5.",
    )
    offset: float | None = Field(
        None,
        description="Imagery: added after scale (default 0). Sentinel-2 L2A from processing "
        "baseline 04.00 (2022) on: -0.1 (its -1000 DN offset); Landsat Collection 2 Level-2: "
        "-0.2.",
    )
    mask: MaskConfig | None = Field(
        None, description="Imagery: cloud/invalid mask from a mask raster or band (see below)."
    )
    valid_range: tuple[float, float] | None = Field(
        None,
        description="Imagery: reflectance range of valid pixels (e.g. [0, 1.2]); a pixel with "
        "a band outside it is invalid. Default: no range test.",
    )

    @field_validator("valid_range")
    @classmethod
    def _ordered_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"valid_range {list(value)} must be [low, high] with low < high")
        return value


class VectorConfig(_FileRef):
    """A vector layer (roads, points of interest); any CRS."""

    class_: str | None = Field(
        None, alias="class", description="Column holding the feature class (e.g. highway)."
    )
    layer: str | None = Field(None, description="Layer name for multi-layer files.")


class TableConfig(_FileRef):
    """A precomputed feature table, joined to clusters (and cells) by ``key``."""

    key: str = Field(description="Column holding the unit id (cluster_id or cell_id).")


class CensusConfig(_FileRef):
    """Population and households per admin unit (a census or its projection).

    Used to weight small-area estimates and to benchmark totals.
    """

    id: str = Field("admin_id", description="Column with the admin unit id (as in boundaries).")
    population: str = Field("population", description="Column with the number of people.")
    households: str | None = Field(None, description="Column with the number of households.")


class GridConfig(_Model):
    cell_size_m: Annotated[float, Field(gt=0)] = Field(
        1000.0, description="Cell edge in metres of the working CRS; cells align to multiples."
    )


class BufferConfig(_Model):
    """Radii of the buffers over which cluster features are averaged (DHS displacement caps)."""

    urban: Annotated[float, Field(gt=0)] = Field(2000.0, description="Urban radius (m).")
    rural: Annotated[float, Field(gt=0)] = Field(5000.0, description="Rural radius (m).")


class FeaturesConfig(_Model):
    """Which feature blocks to compute and how."""

    blocks: list[str] | None = Field(
        None,
        description="Feature blocks to compute (nl, pop, img, osm, settle, rast, table, cnn, "
        "rcf). "
        "Default: every block whose inputs the study area has, except the slow deep ones "
        "unless listed.",
    )
    params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Hyperparameters per block, e.g. {cnn: {epochs: 4}}."
    )
    buffer_m: BufferConfig = Field(
        default_factory=BufferConfig, description="Cluster buffer radii in metres."
    )
    engine: Literal["local", "spark"] = Field(
        "local",
        description="Where kernels run: local (this process, or n_jobs worker processes) or "
        "spark (tasks on a Spark cluster or local[N]; needs the spark extra and Java 17). "
        "The numbers are the same on both.",
    )
    n_jobs: int = Field(
        1,
        ge=1,
        description="Worker processes of the local engine for feature kernels, CV folds and "
        "out-of-area refits (1: run in this process); results are identical whatever the "
        "value.",
    )
    spark_master: str | None = Field(
        None,
        description="Spark master URL for engine: spark (local[2], spark://host:7077, yarn, "
        "k8s://...). Default: the environment variable POVERTYMAP_SPARK_MASTER, else the "
        "master spark-submit was given, else local[*]. Inputs must be paths every executor "
        "can read.",
    )

    @field_validator("spark_master")
    @classmethod
    def _master_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(
                "spark_master is blank; give a master URL such as local[2] or "
                "spark://host:7077, or leave the key out"
            )
        return value


class ModelConfig(_Model):
    """A model over feature blocks: ridge, LightGBM, or a stack of models."""

    name: Literal["ridge", "lightgbm", "stack"] = Field(
        "lightgbm", description="ridge (scaled, RidgeCV), lightgbm, or stack."
    )
    features: list[str] | None = Field(
        None, description="Feature blocks this model uses (default: all computed)."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Estimator keyword arguments (e.g. LightGBM's)."
    )
    estimators: list[ModelConfig] | None = Field(
        None, description="For name: stack, the models whose predictions are combined."
    )
    random_state: int = Field(0, description="Seed of every random choice in the model.")
    target_standardize_by: str | None = Field(
        None,
        description="A survey cluster column (e.g. country) within whose groups the target is "
        "standardised (mean 0, sd 1) for fitting and scoring: for surveys pooled across "
        "countries whose index levels are not comparable. The model is fitted on the "
        "training clusters standardised with their own group's mean and sd; the CV figures "
        "are then on the within-group standardised index (the metrics say so), with the "
        "pooled-index figures beside them where a test cluster's group was in training. "
        "`povertymap evaluate` only: a map would need a level for every cell.",
    )


class CVConfig(_Model):
    """Cross-validation: spatial blocks by default, because random folds flatter models."""

    scheme: Literal["spatial", "random", "group"] = Field(
        "spatial", description="spatial blocks, random folds, or leave-one-group-out."
    )
    folds: Annotated[int, Field(ge=2)] = Field(5, description="Folds (spatial, random).")
    block_size_m: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto",
        description="'auto' (default): the block size whose test-to-training distances best "
        "match the map's cell-to-survey distances (nearest-neighbour distance matching, Mila "
        "et al. 2022), with no buffer; or the edge of the square spatial blocks in metres "
        "(e.g. 50000 for a national survey), where too few blocks for the folds fall back to "
        "'auto' with a warning.",
    )
    buffer_m: Annotated[float, Field(ge=0)] = Field(
        10_000.0,
        description="With a fixed block size, training clusters within this distance of a test "
        "fold are dropped.",
    )
    group: str | None = Field(None, description="Survey column for scheme: group.")
    random_state: int = Field(0, description="Seed of the fold assignment.")


class StudyAreaConfig(_Model):
    """A study area: where, which inputs, at which resolution."""

    name: str = Field(description="Short name used in run ids and reports.")
    crs: str | None = Field(
        None, description="Working CRS (projected, metres). Default: UTM zone of the AOI."
    )
    grid: GridConfig = Field(default_factory=GridConfig, description="The grid of map cells.")
    boundaries: BoundariesConfig | None = Field(
        None, description="Admin units; required to make a map, optional for `evaluate`."
    )
    survey: SurveyConfig = Field(description="The household survey: clusters and households.")
    rasters: dict[str, RasterConfig] = Field(
        default_factory=dict,
        description="Rasters by role: nightlights, population, imagery (others get generic "
        "statistics).",
    )
    vectors: dict[str, VectorConfig] = Field(
        default_factory=dict, description="Vector layers by role: roads, pois."
    )
    tables: list[TableConfig] = Field(
        default_factory=list, description="Precomputed feature tables keyed by cluster id."
    )
    census: CensusConfig | None = Field(
        None, description="Population per admin unit (weights of small-area estimates)."
    )
    registry: RegistryConfig | None = Field(
        None, description="Households to target with a proxy means test (optional)."
    )
    targeting: TargetingSettings = Field(
        default_factory=TargetingSettings, description="The default targeting plan of a run."
    )
    features: FeaturesConfig = Field(
        default_factory=FeaturesConfig, description="Feature blocks and cluster buffers."
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="The mapping model.")
    cv: CVConfig = Field(default_factory=CVConfig, description="How accuracy is measured.")
    estimate: EstimationSettings = Field(
        default_factory=EstimationSettings,
        description="Calibration, intervals, small-area estimation and disclosure control.",
    )
    monitoring: MonitoringSettings = Field(
        default_factory=MonitoringSettings,
        description="Drift thresholds (`povertymap monitor`) and the retraining gate.",
    )
    poverty_line: float | Annotated[str, Field(pattern=r"^\d+(\.\d+)?%$")] | None = Field(
        None,
        description="Poverty line in the units of the survey target (e.g. log consumption), "
        "or a share of people ('40%': the line below which that share of the surveyed people "
        "live, from the survey's weighted welfare distribution; what DHS users with an asset "
        "index target). When set, estimates are also converted to poverty headcounts.",
    )
    #: Directory the relative paths were resolved against (set by the loader).
    base_dir: Path | None = Field(None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, value: str) -> str:
        if not value or any(c in value for c in "/\\ \t"):
            raise ValueError(f"name {value!r} must be non-empty, without spaces or slashes")
        return value

    @field_validator("vectors")
    @classmethod
    def _known_vector_roles(cls, value: dict[str, VectorConfig]) -> dict[str, VectorConfig]:
        for key in value:
            if key not in VECTOR_ROLES:
                raise ValueError(
                    f"unknown vector layer {key!r}; expected one of {', '.join(VECTOR_ROLES)}"
                )
        return value

    def files(self) -> dict[str, Path]:
        """Every input file by its config key (``rasters.population``, ``tables[0]``, ...)."""
        out: dict[str, Path] = {}
        if self.boundaries is not None:
            out["boundaries"] = self.boundaries.path
        if self.survey.dhs is not None:
            out["survey.dhs.gps"] = self.survey.dhs.gps.attribute_file()
            out["survey.dhs.households"] = self.survey.dhs.households.path
        else:
            out["survey.clusters"] = self.survey.clusters.path
        if self.survey.households is not None:
            out["survey.households"] = self.survey.households.path
        out.update({f"rasters.{k}": v.path for k, v in self.rasters.items()})
        out.update(
            {
                f"rasters.{k}.mask": v.mask.path
                for k, v in self.rasters.items()
                if v.mask is not None and v.mask.path is not None
            }
        )
        out.update({f"vectors.{k}": v.path for k, v in self.vectors.items()})
        out.update({f"tables[{i}]": t.path for i, t in enumerate(self.tables)})
        if self.census is not None:
            out["census"] = self.census.path
        if self.registry is not None:
            out["registry"] = self.registry.path
        return out


def config_from_dict(data: Any, *, base_dir: Path, source: Path | None = None) -> StudyAreaConfig:
    """Validate a parsed YAML mapping, resolve paths against ``base_dir`` and check they exist.

    ``source`` names the config file in error messages.
    """
    where = source if source is not None else base_dir
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of keys at the top level, got {type(data).__name__}",
            path=where,
            fix="start the file with 'name:', 'boundaries:' and 'survey:' keys",
        )
    try:
        cfg = StudyAreaConfig.model_validate(_resolve_paths(data, base_dir))
    except ValidationError as exc:
        raise _config_error(exc, where) from None
    cfg = cfg.model_copy(update={"base_dir": base_dir})
    for key, path in cfg.files().items():
        if not path.exists():
            raise InputNotFoundError(
                f"file {path} does not exist",
                path=where,
                where=f"key {key}.path",
                fix="correct the path (relative paths are relative to the config file)",
            )
    return cfg


def _resolve_paths(node: Any, base_dir: Path) -> Any:
    """Return a copy of the parsed YAML with every ``path`` value made absolute."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "path" and isinstance(value, str | Path):
                p = Path(value).expanduser()
                out[key] = p if p.is_absolute() else (base_dir / p).resolve()
            elif key == "dhs" and isinstance(value, dict):  # gps: X.shp is {path: X.shp}
                files = {k: _path_shorthand(v) for k, v in value.items() if k in DHS_FILES}
                out[key] = _resolve_paths({**value, **files}, base_dir)
            else:
                out[key] = _resolve_paths(value, base_dir)
        return out
    if isinstance(node, list):
        return [_resolve_paths(v, base_dir) for v in node]
    return node


def _config_error(exc: ValidationError, source: Path) -> ConfigError:
    """Turn the first pydantic error into one line naming the key and the fix.

    Unknown keys come first: a typo (``targt``) also makes the intended key look missing,
    and the typo is the error to report.
    """
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = [str(p) for p in err["loc"]]
    dotted = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        parent = _model_at(StudyAreaConfig, loc[:-1])
        fields = parent.model_fields.items() if parent is not None else ()
        valid = [f.alias or name for name, f in fields if name != "base_dir"]
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
        return ConfigError(f"unknown key {loc[-1]!r}", path=source, where=f"key {dotted}", fix=hint)
    if err["type"] == "config_choice":
        fix = (err.get("ctx") or {}).get("fix")
        return ConfigError(err["msg"], path=source, where=f"key {dotted}", fix=fix)
    if err["type"] == "missing":
        return ConfigError(
            "required key is missing", path=source, where=f"key {dotted}", fix=f"add {loc[-1]}:"
        )
    return ConfigError(
        f"{err['msg']} (got {err.get('input')!r})",
        path=source,
        where=f"key {dotted}",
        fix="see the study-area config reference in the README",
    )


def _model_at(model: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    """The pydantic model class found by walking field names ``loc`` from ``model``."""
    current: Any = model
    for part in loc:
        if part.isdigit() or current is None:
            continue
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if field is None:
            # dict values (rasters.<name>) walk into the value type
            continue
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """The BaseModel inside ``X | None``, ``list[X]`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def reference_markdown() -> str:
    """The config reference (every key, its default and meaning) as Markdown.

    ``docs/config.md`` is this text; a test keeps the two equal.
    """
    lines = [
        "# Study-area config reference",
        "",
        'Generated from `povertymap.config` (`python -c "from povertymap.config import '
        "reference_markdown as r; print(r(), end='')\" > docs/config.md`). Paths are relative "
        "to the YAML file; unknown keys are refused.",
    ]

    def walk(model: type[BaseModel], prefix: str) -> None:
        lines.extend(
            [
                "",
                f"## `{prefix or 'top level'}`",
                "",
                "| key | default | meaning |",
                "|---|---|---|",
            ]
        )
        nested: list[tuple[type[BaseModel], str]] = []
        for name, field in model.model_fields.items():
            if name == "base_dir":
                continue
            key = field.alias or name
            inner = _inner_model(field.annotation)
            if field.is_required():
                default = "required"
            elif inner is not None:
                default = "(see below)"
            else:
                default = f"`{field.get_default(call_default_factory=True)!r}`"
            meaning = (field.description or "").replace("|", "/")
            lines.append(f"| `{key}` | {default} | {meaning} |")
            if inner is not None and inner is not model:
                nested.append((inner, f"{prefix}.{key}" if prefix else key))
        for inner, path in nested:
            walk(inner, path)

    walk(StudyAreaConfig, "")
    return "\n".join(lines) + "\n"
