"""Checks of a study area that go beyond one file: what `povertymap validate` reports.

:func:`validate` loads every input (each loader raises a typed error for an unusable file)
and summarises each source: CRS, size, resolution, rows, and non-fatal problems such as
repaired geometries or a raster that covers only part of the area.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import shapely
from rasterio.warp import transform_bounds

from povertymap.config import StudyAreaConfig
from povertymap.engine.base import ProgressCallback
from povertymap.errors import InputWarning
from povertymap.io.survey import read_registry
from povertymap.studyarea import StudyArea, load_study_area

__all__ = ["SourceSummary", "ValidationReport", "validate"]

#: A raster must cover at least this share of the area of interest, or it is reported.
MIN_COVERAGE = 0.99


@dataclass(frozen=True)
class SourceSummary:
    """One input as `povertymap validate` shows it."""

    key: str
    path: str
    kind: str
    crs: str
    size: str
    resolution: str
    rows: str
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ValidationReport:
    """The loaded study area and a summary per source."""

    area: StudyArea
    sources: list[SourceSummary]

    @property
    def problems(self) -> list[str]:
        """Every non-fatal problem, prefixed with its source key."""
        return [f"{s.key}: {p}" for s in self.sources for p in s.problems]


def validate(cfg: StudyAreaConfig, progress: ProgressCallback | None = None) -> ValidationReport:
    """Load the study area and summarise each source; raises on unusable input."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        area = load_study_area(cfg, progress=progress)
    repaired = [str(w.message) for w in caught if "repaired" in str(w.message)]
    dropped = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    sources = [
        *_boundaries(area, repaired),
        _clusters(area, dropped),
        *_households(area, dropped),
        *(_raster(area, name) for name in area.rasters),
        *(_vector(area, name, repaired) for name in area.vectors),
        *(_table(area, i) for i in range(len(area.tables))),
        *_census(area),
        *_registry(area),
    ]
    return ValidationReport(area, sources)


def _rel(area: StudyArea, path: Path) -> str:
    base = area.config.base_dir
    try:
        return str(path.relative_to(base)) if base else str(path)
    except ValueError:
        return str(path)


def _boundaries(area: StudyArea, repaired: list[str]) -> list[SourceSummary]:
    b, admin = area.config.boundaries, area.admin
    if b is None or admin is None:
        return []
    km2 = area.aoi.area / 1e6
    n_cells = len(area.grid)
    problems = [m.split(": ", 1)[1] for m in repaired if str(b.path) in m]
    return [
        SourceSummary(
            "boundaries",
            _rel(area, b.path),
            "vector (admin units)",
            area.crs.to_string(),
            f"{km2:,.0f} km²",
            f"{n_cells:,} cells of {area.cell_size:g} m",
            f"{len(admin)} units",
            problems,
        )
    ]


def _clusters(area: StudyArea, notes: list[str]) -> SourceSummary:
    c, dhs = area.clusters, area.config.survey.dhs
    urban = f", {c['urban'].mean():.0%} urban" if "urban" in c else ", no urban flag (rural radius)"
    target = c["target"]
    path = area.config.survey.clusters.path  # the GPS dataset for a DHS survey
    rows = (
        f"{len(c)} clusters{urban}; {c.attrs.get('target_name', 'target')} "
        f"{target.min():.3g}..{target.max():.3g}"
    )
    if dhs is not None:
        rows += " (weighted means of the households)"
    return SourceSummary(
        "survey.dhs.gps" if dhs is not None else "survey.clusters",
        _rel(area, path),
        "DHS GPS dataset" if dhs is not None else "survey clusters",
        "EPSG:4326",
        "",
        "",
        rows,
        _notes_about(notes, path),
    )


