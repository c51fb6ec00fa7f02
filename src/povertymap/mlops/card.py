"""The model card of a run (Mitchell et al. 2019, "Model Cards for Model Reporting"),
generated from the run directory alone: ``model_card.json`` and ``model_card.md``.

Sections follow the paper: model details, intended use (and out-of-scope uses), the data
and its dates, the features, the evaluation (cross-validation scheme and figures, accuracy
by urban/rural and by region, interval coverage, the synthetic truth where there is one),
what the disclosure gate suppressed, known limitations and the targeting headline. Every
figure is read from ``metrics.json``, ``model/model.json``, ``config.yaml``, ``admin.gpkg``
and the manifest; nothing is hand-written per run, so the card never disagrees with the run.

:func:`model_card` needs no MLflow: ``pipeline.run`` writes the card with every run
(:func:`write_model_card`, called before the manifest is sealed, so the card is listed in
it), and the registry attaches it to every model version.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from povertymap.io.artifacts import read_json
from povertymap.io.writers import write_json, write_text
from povertymap.rundir import RunDirectory

__all__ = ["CARD_JSON", "CARD_MD", "card_markdown", "model_card", "write_model_card"]

CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"

INTENDED_USE = {
    "primary_uses": [
        "ranking small areas (grid cells, admin-2 units) by expected welfare of the "
        "surveyed target, with an interval per cell, for geographic targeting and planning",
        "small-area estimates of means and headcounts where the disclosure gate publishes them",
    ],
    "primary_users": [
        "analysts at statistics offices and NGOs",
        "programme designers allocating a budget across areas",
    ],
    "out_of_scope": [
        "judging the welfare of an individual household (the map estimates area means)",
        "areas, years or sensors other than those of the training data without monitoring "
        "(`povertymap monitor`) and, where drift is found, retraining",
        "publishing estimates the disclosure gate flags or suppresses",
        "causal claims about what raises welfare (the features are proxies)",
    ],
}


def _num(value: Any) -> float | None:
    """A finite float, or None."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _figures(entry: dict[str, Any] | None) -> dict[str, float | None]:
    """``n, r2, spearman, rmse, bias`` of a metrics entry."""
    entry = entry or {}
    return {k: _num(entry.get(k)) for k in ("n", "r2", "spearman", "rmse", "bias")}


