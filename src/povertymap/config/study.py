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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from povertymap.config.estimate import EstimationSettings
from povertymap.config.targeting import TargetingSettings
from povertymap.errors import ConfigError, InputNotFoundError

__all__ = [
    "BoundariesConfig",
    "BufferConfig",
    "CVConfig",
    "CensusConfig",
    "ClustersConfig",
    "FeaturesConfig",
    "GridConfig",
    "HouseholdsConfig",
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


class SurveyConfig(_Model):
    clusters: ClustersConfig = Field(description="One row per cluster (enumeration area).")
    households: HouseholdsConfig | None = Field(
        None, description="One row per household (noise, direct estimates, PMT)."
    )


class RasterConfig(_FileRef):
    """A raster source in any CRS and resolution (reprojected on read)."""

    nodata: float | Literal["none"] | None = Field(
        None,
        description="Nodata value overriding the file's; 'none' asserts that every value is "
        "data. Needed when the file declares none but holds a sentinel such as -99999.",
    )
    bands: list[str] | None = Field(None, description="Band names, in file order.")


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
        "local", description="Where kernels run (only local in this version)."
    )
    n_jobs: int = Field(
        1,
        ge=1,
        description="Worker processes of the local engine for feature kernels, CV folds and "
        "out-of-area refits (1: run in this process); results are identical whatever the "
        "value.",
    )

    @field_validator("engine")
    @classmethod
    def _engine_exists(cls, value: str) -> str:
        if value != "local":
            raise ValueError(
                f"engine {value!r} is not available in this version of povertymap; "
                "use engine: local (the default)"
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


class CVConfig(_Model):
    """Cross-validation: spatial blocks by default, because random folds flatter models."""

    scheme: Literal["spatial", "random", "group"] = Field(
        "spatial", description="spatial blocks, random folds, or leave-one-group-out."
    )
    folds: Annotated[int, Field(ge=2)] = Field(5, description="Folds (spatial, random).")
    block_size_m: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        50_000.0,
        description="Edge of the square spatial blocks (m), or 'auto': the block size whose "
        "test-to-training distances best match the map's cell-to-survey distances "
        "(nearest-neighbour distance matching, Mila et al. 2022), with no buffer.",
    )
    buffer_m: Annotated[float, Field(ge=0)] = Field(
        10_000.0, description="Training clusters within this distance of a test fold are dropped."
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
    poverty_line: float | None = Field(
        None,
        description="Poverty line in the units of the survey target (e.g. log consumption); "
        "when set, estimates are also converted to poverty headcounts.",
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
        out["survey.clusters"] = self.survey.clusters.path
        if self.survey.households is not None:
            out["survey.households"] = self.survey.households.path
        out.update({f"rasters.{k}": v.path for k, v in self.rasters.items()})
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
        field = current.model_fields.get(part)
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
        'reference_markdown as r; print(r())" > docs/config.md`). Paths are relative to the '
        "YAML file; unknown keys are refused.",
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