def _households(area: StudyArea, notes: list[str]) -> list[SourceSummary]:
    h, cfg, dhs = area.households, area.config.survey.households, area.config.survey.dhs
    if h is None or (cfg is None and dhs is None):
        return []
    per = h.groupby("cluster_id").size()
    rows = f"{len(h)} households, {per.median():.0f} per cluster (median)"
    if dhs is not None:
        hr = dhs.households
        return [
            SourceSummary(
                "survey.dhs.households",
                _rel(area, hr.path),
                "DHS household recode",
                "",
                "",
                "",
                f"{rows}; welfare {hr.target} / {_number(hr.target_divisor)}, weight "
                f"{hr.weight} / {_number(hr.weight_divisor)}",
                _notes_about(notes, hr.path),
            )
        ]
    assert cfg is not None  # checked above
    return [
        SourceSummary(
            "survey.households", _rel(area, cfg.path), "survey households", "", "", "", rows
        )
    ]


def _number(value: float) -> str:
    """100000 as 100,000 (a divisor as users read it), other values as they are."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def _notes_about(notes: list[str], path: Path) -> list[str]:
    """The warnings about ``path``, without the path (it is in the summary)."""
    return [m.split(": ", 1)[1] for m in notes if m.startswith(f"{path}: ")]


def _raster(area: StudyArea, name: str) -> SourceSummary:
    src = area.rasters[name]
    rx, ry = src.res
    unit = "°" if src.crs.is_geographic else " m"
    bounds = transform_bounds(src.crs, area.crs, *src.bounds, densify_pts=21)
    cover = shapely.area(shapely.intersection(shapely.box(*bounds), area.aoi)) / area.aoi.area
    problems = []
    if cover < MIN_COVERAGE:
        problems.append(f"covers {cover:.1%} of the study area; cells outside get no value")
    nodata = "none" if src.nodata is None else f"{src.nodata:g}"
    return SourceSummary(
        f"rasters.{name}",
        _rel(area, src.path),
        f"raster {src.dtype}",
        src.crs.to_string(),
        f"{src.width:,} x {src.height:,}",
        f"{rx:.4g}{unit}" if abs(rx - ry) < 1e-9 * max(rx, 1) else f"{rx:.4g} x {ry:.4g}{unit}",
        f"{src.count} band(s) {', '.join(src.band_names)}; nodata {nodata}",
        problems,
    )


def _vector(area: StudyArea, name: str, repaired: list[str]) -> SourceSummary:
    v = area.config.vectors[name]
    gdf = area.vectors[name]
    classes = gdf["class"].nunique() if "class" in gdf else 0
    problems = [m.split(": ", 1)[1] for m in repaired if str(v.path) in m]
    return SourceSummary(
        f"vectors.{name}",
        _rel(area, v.path),
        "vector " + "/".join(sorted(set(gdf.geom_type.unique()))),
        area.crs.to_string() + " (reprojected)",
        "",
        "",
        f"{len(gdf):,} features" + (f", {classes} classes" if classes else ""),
        problems,
    )


def _table(area: StudyArea, i: int) -> SourceSummary:
    t = area.config.tables[i]
    df = area.tables[i]
    return SourceSummary(
        f"tables[{i}]",
        _rel(area, t.path),
        "feature table",
        "",
        "",
        "",
        f"{len(df)} rows x {df.shape[1]} features",
    )


def _census(area: StudyArea) -> list[SourceSummary]:
    cfg, census = area.config.census, area.census
    if cfg is None or census is None:
        return []
    return [
        SourceSummary(
            "census",
            _rel(area, cfg.path),
            "census table",
            "",
            "",
            "",
            f"{len(census)} admin units, {census['population'].sum():,.0f} people",
        )
    ]


def _registry(area: StudyArea) -> list[SourceSummary]:
    cfg = area.config.registry
    if cfg is None:
        return []
    registry = read_registry(cfg)
    linked = [c for c in ("cell_id", "admin_id") if c in registry]
    return [
        SourceSummary(
            "registry",
            _rel(area, cfg.path),
            "household registry",
            "",
            "",
            "",
            f"{len(registry):,} households; linked by {', '.join(linked) or 'nothing'}",
        )
    ]