def model_card(run: RunDirectory) -> dict[str, Any]:
    """The model card of ``run`` as a JSON-ready mapping (see the module docstring)."""
    metrics = run.metrics() if run.has("metrics.json") else {}
    meta = read_json(run.path / "model" / "model.json") if run.has("model/model.json") else {}
    config = run.config_data() if run.has("config.yaml") else {}
    cv = metrics.get("cv", {})
    by_group = cv.get("by_group", {})
    inputs = run.manifest.get("inputs") or {
        key: {"path": value.get("path")}
        for key, value in _config_inputs(config).items()
        if value.get("path")
    }
    card: dict[str, Any] = {
        "schema": "povertymap-model-card/1",
        "model_details": {
            "name": config.get("name", run.run_id),
            "run_id": run.run_id,
            "kind": run.kind,
            "povertymap_version": meta.get("povertymap_version", run.manifest.get("version")),
            "model_schema_version": meta.get("schema_version"),
            "target": meta.get("target", metrics.get("target")),
            "model": meta.get("model", config.get("model")),
            "references": meta.get("references", []),
            "poverty_line": meta.get("poverty_line"),
            "reference": "Mitchell et al. 2019, Model Cards for Model Reporting (FAT* '19)",
        },
        "intended_use": INTENDED_USE,
        "data": {
            "created": run.manifest.get("created"),
            "config_sha256": run.manifest.get("config_sha256"),
            "inputs": {
                k: {
                    "file": Path(str(v.get("path", ""))).name,
                    "sha256": v.get("sha256"),
                    "bytes": v.get("bytes"),
                }
                for k, v in sorted(inputs.items())
            },
            "n_clusters": metrics.get("n_clusters", meta.get("n_training_clusters")),
            "n_cells": metrics.get("n_cells"),
            "population": _num(metrics.get("population")),
            "sources": metrics.get("sources", []),
            "dates": "the run's creation date above; input files are identified by digest "
            "(the survey round is the one in these files)",
        },
        "features": {
            "blocks": meta.get("blocks", config.get("features", {}).get("blocks")),
            "n_columns": len(meta.get("columns", [])),
            "buffer_m": meta.get("buffer_m"),
            "urban_rule": meta.get("urban_rule"),
            "imagery": metrics.get("imagery"),
        },
        "evaluation": {
            "cv_scheme": cv.get("scheme"),
            "folds": cv.get("folds"),
            "block_size_m": _num(cv.get("block_size_m")),
            "buffer_m": _num(cv.get("buffer_m")),
            "overall": _figures(cv),
            "random_cv_r2": _num(cv.get("random_cv", {}).get("r2")),
            "r2_noise_removed": _num(cv.get("r2_noise_removed")),
            "by_urban": {k: _figures(v) for k, v in by_group.get("urban", {}).items()},
            "by_region": {k: _figures(v) for k, v in by_group.get("region", {}).items()},
            "by_lights": {k: _figures(v) for k, v in by_group.get("lights", {}).items()},
            "references": {k: _figures(v) for k, v in cv.get("models", {}).items() if k != "model"},
        },
        "intervals": _intervals(metrics),
        "truth": _truth(metrics),
        "disclosure": _disclosure(run, metrics),
        "limitations": _limitations(metrics, cv),
        "targeting": _targeting(metrics),
    }
    return card


