"""The run report: a static HTML page with figures a policy analyst can read.

:func:`render_report` draws it from a run directory's files alone (cells, admin table,
out-of-fold predictions, metrics, plan and targeting evaluation), so ``run`` and
``target`` render the same page and a moved run can be re-rendered. Figures are built
with matplotlib's object API (no pyplot state, no backend switch at import) and saved
under ``figures/``; the page references them. Sections are small functions of the run's
results, so later stages add sections without touching the others.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from povertymap import __version__
from povertymap.io.writers import write_figure, write_text
from povertymap.predict.rollout import cells_to_raster

if TYPE_CHECKING:
    from povertymap.config import TargetingSettings
    from povertymap.rundir import RunDirectory
    from povertymap.studyarea import StudyArea
    from povertymap.target.stage import TargetingEvaluation

__all__ = ["Report", "Section", "describe_sources", "render_report"]

CMAP = "RdYlBu"  # red = poor, blue = rich; diverging and readable in grey


@dataclass
class Section:
    """A titled block of HTML and the figures it shows (name -> Figure)."""

    title: str
    body: str
    figures: dict[str, Figure] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """The section's HTML id."""
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")

    def render(self, folder: Path) -> str:
        """The section's HTML; its figures are saved under ``folder/figures``."""
        imgs = []
        for name, fig in self.figures.items():
            write_figure(fig, folder / "figures" / f"{name}.png")
            imgs.append(f'<img src="figures/{name}.png" alt="{html.escape(name)}">')
        return (
            f'<section id="{self.slug}"><h2>{html.escape(self.title)}</h2>{self.body}'
            f"{''.join(imgs)}</section>"
        )


@dataclass
class Report:
    """A report being assembled: add sections, then :meth:`write` it into a run folder."""

    title: str
    sections: list[Section] = field(default_factory=list)

    def add(self, section: Section) -> None:
        """Append a section."""
        self.sections.append(section)

    def write(self, folder: Path) -> Path:
        """Write ``report.html`` and ``figures/*.png`` into ``folder``; return the page."""
        body = "\n".join(s.render(folder) for s in self.sections)
        page = _PAGE.format(title=html.escape(self.title), version=__version__, body=body)
        return write_text(page, folder / "report.html")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       line-height: 1.45; padding: 0 1em; }}
