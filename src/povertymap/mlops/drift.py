"""Drift of new inputs against a model's training reference: ``drift.json``.

The reference is what the model saved (``model/training_features.parquet``, whose
per-feature statistics are ``feature_stats.parquet``): the cluster features it was
trained on. The new inputs are a new study config (a later survey round, new rasters):
its clusters' features are computed through the model's *fitted* blocks and training
buffers (:func:`cluster_features`), so a feature means what it meant in training.

Per feature: the population stability index over the reference's quantile bins (missing
values are a bin of their own) and the two-sample Kolmogorov-Smirnov p-value. A feature
has drifted when its PSI reaches ``psi_alert``, or reaches ``psi_warn`` with a KS p-value
below ``ks_alpha`` (thresholds: the config's ``monitoring:`` section). Embedding blocks
(``cnn``, ``rcf``) are also summarised as a whole (mean PSI, share drifted, the shift of
the mean in reference standard deviations). Prediction drift is the PSI/KS of the model's
raw predictions on the new clusters against those on its training clusters. When the new
survey has labels, the label error is the model's error on them against its
cross-validated error. The inputs have drifted when ``drifted_share`` of the features
have, or the prediction has, or the labels' RMSE exceeds ``rmse_ratio`` times the CV RMSE.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy import stats

from povertymap.config.monitoring import MonitoringSettings

if TYPE_CHECKING:
    from pathlib import Path

    from povertymap.config import StudyAreaConfig
    from povertymap.engine.base import Engine
    from povertymap.mapping import MappingModel
    from povertymap.studyarea import StudyArea

__all__ = [
    "DRIFT_JSON",
    "DriftReport",
    "cluster_features",
    "drift_report",
    "feedback_error",
    "feedback_points",
    "ks_p",
    "monitor",
    "psi",
    "report_section",
]

DRIFT_JSON = "drift.json"

EMBEDDING_BLOCKS = ("cnn", "rcf")
EPS = 1e-4


def _bins(ref: np.ndarray, new: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin indices of ``ref`` and ``new`` on the reference's quantiles (NaN: last bin)."""
    finite = ref[np.isfinite(ref)]
    if finite.size == 0:
        return np.zeros(ref.size, int), np.zeros(new.size, int)
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, n_bins + 1)))
    if edges.size <= 2:  # (nearly) constant reference: below, at, above its value(s)
        lo, hi = edges[0], edges[-1]

        def cut(x: np.ndarray) -> np.ndarray:
            return np.where(x < lo, 0, np.where(x > hi, 2, 1))
    else:
        inner = edges[1:-1]

        def cut(x: np.ndarray) -> np.ndarray:
            return np.searchsorted(inner, x, side="right")

    n = (edges.size - 1) if edges.size > 2 else 3
    out = []
    for x in (ref, new):
        idx = cut(np.nan_to_num(x, nan=0.0))
        out.append(np.where(np.isfinite(x), idx, n))
    return out[0], out[1]