def _config_inputs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Input file references of a resolved config (before the manifest lists them)."""
    out: dict[str, dict[str, Any]] = {}
    for key in ("boundaries", "census", "registry"):
        if isinstance(config.get(key), dict):
            out[key] = config[key]
    for key, value in (config.get("survey") or {}).items():
        if isinstance(value, dict) and "path" in value:
            out[f"survey.{key}"] = value
    for section in ("rasters", "vectors"):
        for key, value in (config.get(section) or {}).items():
            out[f"{section}.{key}"] = value
    for i, value in enumerate(config.get("tables") or []):
        out[f"tables[{i}]"] = value
    return out


def _intervals(metrics: dict[str, Any]) -> dict[str, Any]:
    estimate = metrics.get("estimate", {})
    conformal = estimate.get("conformal", {})
    truth = metrics.get("truth", {}).get("estimate", {})
    return {
        "level": _num(estimate.get("level")),
        "method": "split-conformal on out-of-fold residuals"
        + (" (by urban/rural)" if conformal.get("quantile", {}).get("urban") else ""),
        "halfwidth": conformal.get("halfwidth"),
        "calibrated_on_clusters": conformal.get("n"),
        "cell_coverage_against_truth": truth.get("cell_coverage"),
        "admin2_coverage_against_truth": truth.get("admin2"),
    }


def _truth(metrics: dict[str, Any]) -> dict[str, Any] | None:
    truth = metrics.get("truth")
    if not truth or "estimate" not in truth:
        return None
    est = truth["estimate"]
    return {
        "n_cells": truth.get("n_cells"),
        "estimate": {k: _figures(est.get(k)) for k in ("all", "cells", "dark") if k in est},
        "references": {
            k: _figures(v.get("all"))
            for k, v in truth.items()
            if isinstance(v, dict) and "all" in v and k != "estimate"
        },
    }


def _disclosure(run: RunDirectory, metrics: dict[str, Any]) -> dict[str, Any]:
    settings = (run.config_data() if run.has("config.yaml") else {}).get("estimate", {})
    out: dict[str, Any] = {
        "rules": settings.get("disclosure"),
        "publish": metrics.get("estimate", {}).get("publish"),
        "suppressed": [],
        "flagged": [],
    }
    if run.has("admin.gpkg"):
        admin = run.admin()
        if "publish" in admin:
            reasons = admin.get("reason", None)
            for area, flag in admin["publish"].items():
                if flag in ("no", "suppress", "suppressed"):
                    why = None if reasons is None else reasons.get(area)
                    out["suppressed"].append({"admin_id": str(area), "reason": why})
                elif flag in ("flag", "flagged"):
                    out["flagged"].append(str(area))
    return out


def _limitations(metrics: dict[str, Any], cv: dict[str, Any]) -> list[str]:
    out = []
    dark = cv.get("by_group", {}).get("lights", {}).get("dark")
    if dark:
        out.append(
            f"dark areas: {int(dark.get('n', 0))} of {int(cv.get('n', 0))} survey clusters "
            f"have no detectable nightlights; cross-validated r2 there is "
            f"{_num(dark.get('r2')) or float('nan'):.3f} against "
            f"{_num(cv.get('r2')) or float('nan'):.3f} overall"
        )
    else:
        out.append("dark areas: nightlights cannot rank welfare where they are below the floor")
    out.append(
        "displacement: survey coordinates are displaced (DHS: up to 2 km urban, 5 km rural, "
        "1% of rural up to 10 km); features are averaged over buffers, and "
        "`povertymap evaluate --redisplace N` measures the sensitivity"
    )
    imagery = metrics.get("imagery") or {}
    if _num(imagery.get("share_without")):
        out.append(
            f"imagery covers part of the area: {imagery['share_without']:.0%} of the zones "
            "are mapped by the no-imagery model with its wider intervals"
        )
    out.append(
        "time: the model reflects the survey round and rasters it was trained on; new "
        "sensors (e.g. a nightlight recalibration), new roads or settlements and growth "
        "shift the inputs away from it (monitor with `povertymap monitor`)"
    )
    if cv.get("random_cv") and _num(cv["random_cv"].get("r2")) is not None:
        out.append(
            f"random cross-validation would claim r2 {cv['random_cv']['r2']:.3f}; the "
            f"spatial figure ({_num(cv.get('r2')) or float('nan'):.3f}) is what new areas get"
        )
    warnings = metrics.get("estimate", {}).get("warnings") or []
    out.extend(str(w) for w in warnings)
    return out


def _targeting(metrics: dict[str, Any]) -> dict[str, Any] | None:
    plan = metrics.get("targeting")
    if not plan:
        return None
    out: dict[str, Any] = {"plan": plan}
    truth = metrics.get("truth", {}).get("targeting")
    if truth:
        out["against_truth"] = truth.get("methods", {}).get("this plan")
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table(rows: dict[str, dict[str, Any]], cols: tuple[str, ...]) -> list[str]:
    if not rows:
        return ["(none)"]
    lines = ["| group | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
    return lines


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown (``model_card.md``)."""
    d, data, ev = card["model_details"], card["data"], card["evaluation"]
    cols = ("n", "r2", "spearman", "rmse", "bias")
    lines = [
        f"# Model card: {d['name']} ({d['run_id']})",
        "",
        "Generated from the run directory by povertymap (Mitchell et al. 2019 sections).",
        "",
        "## Model details",
        "",
        f"- povertymap {_fmt(d['povertymap_version'])}, model schema "
        f"{_fmt(d['model_schema_version'])}",
        f"- target: `{_fmt(d['target'])}`; poverty line {_fmt(d['poverty_line'])}",
        f"- model: `{_fmt((d['model'] or {}).get('name'))}`; references: "
        f"{', '.join(d['references']) or 'none'}",
        "",
        "## Intended use",
        "",
        *[f"- {u}" for u in card["intended_use"]["primary_uses"]],
        "",
        "Users: " + "; ".join(card["intended_use"]["primary_users"]) + ".",
        "",
        "Out of scope:",
        "",
        *[f"- {u}" for u in card["intended_use"]["out_of_scope"]],
        "",
        "## Data",
        "",
        f"- run created {_fmt(data['created'])}; config sha256 `{_fmt(data['config_sha256'])}`",
        f"- {_fmt(data['n_clusters'])} survey clusters; {_fmt(data['n_cells'])} cells; "
        f"population {_fmt(data['population'])}",
        f"- dates: {data['dates']}",
        "",
        "| input | file | sha256 |",
        "|---|---|---|",
        *[
            f"| {k} | {v['file']} | `{(v['sha256'] or 'in manifest.json')[:16]}` |"
            for k, v in data["inputs"].items()
        ],
        "",
        "## Features",
        "",
        f"- blocks: {', '.join(card['features']['blocks'] or [])} "
        f"({card['features']['n_columns']} columns)",
        f"- cluster buffers (m): {_fmt(card['features']['buffer_m'])}",
        "",
        "## Evaluation",
        "",
        f"{_fmt(ev['cv_scheme'])} cross-validation, {_fmt(ev['folds'])} folds "
        f"(blocks {_fmt(ev['block_size_m'])} m, buffer {_fmt(ev['buffer_m'])} m): "
        f"r2 {_fmt(ev['overall']['r2'])}, spearman {_fmt(ev['overall']['spearman'])}, "
        f"rmse {_fmt(ev['overall']['rmse'])}; random folds would claim "
        f"{_fmt(ev['random_cv_r2'])}; noise removed {_fmt(ev['r2_noise_removed'])}.",
        "",
        "By urban/rural:",
        "",
        *_table(ev["by_urban"], cols),
        "",
        "By region:",
        "",
        *_table(ev["by_region"], cols),
        "",
        "By nightlights:",
        "",
        *_table(ev["by_lights"], cols),
        "",
        "## Intervals",
        "",
        f"- level {_fmt(card['intervals']['level'])}: {card['intervals']['method']}; "
        f"half-width {_fmt(card['intervals']['halfwidth'])}",
        f"- cell coverage against the truth: "
        f"{_fmt(card['intervals']['cell_coverage_against_truth'])}",
    ]
    if card["truth"]:
        lines += ["", "## Against the synthetic truth", ""]
        lines += _table(card["truth"]["estimate"], cols)
    disc = card["disclosure"]
    lines += [
        "",
        "## Disclosure",
        "",
        f"- rules: {_fmt(disc['rules'])}",
        f"- published: {_fmt(disc['publish'])}",
        f"- suppressed areas: {', '.join(s['admin_id'] for s in disc['suppressed']) or 'none'}",
        f"- flagged areas: {', '.join(disc['flagged']) or 'none'}",
        "",
        "## Known limitations",
        "",
        *[f"- {x}" for x in card["limitations"]],
    ]
    if card["targeting"]:
        t = card["targeting"]
        plan = t["plan"]
        lines += [
            "",
            "## Targeting",
            "",
            f"- plan: {_fmt(plan.get('method'))} by {_fmt(plan.get('unit'))}, budget "
            f"{_fmt(plan.get('budget'))}, {_fmt(plan.get('units_selected'))} units selected",
        ]
        if t.get("against_truth"):
            a = t["against_truth"]
            lines.append(
                f"- against the truth: poor covered {_fmt(a.get('poor_covered'))}, exclusion "
                f"error {_fmt(a.get('exclusion_error'))}, inclusion error "
                f"{_fmt(a.get('inclusion_error'))}"
            )
    return "\n".join(lines) + "\n"


def write_model_card(run: RunDirectory) -> dict[str, Any]:
    """Write ``model_card.json`` and ``model_card.md`` into the run folder; return the card."""
    card = model_card(run)
    write_json(card, run.path / CARD_JSON)
    write_text(card_markdown(card), run.path / CARD_MD)
    return card