h1 {{ font-size: 1.6em; }} h2 {{ border-bottom: 1px solid #ccc; padding-bottom: .2em; }}
table {{ border-collapse: collapse; margin: .6em 0; font-size: .92em; }}
td, th {{ border: 1px solid #ccc; padding: .25em .6em; text-align: right; }}
th {{ background: #f2f2f2; }} td:first-child, th:first-child {{ text-align: left; }}
img {{ max-width: 100%; margin: .5em 0; }} .note {{ color: #555; font-size: .92em; }}
</style></head><body>
<h1>{title}</h1>
<p class="note">Made by povertymap {version}. Figures are in figures/, numbers in
metrics.json, every file's digest in manifest.json.</p>
{body}
</body></html>
"""


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """An HTML table; floats are shown with 3 significant decimals."""

    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "" if not np.isfinite(v) else f"{v:.3f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def para(text: str) -> str:
    """An escaped paragraph."""
    return f"<p>{html.escape(text)}</p>"


def cell_map(
    cells: gpd.GeoDataFrame,
    column: str,
    cell_size: float,
    title: str,
    cmap: str = CMAP,
    label: str | None = None,
) -> Figure:
    """A raster image of one cell column (fast for national grids)."""
    data, layout = cells_to_raster(cells, [column], cell_size)
    x0, y1 = layout.transform @ (0, 0)
    x1, y0 = layout.transform @ (layout.width, layout.height)
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    finite = data[0][np.isfinite(data[0])]
    vmin, vmax = np.percentile(finite, [2, 98]) if finite.size else (0, 1)
    im = ax.imshow(
        data[0],
        extent=(x0 / 1e3, x1 / 1e3, y0 / 1e3, y1 / 1e3),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    fig.colorbar(im, ax=ax, shrink=0.8, label=label or column)
    ax.set_title(title)
    ax.set_xlabel("easting (km)")
    ax.set_ylabel("northing (km)")
    fig.tight_layout()
    return fig


def admin_map(admin: gpd.GeoDataFrame, column: str, title: str, cmap: str = CMAP) -> Figure:
    """A choropleth of admin units."""
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    admin.plot(
        column=column,
        cmap=cmap,
        legend=True,
        ax=ax,
        edgecolor="white",
        linewidth=0.4,
        missing_kwds={"color": "lightgrey", "label": "no estimate"},
    )
    ax.set_title(title)
    ax.set_axis_off()
    fig.tight_layout()
    return fig


def cv_scatter(oof: pd.DataFrame, target: str) -> Figure:
    """Observed vs out-of-fold predicted, for the model and the nightlights baseline."""
    cols = [c for c in ("pred", "baseline") if c in oof]
    fig = Figure(figsize=(5.2 * len(cols), 4.8))
    axes = fig.subplots(1, len(cols), squeeze=False)
    lo, hi = np.nanpercentile(oof[["y", *cols]].to_numpy(), [0.5, 99.5])
    for ax, col in zip(axes[0], cols, strict=True):
        ax.scatter(oof[col], oof["y"], s=9, alpha=0.6)
        ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="1:1")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"predicted {target} (out of fold)")
        ax.set_ylabel(f"observed {target}")
        ax.set_title("model" if col == "pred" else "nightlights only")
        ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def residuals_by_group(oof: pd.DataFrame, groups: pd.Series, label: str) -> Figure:
    """Box plots of out-of-fold residuals (observed - predicted) per group."""
    resid = oof["y"] - oof["pred"]
    names = sorted(groups.dropna().unique())
    fig = Figure(figsize=(max(5.0, 0.6 * len(names) + 2), 4))
    ax = fig.subplots()
    ax.boxplot([resid[groups == g].to_numpy() for g in names], tick_labels=names)
    ax.axhline(0, color="black", lw=1)
    ax.set_xlabel(label)
    ax.set_ylabel("observed - predicted")
    ax.set_title(f"Out-of-fold residuals by {label}")
    fig.tight_layout()
    return fig


def describe_sources(area: StudyArea) -> list[dict[str, str]]:
    """The inputs with their provenance (key, file, kind, CRS, size), for the report."""
    rows = []
    for key, path in area.config.files().items():
        kind, crs, size = "", "", ""
        if key.startswith("rasters.") and key.endswith(".mask"):
            kind = "imagery mask (raster)"
        elif key.startswith("rasters."):
            src = area.rasters[key.split(".", 1)[1]]
            kind, crs = f"raster ({src.count} band)", src.crs.to_string()
            size = f"{src.width} x {src.height}, {src.res[0]:.4g}"
        elif key.startswith("vectors."):
            gdf = area.vectors[key.split(".", 1)[1]]
            kind, size = "vector", f"{len(gdf):,} features"
        elif key in ("survey.clusters", "survey.dhs.gps"):
            kind, size = "survey clusters", f"{len(area.clusters):,} rows"
        elif key in ("survey.households", "survey.dhs.households") and area.households is not None:
            kind, size = "survey households", f"{len(area.households):,} rows"
        elif key == "boundaries" and area.admin is not None:
            kind, size = "admin units", f"{len(area.admin):,} units"
        rows.append(
            {"source": key, "file": Path(path).name, "kind": kind, "crs": crs, "size": size}
        )
    return rows


def sources_table(sources: Sequence[dict[str, str]]) -> str:
    """The table of :func:`describe_sources`."""
    keys = ("source", "file", "kind", "crs", "size")
    return table([[s[k] for k in keys] for s in sources], ["source", "file", "kind", "CRS", "size"])


def accuracy_section(metrics: dict[str, Any], oof: pd.DataFrame, target: str) -> Section:
    """Cross-validated accuracy: model vs nightlights-only, random CV's optimism, scatter."""
    cv = metrics["cv"]
    rows = []
    for name, m in cv.get("models", {}).items():
        label = {"model": "model", "baseline": "nightlights only"}.get(name, name)
        dark = m.get("by_group", {}).get("lights", {}).get("dark", {})
        rows.append(
            [
                label,
                m.get("r2"),
                m.get("spearman"),
                m.get("rmse"),
                m.get("slope"),
                dark.get("r2", float("nan")),
            ]
        )
    if "random_cv" in cv:
        r = cv["random_cv"]
        rows.append(
            [
                "model, random folds (optimistic)",
                r.get("r2"),
                r.get("spearman"),
                r.get("rmse"),
                r.get("slope"),
                float("nan"),
            ]
        )
    body = para(
        f"{cv['scheme'].capitalize()} cross-validation over {int(cv['n'])} survey clusters, "
        f"{cv['folds']} folds ({cv.get('dropped_by_buffer', 0)} training clusters dropped "
        "by the buffer around test folds). Each cluster is predicted by a model that never "
        "saw it nor its neighbours, as the map predicts places without a survey. Random "
        "folds let neighbours leak into training and overstate accuracy; they are shown "
        "only for contrast."
    ) + table(rows, ["model", "r²", "Spearman", "RMSE", "slope obs~pred", "r² dark clusters"])
    figures = {"cv_scatter": cv_scatter(oof, target)}
    return Section("Accuracy (cross-validated)", body, figures)


def groups_section(
    metrics: dict[str, Any], oof: pd.DataFrame, regions: pd.Series | None
) -> Section:
    """Accuracy by group (urban/rural, region, lit/dark) and residuals by region."""
    rows = []
    for grouping, per in metrics["cv"].get("by_group", {}).items():
        for value, m in sorted(per.items()):
            rows.append(
                [
                    f"{grouping}: {value}",
                    int(m.get("n", 0)),
                    m.get("r2", float("nan")),
                    m.get("bias", float("nan")),
                    m.get("rmse", float("nan")),
                ]
            )
    body = para(
        "Accuracy within groups. Within-group r² is lower than overall r² when groups differ "
        "in level; a bias far from 0 means the map systematically over- or under-states a "
        "group's wealth."
    ) + table(rows, ["group", "clusters", "r²", "bias (pred - obs)", "RMSE"])
    figures = {}
    if regions is not None:
        figures["residuals_by_region"] = residuals_by_group(oof, regions, "region")
    return Section("Accuracy by group", body, figures)


def truth_section(truth: dict[str, Any], cv: dict[str, Any]) -> Section:
    """Every mapped model against the synthetic country's ground truth, beside its CV."""
    rows = []
    for name, t in truth.items():
        if not isinstance(t, dict) or "all" not in t:
            continue
        key = "model" if name == "estimate" else name
        m = cv.get("models", {}).get(key, {})
        dark_cv = m.get("by_group", {}).get("lights", {}).get("dark", {})
        label = {
            "estimate": "model (calibrated)",
            "baseline": "nightlights only",
            "no_imagery": "without imagery",
        }.get(name, name)
        rows.append(
            [
                label,
                m.get("r2", float("nan")),
                dark_cv.get("r2", float("nan")),
                t["all"].get("r2"),
                t.get("dark", {}).get("r2", float("nan")),
                t["cells"].get("r2"),
            ]
        )
    body = para(
        f"Synthetic country only: each map against the true mean of every populated cell "
        f"({truth['n_cells']:,} cells), beside its cross-validated accuracy on the survey. "
        "r² vs truth weighs cells by their people, as the survey does; the per-cell column "
        "weighs hamlets like towns. Dark cells are below the nightlight floor."
    ) + table(
        rows,
        ["map", "CV r²", "CV r² dark", "r² vs truth", "r² vs truth, dark", "r² vs truth, per cell"],
    )
    return Section("Check against the ground truth", body)


def uncertainty_section(
    cells: gpd.GeoDataFrame, cell_size: float, metrics: dict[str, Any], target: str
) -> Section:
    """Interval widths on a map, and how the intervals were made."""
    est = metrics.get("estimate", {})
    level = est.get("level", 0.9)
    conf = est.get("conformal", {})
    rows = [
        [g, int(conf.get("n", {}).get(g, 0)), conf.get("halfwidth", {}).get(g, float("nan"))]
        for g in ("urban", "rural", "pooled")
        if g in conf.get("halfwidth", {})
    ]
    what = {
        "realized": "its realised mean (the mean over the cell's actual households)",
        "expected": "its expected mean (that of a cell like it; without the survey's "
        "households the chance of which households live in the cell is not added)",
    }.get(est.get("estimand", ""), "its true mean")
    body = para(
        f"Each cell carries a {level:.0%} interval for {what} {target}: split-conformal "
        "on spatially held-out clusters, separately for urban and rural areas (Mondrian), "
        "with the survey's own sampling noise removed from the residuals. Wide intervals "
        "mark places the survey says little about."
    ) + table(rows, ["group", "clusters", f"half-width of the {level:.0%} interval"])
    cells = cells.assign(width=cells["upper"] - cells["lower"])
    figures = {
        "uncertainty": cell_map(
            cells,
            "width",
            cell_size,
            f"Width of the {level:.0%} interval",
            cmap="viridis",
            label="upper - lower",
        )
    }
    return Section("Uncertainty", body, figures)


def calibration_section(oof: pd.DataFrame, metrics: dict[str, Any]) -> Section:
    """Shrinkage of out-of-fold predictions, before and after the (linear) calibration."""
    c = metrics.get("estimate", {}).get("calibration", {})
    rows = [
        ["before", c.get("slope_before"), c.get("var_ratio_before")],
        ["after", c.get("slope_after"), c.get("var_ratio_after")],
    ]
    note = (
        ""
        if c.get("attainable", True)
        else (
            " With this accuracy no linear correction can reach both a slope near 1 and a "
            "variance ratio near 1; the balanced correction splits the difference."
        )
    )
    bench = metrics.get("estimate", {}).get("map_benchmark")
    if bench:
        note += (
            f" The map is then shifted by {bench['shift']:+.3f} (sd {bench['shift_sd']:.3f}) "
            f"so that its population-weighted mean equals the survey's direct national "
            f"estimate, {bench['survey_mean']:.3f}: cells are featurised unlike the clusters "
            "and their mean drifts."
        )
    body = para(
        "Models trained for accuracy shrink predictions toward the mean: the poorest look "
        "less poor. A linear correction fitted on out-of-fold predictions (with the survey's "
        f"noise accounted for) stretches them back.{note}"
    ) + table(rows, ["", "slope observed~predicted", "variance predicted / true"])
    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.subplots()
    after = c.get("intercept", 0.0) + c.get("slope", 1.0) * oof["pred"].to_numpy(dtype=float)
    ax.scatter(oof["pred"], oof["y"], s=8, alpha=0.5, label="before")
    ax.scatter(after, oof["y"], s=8, alpha=0.5, label="after")
    lo, hi = np.nanpercentile(np.concatenate([oof["y"], after]), [0.5, 99.5])
    ax.plot([lo, hi], [lo, hi], color="black", lw=1)
    ax.set_xlabel("predicted (out of fold)")
    ax.set_ylabel("observed (survey)")
    ax.legend()
    fig.tight_layout()
    return Section("Calibration", body, {"calibration": fig})


def small_area_section(admin: pd.DataFrame, metrics: dict[str, Any]) -> Section:
    """Admin estimates: map, direct survey, Fay-Herriot, and what may be published."""
    cols = [
        c
        for c in (
            "admin_name",
            "population",
            "n_households",
            "estimate",
            "direct",
            "fh_mean",
            "poverty_rate",
            "fh_poverty",
            "fh_poverty_cv",
            "publish",
            "reason",
        )
        if c in admin
    ]
    rows = admin[cols].reset_index().to_numpy().tolist()
    counts = admin["publish"].value_counts().to_dict() if "publish" in admin else {}
    body = para(
        "Per admin area: the map's population-weighted estimate, the survey's direct estimate "
        "(where surveyed), and the Fay-Herriot EBLUP that combines them, with its coefficient "
        "of variation. The disclosure gate publishes an estimate with CV <= 20%, flags "
        "20-30%, suppresses above 30% and never shows a direct estimate resting on fewer "
        f"than 25 households. Publish: {counts}."
    ) + table(rows, ["admin", *cols])
    return Section("Admin areas and small-area estimates", body)


def coverage_section(truth: dict[str, Any]) -> Section:
    """Interval coverage and calibration against the ground truth."""
    est = truth.get("estimate", {})
    cov = est.get("cell_coverage", {})
    rows = [
        ["cells, all", cov.get("overall")],
        ["cells, urban", cov.get("urban")],
        ["cells, rural", cov.get("rural")],
    ]
    pov = est.get("cell_poverty_coverage", {})
    if pov:
        rows.append(["cell poverty rate", pov.get("overall")])
    for key, label in (
        ("mean", "admin-2 mean (map)"),
        ("fh_mean", "admin-2 mean (Fay-Herriot)"),
        ("poverty", "admin-2 headcount (map)"),
        ("fh_poverty", "admin-2 headcount (Fay-Herriot)"),
    ):
        entry = est.get("admin2", {}).get(key)
        if entry:
            rows.append([label, entry.get("coverage")])
    body = para(
        f"Synthetic country only: the share of true values inside the {est.get('level', 0.9):.0%}"
        " intervals (nominal coverage is the target)."
    ) + table(rows, ["intervals", "coverage"])
    return Section("Coverage against the ground truth", body)


def targeting_section(
    plan: pd.DataFrame,
    cells: gpd.GeoDataFrame,
    cell_size: float,
    settings: Any,
    metrics: dict[str, Any],
    evaluation: TargetingEvaluation | None,
) -> Section:
    """The plan at the run's budget, and (with truth) every alternative against it."""
    a = metrics["targeting"]
    chosen = plan[plan["selected"].astype(bool)] if "selected" in plan else plan
    body = para(
        f"{settings.method.capitalize()} targeting of {settings.unit}s at a budget of "
        f"{a.get('budget', settings.budget)} ({a.get('measure', '')}), ranked by "
        f"{a.get('rank_by', settings.rank_by)}: {len(chosen):,} units selected, "
        f"{a.get('spent', float('nan')):,.0f} spent. The plan is targeting.csv; "
        "`povertymap target RUN_DIR --budget ...` makes others."
    )
    figures: dict[str, Figure] = {}
    if settings.unit == "cell" and "selected" in plan and settings.method != "pmt":
        selected = plan.set_index("cell_id")["selected"].astype(float)
        shown = cells.assign(selected=selected.reindex(cells.index, fill_value=0.0))
        figures["targeting_map"] = cell_map(
            shown, "selected", cell_size, "Selected cells", cmap="Greens", label="selected"
        )
    if evaluation is not None:
        from povertymap.target.plots import plot_parity_gaps, plot_targeting_curves

        rows = [
            [
                name,
                m["poor_covered"],
                m["exclusion_error"],
                m["inclusion_error"],
                m["welfare_vs_oracle"],
            ]
            for name, m in evaluation.headline["methods"].items()
        ]
        body += para(
            f"Against the true consumption of every household (synthetic country), at "
            f"{evaluation.headline['budget']}: the share of poor people covered, the exclusion "
            "error (poor people missed), the inclusion error (beneficiaries who are not poor) "
            "and the welfare gain of the transfers relative to a perfect allocation (CRRA "
            "utility, as in Aiken et al. 2022)."
        ) + table(
            rows,
            ["method", "poor covered", "exclusion error", "inclusion error", "welfare vs oracle"],
        )
        groups = evaluation.table
        mine = groups[(groups["method"] == "this plan") & (groups["group_by"] != "all")]
        if len(mine):
            body += para(
                "This plan by group (parity: the gap between groups' coverage of their poor):"
            ) + table(
                mine[
                    [
                        "group_by",
                        "group",
                        "share_poor_covered",
                        "exclusion_error",
                        "inclusion_error",
                    ]
                ]
                .to_numpy()
                .tolist(),
                ["grouping", "group", "poor covered", "exclusion error", "inclusion error"],
            )
        figures["targeting_curves"] = plot_targeting_curves(evaluation.curves)
        figures["parity_gaps"] = plot_parity_gaps(evaluation.gaps)
    return Section("Targeting", body, figures)


def _map_section(
    cells: gpd.GeoDataFrame, admin: gpd.GeoDataFrame, metrics: dict[str, Any], cell_size: float
) -> Section:
    """The map itself: cell estimates, their admin means and the headcount."""
    target = metrics["target"]
    figures = {
        "map": cell_map(cells, "estimate", cell_size, f"Estimated {target}"),
        "admin": admin_map(admin, "estimate", f"Estimated {target}, population-weighted"),
    }
    if "poverty_rate" in cells:
        figures["poverty"] = cell_map(
            cells,
            "poverty_rate",
            cell_size,
            "Estimated poverty headcount",
            cmap="RdYlBu_r",
            label="share of people below the poverty line",
        )
    text = (
        f"Estimated {target} for {len(cells):,} cells of {cell_size / 1000:g} km "
        f"({metrics['population']:,.0f} people), its population-weighted mean per admin "
        "unit" + (", and the poverty headcount." if "poverty_rate" in cells else ".")
    )
    line = metrics.get("poverty_line", {})
    if line.get("value") is not None:
        given = line["given"]
        source = (
            f"the welfare below which {given} of the surveyed people live"
            if isinstance(given, str)
            else "as given in the config"
        )
        text += f" Poverty line: {line['value']:.4g} in {target} units ({source})."
    imagery = metrics.get("imagery", {})
    if imagery.get("without_imagery"):
        text += (
            f" {imagery['without_imagery']:,} of {imagery['zones']:,} cells have no usable "
            "imagery (outside the images, cloud or no data): they are mapped from the other "
            "features by the model without imagery, with the wider intervals its errors earn."
        )
    return Section("Map", para(text), figures)


def render_report(
    run: RunDirectory,
    evaluation: TargetingEvaluation | None = None,
    settings: TargetingSettings | None = None,
) -> Path:
    """Write ``report.html`` and ``figures/`` of a run from its own files.

    ``evaluation`` (the targeting methods scored against the truth) is read from the
    run's ``targeting/`` folder, and the plan's ``settings`` from its config, when not
    given.
    """
    metrics = run.metrics()
    config = run.config_data()
    cell_size = float(config["grid"]["cell_size_m"])
    cells, admin, oof = run.cells(), run.admin(), run.oof()
    report = Report(f"Poverty map of {config['name']}")
    report.add(_map_section(cells, admin, metrics, cell_size))
    report.add(accuracy_section(metrics, oof, metrics["target"]))
    report.add(groups_section(metrics, oof, oof.get("parent_id")))
    report.add(calibration_section(oof, metrics))
    report.add(uncertainty_section(cells, cell_size, metrics, metrics["target"]))
    report.add(small_area_section(admin, metrics))
    if "truth" in metrics:
        report.add(truth_section(metrics["truth"], metrics["cv"]))
        report.add(coverage_section(metrics["truth"]))
    report.add(Section("Data sources", sources_table(metrics.get("sources", []))))
    plan = run.plan()
    if plan is not None and "targeting" in metrics:
        evaluation = evaluation or run.targeting_evaluation()
        report.add(
            targeting_section(
                plan,
                cells,
                cell_size,
                settings or run.targeting_settings(),
                metrics,
                evaluation,
            )
        )
    return report.write(run.path)