def psi(reference: np.ndarray, new: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``new`` against ``reference``:
    ``sum((p_new - p_ref) * ln(p_new / p_ref))`` over the reference's quantile bins."""
    ref, cur = np.asarray(reference, float), np.asarray(new, float)
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    b_ref, b_new = _bins(ref, cur, bins)
    k = int(max(b_ref.max(), b_new.max())) + 1
    p = np.bincount(b_ref, minlength=k) / ref.size
    q = np.bincount(b_new, minlength=k) / cur.size
    p, q = np.maximum(p, EPS), np.maximum(q, EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_p(reference: np.ndarray, new: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov p-value on the finite values (1 when either is empty
    or both are constant and equal)."""
    a = np.asarray(reference, float)
    b = np.asarray(new, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return 1.0
    return float(stats.ks_2samp(a, b).pvalue)


def cluster_features(model: MappingModel, area: StudyArea, *, engine: Engine) -> pd.DataFrame:
    """The features of ``area``'s survey clusters through the model's fitted blocks, its
    training buffer radii and urban rule (what the training table holds, for new data)."""
    from povertymap.features.build import build_features, cell_facts
    from povertymap.features.urban import cluster_urban
    from povertymap.studyarea import cluster_buffers

    radii = model.features.buffer_m.model_dump()
    flags = None
    if model.urban_rule_ is not None and "population" in area.rasters:
        facts = cell_facts(area, engine=engine, rule=model.urban_rule_)
        flags = cluster_urban(area.clusters, facts["urban"], area.cell_size)
    buffers = cluster_buffers(area.clusters, radii, urban=flags)
    X = build_features(model.blocks_, area, buffers, engine=engine)
    return X.reindex(columns=model.columns_).astype("float64")


@dataclass(frozen=True)
class DriftReport:
    """``drift.json`` as an object: ``as_dict()`` is the document."""

    drift: bool
    features: dict[str, dict[str, Any]]
    embeddings: dict[str, dict[str, Any]]
    prediction: dict[str, Any]
    labels: dict[str, Any]
    summary: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "drift": self.drift,
            "summary": self.summary,
            "features": self.features,
            "embeddings": self.embeddings,
            "prediction": self.prediction,
            "labels": self.labels,
        }

    def gauges(self) -> dict[str, float]:
        """Figures for the service's ``povertymap_drift_*`` gauges (the suffixes)."""
        out = {
            "detected": float(self.drift),
            "feature_share": float(self.summary["drifted_share"]),
            "feature_psi_max": float(self.summary["max_psi"]),
            "prediction_psi": float(self.prediction.get("psi", float("nan"))),
        }
        if "rmse_ratio" in self.labels:
            out["label_rmse_ratio"] = float(self.labels["rmse_ratio"])
        if "rmse_ratio" in self.labels.get("feedback", {}):
            out["feedback_rmse_ratio"] = float(self.labels["feedback"]["rmse_ratio"])
        return out


def drift_report(
    model: MappingModel,
    reference: pd.DataFrame,
    new: pd.DataFrame,
    *,
    labels: pd.Series | None = None,
    feedback: dict[str, Any] | None = None,
    cv_rmse: float | None = None,
    settings: MonitoringSettings | None = None,
) -> DriftReport:
    """Compare the new cluster features ``new`` with the training ``reference``.

    ``labels`` (indexed like ``new``) are the new survey's targets; ``feedback`` is the
    :func:`feedback_error` of the field observations; ``cv_rmse`` is the model's
    cross-validated RMSE to judge their error against.
    """
    s = settings or MonitoringSettings()
    features: dict[str, dict[str, Any]] = {}
    for col in model.columns_:
        ref = reference[col].to_numpy(float) if col in reference else np.array([])
        cur = new[col].to_numpy(float) if col in new else np.full(len(new), np.nan)
        value, p = psi(ref, cur, s.bins), ks_p(ref, cur)
        drifted = bool(value >= s.psi_alert or (value >= s.psi_warn and p < s.ks_alpha))
        features[col] = {
            "psi": value,
            "ks_p": p,
            "drift": drifted,
            "ref_mean": float(np.nanmean(ref)) if np.isfinite(ref).any() else None,
            "new_mean": float(np.nanmean(cur)) if np.isfinite(cur).any() else None,
        }
    embeddings = {}
    for block in EMBEDDING_BLOCKS:
        cols = [c for c in model.columns_ if c.startswith(f"{block}_") and c in reference]
        if not cols:
            continue
        r, c = reference[cols].to_numpy(float), new[cols].to_numpy(float)
        sd = np.nanstd(r, axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        shift = np.abs(np.nanmean(c, axis=0) - np.nanmean(r, axis=0)) / sd
        embeddings[block] = {
            "dims": len(cols),
            "mean_psi": float(np.mean([features[x]["psi"] for x in cols])),
            "drifted_share": float(np.mean([features[x]["drift"] for x in cols])),
            "mean_shift_sd": float(np.nanmean(shift)),
        }
    ref_pred = model.raw_predictions(reference)["estimate"].to_numpy()
    new_pred = model.raw_predictions(new)["estimate"].to_numpy()
    pred_psi, pred_p = psi(ref_pred, new_pred, s.bins), ks_p(ref_pred, new_pred)
    prediction = {
        "psi": pred_psi,
        "ks_p": pred_p,
        "drift": bool(pred_psi >= s.psi_alert or (pred_psi >= s.psi_warn and pred_p < s.ks_alpha)),
        "ref_mean": float(np.mean(ref_pred)),
        "new_mean": float(np.mean(new_pred)),
        "ref_sd": float(np.std(ref_pred)),
        "new_sd": float(np.std(new_pred)),
    }
    label_report: dict[str, Any] = {}
    if labels is not None and len(labels):
        from povertymap.models.evaluate import regression_metrics

        est = model.predict_features(new)["estimate"].reindex(labels.index).to_numpy()
        y = labels.to_numpy(float)
        ok = np.isfinite(est) & np.isfinite(y)
        label_report = {
            key: float(val)
            for key, val in regression_metrics(y[ok], est[ok]).items()
            if isinstance(val, int | float)
        }
        label_report["source"] = "new survey"
        if cv_rmse:
            label_report["cv_rmse"] = float(cv_rmse)
            label_report["rmse_ratio"] = label_report["rmse"] / cv_rmse
            label_report["drift"] = bool(label_report["rmse_ratio"] >= s.rmse_ratio)
    if feedback:
        label_report["feedback"] = feedback
    share = float(np.mean([f["drift"] for f in features.values()])) if features else 0.0
    psis = [f["psi"] for f in features.values() if np.isfinite(f["psi"])]
    top = sorted(features, key=lambda k: -np.nan_to_num(features[k]["psi"]))[:10]
    summary = {
        "n_features": len(features),
        "drifted": int(sum(f["drift"] for f in features.values())),
        "drifted_share": share,
        "max_psi": float(max(psis)) if psis else float("nan"),
        "top_features": top,
        "n_reference": len(reference),
        "n_new": len(new),
        "thresholds": s.model_dump(),
    }
    drift = bool(
        share >= s.drifted_share
        or prediction["drift"]
        or label_report.get("drift")
        or (feedback or {}).get("drift")
    )
    return DriftReport(drift, features, embeddings, prediction, label_report, summary)


def feedback_points(cells: gpd.GeoDataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """The field observations (``lon``/``lat`` in WGS 84, ``value``, ``poor``), one row
    each in their order, with the ``estimate`` and ``poverty_rate`` of the cell each falls
    in and ``on_map`` (False, with missing map values, for a point outside every cell)."""
    points = gpd.GeoDataFrame(
        feedback.reset_index(drop=True),
        geometry=gpd.points_from_xy(feedback["lon"], feedback["lat"]),
        crs="EPSG:4326",
    ).to_crs(cells.crs)
    keep = [c for c in ("estimate", "poverty_rate") if c in cells]
    target = cells[[*keep, "geometry"]].reset_index(drop=True)  # joined as ``index_right``
    hit = gpd.sjoin(points, target, predicate="within", how="left")
    hit = hit[~hit.index.duplicated(keep="first")]  # a point on a shared edge: one cell
    out = pd.DataFrame(hit.drop(columns=["geometry", "index_right"]))
    out["on_map"] = hit["index_right"].notna().to_numpy()
    return out


def feedback_error(
    cells: gpd.GeoDataFrame,
    feedback: pd.DataFrame,
    *,
    cv_rmse: float | None = None,
    settings: MonitoringSettings | None = None,
) -> dict[str, Any]:
    """The map's error on field observations (``value`` on the map's index scale and/or
    ``poor``), each point scored against the cell it falls in (:func:`feedback_points`).
    Points off the map are counted (``n_off_map``), never silently dropped. Values give
    the RMSE and bias (and their ratio to the CV RMSE, which flags drift from
    ``min_feedback`` points on); poor/non-poor flags give the Brier score of the cells'
    poverty rates and the observed against the mapped share poor."""
    s = settings or MonitoringSettings()
    hit = feedback_points(cells, feedback)
    on_map = hit["on_map"].to_numpy()
    out: dict[str, Any] = {
        "source": "field feedback",
        "n": len(feedback),
        "n_on_map": int(on_map.sum()),
        "n_off_map": int((~on_map).sum()),
    }
    values = hit[on_map & hit["value"].notna().to_numpy()]
    out["n_values"] = len(values)
    if len(values):
        err = values["estimate"].to_numpy(float) - values["value"].to_numpy(float)
        out["rmse"] = float(np.sqrt(np.mean(err**2)))
        out["bias"] = float(np.mean(err))
        if cv_rmse:
            out["cv_rmse"] = float(cv_rmse)
            out["rmse_ratio"] = out["rmse"] / float(cv_rmse)
            out["drift"] = bool(len(values) >= s.min_feedback and out["rmse_ratio"] >= s.rmse_ratio)
            if len(values) < s.min_feedback:
                out["note"] = f"fewer than {s.min_feedback} values: too few to flag drift"
    if "poverty_rate" in hit:
        flags = hit[on_map & hit["poor"].notna().to_numpy()]
        out["n_poor"] = len(flags)
        if len(flags):
            poor = flags["poor"].astype(float).to_numpy()
            rate = flags["poverty_rate"].to_numpy(float)
            out["brier"] = float(np.mean((poor - rate) ** 2))
            out["observed_poor_share"] = float(poor.mean())
            out["mapped_poor_share"] = float(rate.mean())
    return out


def report_section(report: DriftReport) -> str:
    """The drift report as a Markdown section (``drift.md``)."""
    s = report.summary
    lines = [
        "## Drift",
        "",
        f"**{'Drift detected' if report.drift else 'No drift'}**: {s['drifted']} of "
        f"{s['n_features']} features drifted ({s['drifted_share']:.0%}; threshold "
        f"{s['thresholds']['drifted_share']:.0%}), largest PSI {s['max_psi']:.3f}; "
        f"prediction PSI {report.prediction['psi']:.3f} (mean "
        f"{report.prediction['ref_mean']:.3f} -> {report.prediction['new_mean']:.3f}).",
        "",
        "| feature | PSI | KS p | drift |",
        "|---|---|---|---|",
    ]
    for name in s["top_features"]:
        f = report.features[name]
        lines.append(
            f"| {name} | {f['psi']:.3f} | {f['ks_p']:.3g} | {'yes' if f['drift'] else ''} |"
        )
    for block, e in report.embeddings.items():
        lines.append(
            f"\nEmbedding `{block}` ({e['dims']} dims): mean PSI {e['mean_psi']:.3f}, "
            f"{e['drifted_share']:.0%} drifted, mean shift {e['mean_shift_sd']:.2f} sd."
        )
    fb = report.labels.get("feedback")
    if fb:
        lines.append(
            f"\nField feedback: {fb['n']} points, {fb['n_on_map']} on the map"
            + (
                f"; {fb['n_values']} with a value: rmse {fb['rmse']:.3f}, bias {fb['bias']:+.3f}"
                if fb.get("n_values")
                else ""
            )
            + (f" ({fb['rmse_ratio']:.2f} x the CV rmse)" if "rmse_ratio" in fb else "")
            + (
                f"; {fb['n_poor']} poor/non-poor: Brier score {fb['brier']:.3f}"
                if fb.get("n_poor")
                else ""
            )
            + (f". {fb['note']}" if fb.get("note") else "")
        )
    if "n" in report.labels:
        lab = report.labels
        lines.append(
            f"\nLabels ({lab.get('source')}, n {lab.get('n', 0):.0f}): r2 {lab.get('r2', 0):.3f}, "
            f"rmse {lab.get('rmse', 0):.3f}"
            + (f" ({lab['rmse_ratio']:.2f} x the CV rmse)" if "rmse_ratio" in lab else "")
        )
    return "\n".join(lines) + "\n"


def monitor(
    run_dir: Path,
    cfg: StudyAreaConfig,
    *,
    out: Path,
    settings: MonitoringSettings | None = None,
    feedback: pd.DataFrame | None = None,
) -> DriftReport:
    """Compare the study ``cfg`` (new inputs) with the model of ``run_dir``, and score the
    field ``feedback`` (``lon``, ``lat``, ``value``, ``poor``) against the run's map; write
    ``drift.json`` and ``drift.md`` into the new folder ``out`` (atomically)."""
    from povertymap.engine.base import engine_for
    from povertymap.io.artifacts import read_table
    from povertymap.io.writers import atomic_directory, write_json, write_text
    from povertymap.mapping import TRAINING_FEATURES
    from povertymap.rundir import open_run
    from povertymap.studyarea import load_study_area

    run = open_run(run_dir)
    model = run.model()
    reference = read_table(run.path / "model" / TRAINING_FEATURES)
    reference = reference.set_index(reference.columns[0])
    area = load_study_area(cfg)
    engine = engine_for(cfg.features)
    new = cluster_features(model, area, engine=engine)
    labels = area.clusters.get("target", None)
    cv_rmse = run.metrics().get("cv", {}).get("rmse") if run.has("metrics.json") else None
    s = settings or cfg.monitoring
    scored = None
    if feedback is not None and len(feedback):
        scored = feedback_error(run.cells(), feedback, cv_rmse=cv_rmse, settings=s)
    report = drift_report(
        model, reference, new, labels=labels, feedback=scored, cv_rmse=cv_rmse, settings=s
    )
    document = {
        **report.as_dict(),
        "model_run": run.run_id,
        "new_study": cfg.name,
        "written": time.time(),
        "gauges": report.gauges(),
    }
    with atomic_directory(out) as tmp:
        write_json(document, tmp / DRIFT_JSON)
        write_text(report_section(report), tmp / "drift.md")
    return report
