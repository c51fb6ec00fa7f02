"""Retraining behind a gate: a challenger on a new survey round against the champion.

:func:`retrain` trains a challenger on the new round (``pipeline.run`` on its study
config; or takes a finished ``challenger_run``), then scores champion and challenger on
**the same spatial folds of the new data**: the challenger's out-of-fold predictions
(each cluster predicted by the challenger fitted without its fold) against the champion's
predictions of the same clusters (features through the champion's own fitted blocks),
both against the new survey's labels, fold by fold and pooled. The challenger is promoted
to ``champion`` only when every check passes:

- **better**: its pooled out-of-fold r2 beats the champion's by more than ``min_gain``
  (``monitoring:`` section of the config) and its RMSE is lower;
- **skill**: its out-of-fold predictions rank the new labels, and the labels it was
  trained on, better than chance (one-sided Spearman p below ``skill_alpha``): beating a
  champion that drift has broken is not enough;
- **coverage**: its intervals cover the truth at the level less ``coverage_tolerance``
  (the synthetic truth when given, population-weighted as the conformal guarantee is;
  otherwise the new clusters' out-of-fold residuals against its conformal half-widths);
- **disclosure**: its disclosure gate held (no admin area published with a coefficient of
  variation above the suppression threshold; the public outputs exist);
- **feedback** (when field feedback is given): the challenger's map is not significantly
  further from the field observations than the champion's map, the one served now (a
  one-sided paired t-test of the squared errors of the cell estimates at the same points,
  refused at p below ``skill_alpha``), judged once ``min_feedback`` points fall on both.

Every decision (promoted or refused, with its reasons and figures) is logged to MLflow as
a run of the experiment ``<name>-retrain`` and as tags on the challenger's version.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from povertymap.rundir import RunDirectory, open_run

if TYPE_CHECKING:
    from povertymap.config import StudyAreaConfig
    from povertymap.engine.base import ProgressCallback
    from povertymap.mapping import MappingModel

__all__ = ["RetrainDecision", "compare_on_folds", "gate", "retrain"]


@dataclass
class RetrainDecision:
    """What :func:`retrain` decided and why."""

    promoted: bool
    reasons: list[str]
    champion: dict[str, Any]
    challenger: dict[str, Any]
    folds: int
    checks: dict[str, bool] = field(default_factory=dict)
    champion_version: str | None = None
    challenger_version: str | None = None
    challenger_run: str | None = None
    mlflow_run_id: str | None = None


def _scores(y: np.ndarray, pred: np.ndarray, fold: np.ndarray) -> dict[str, Any]:
    from scipy import stats

    from povertymap.models.evaluate import regression_metrics

    pooled = regression_metrics(y, pred)
    rho = stats.spearmanr(y, pred)
    by_fold = {
        str(int(f)): float(regression_metrics(y[fold == f], pred[fold == f])["r2"])
        for f in np.unique(fold)
        if (fold == f).sum() >= 3
    }
    return {
        "r2": float(pooled["r2"]),
        "rmse": float(pooled["rmse"]),
        "spearman": float(pooled["spearman"]),
        "spearman_p_one_sided": float(rho.pvalue / 2 if rho.statistic > 0 else 1 - rho.pvalue / 2),
        "bias": float(pooled["bias"]),
        "n": len(y),
        "by_fold_r2": by_fold,
        "mean_fold_r2": float(np.mean(list(by_fold.values()))) if by_fold else float("nan"),
    }


def compare_on_folds(
    champion: MappingModel,
    challenger: RunDirectory,
    new_X: pd.DataFrame,
    labels: pd.Series,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Champion and challenger on the challenger's spatial folds of the new clusters.

    ``new_X`` are the new clusters' features through the champion's blocks and ``labels``
    the new survey's targets (both by cluster id). Returns the champion's and the
    challenger's scores (pooled and per fold) and the number of folds.
    """
    oof = challenger.oof()
    oof.index = oof.index.astype(labels.index.dtype)
    common = oof.index.intersection(labels.index).intersection(new_X.index)
    y = labels.reindex(common).to_numpy(float)
    fold = oof.loc[common, "fold"].to_numpy()
    champ = champion.raw_predictions(new_X.loc[common])["estimate"].to_numpy()
    chall = oof.loc[common, "pred"].to_numpy(float)
    scores = _scores(y, chall, fold)
    # the challenger against the labels it was trained on (its own cross-validation)
    own = _scores(oof["y"].to_numpy(float), oof["pred"].to_numpy(float), oof["fold"].to_numpy())
    scores["own_cv"] = {k: own[k] for k in ("r2", "spearman", "spearman_p_one_sided")}
    return _scores(y, champ, fold), scores, len(np.unique(fold))


def _coverage_check(run: RunDirectory, labels: pd.Series, tolerance: float) -> tuple[bool, str]:
    metrics = run.metrics()
    level = float(metrics.get("estimate", {}).get("level", 0.9))
    truth = metrics.get("truth", {}).get("estimate", {})
    if truth.get("cell_coverage_pop_weighted") is not None:
        # conformal intervals are calibrated on clusters drawn in proportion to people, so
        # their guarantee is per person: the population-weighted share of covered cells
        cov = float(truth["cell_coverage_pop_weighted"])
        unweighted = truth.get("cell_coverage", {}).get("overall")
        basis = "people's cells against the truth" + (
            f"; {unweighted:.3f} of cells unweighted" if unweighted is not None else ""
        )
    else:
        oof = run.oof()
        cal = metrics.get("estimate", {}).get("calibration", {})
        half = metrics.get("estimate", {}).get("conformal", {}).get("halfwidth", {})
        width = float(half.get("pooled", np.nan))
        fitted = cal.get("intercept", 0.0) + cal.get("slope", 1.0) * oof["pred"].to_numpy(float)
        y = labels.reindex(oof.index.astype(labels.index.dtype)).to_numpy(float)
        ok = np.isfinite(y)
        cov = float(np.mean(np.abs(y[ok] - fitted[ok]) <= width))
        basis = "new clusters' out-of-fold residuals"
    passed = cov >= level - tolerance
    return passed, (
        f"coverage {cov:.3f} ({basis}) {'>=' if passed else '<'} level {level:.2f} "
        f"less tolerance {tolerance:.2f}"
    )


def _disclosure_check(run: RunDirectory) -> tuple[bool, str]:
    config = run.config_data()
    suppress = float(config.get("estimate", {}).get("disclosure", {}).get("cv_suppress", 0.3))
    if not run.has("admin.gpkg") or not run.has("public/admin.gpkg"):
        return False, "disclosure: the challenger has no admin table or public outputs"
    admin = run.admin()
    cv = admin["cv"].to_numpy(float) if "cv" in admin else np.zeros(len(admin))
    leaked = (admin["publish"].eq("yes").to_numpy()) & (np.nan_to_num(cv) > suppress)
    suppressed = int(admin["publish"].eq("suppressed").sum())
    if leaked.any():
        return False, f"disclosure: {int(leaked.sum())} area(s) published above CV {suppress}"
    return True, (
        f"disclosure gate held: {suppressed} of {len(admin)} areas suppressed, none "
        f"published above CV {suppress}"
    )


def _feedback_check(
    champion: pd.DataFrame | None,
    challenger: pd.DataFrame,
    *,
    min_feedback: int,
    alpha: float,
) -> tuple[bool, str]:
    """Whether the challenger's map is not significantly worse on the field feedback than
    the champion's; both are :func:`~povertymap.mlops.drift.feedback_points` frames of the
    same observations."""
    from scipy import stats

    if champion is None:
        return (
            True,
            "feedback: the champion's run directory is not in the runs folder; not compared",
        )
    both = (
        champion["on_map"].to_numpy()
        & challenger["on_map"].to_numpy()
        & challenger["value"].notna().to_numpy()
    )
    n = int(both.sum())
    if n < min_feedback:
        return True, f"feedback: {n} values on both maps, fewer than {min_feedback}; not judged"
    value = challenger["value"].to_numpy(float)[both]
    sq_chall = (challenger["estimate"].to_numpy(float)[both] - value) ** 2
    sq_champ = (champion["estimate"].to_numpy(float)[both] - value) ** 2
    p = float(stats.ttest_rel(sq_chall, sq_champ, alternative="greater").pvalue)
    p = 1.0 if not np.isfinite(p) else p  # identical errors: no evidence of worse
    ok = p >= alpha
    return ok, (
        f"feedback {'not worse' if ok else 'worse'}: rmse {np.sqrt(sq_chall.mean()):.3f} vs "
        f"champion {np.sqrt(sq_champ.mean()):.3f} on {n} field values (one-sided paired p "
        f"{p:.3g}, refused below {alpha:g})"
    )


def gate(
    champion: dict[str, Any],
    challenger: dict[str, Any],
    coverage: tuple[bool, str],
    disclosure: tuple[bool, str],
    *,
    min_gain: float,
    skill_alpha: float = 0.05,
    feedback: tuple[bool, str] | None = None,
) -> tuple[bool, dict[str, bool], list[str]]:
    """The decision: promote only when better, skilled and both checks pass; with reasons.

    *Skilled*: the challenger's out-of-fold predictions rank both the new labels and the
    labels it was trained on better than chance (one-sided Spearman p below
    ``skill_alpha``), so a challenger that only beats a champion broken by drift, without
    having learnt from its data (a label bug, shuffled labels), is refused. (Ridge on
    noise labels predicts along the features' main directions, which can rank welfare by
    chance of sign; its own cross-validation shows that it learnt nothing.)
    """
    gain = challenger["r2"] - champion["r2"]
    better = bool(gain > min_gain and challenger["rmse"] < champion["rmse"])
    own = challenger.get("own_cv", challenger)
    p = max(challenger["spearman_p_one_sided"], own["spearman_p_one_sided"])
    skilled = bool(p < skill_alpha)
    reasons = [
        f"{'better' if better else 'not better'}: out-of-fold r2 {challenger['r2']:.3f} vs "
        f"champion {champion['r2']:.3f} (gain {gain:+.3f}, needed > {min_gain:+.3f}); rmse "
        f"{challenger['rmse']:.3f} vs {champion['rmse']:.3f}",
        f"{'skilled' if skilled else 'no skill'}: out-of-fold Spearman "
        f"{challenger['spearman']:.3f} with the new labels and {own['spearman']:.3f} with its "
        f"own training labels (larger one-sided p {p:.3g}, needed < {skill_alpha:g})",
        coverage[1],
        disclosure[1],
    ]
    checks = {
        "better": better,
        "skill": skilled,
        "coverage": coverage[0],
        "disclosure": disclosure[0],
    }
    if feedback is not None:
        checks["feedback"] = feedback[0]
        reasons.append(feedback[1])
    return all(checks.values()), checks, reasons


def _champion_model(name: str, uri: str, runs: Path) -> tuple[MappingModel, str]:
    from povertymap.io.mlops_files import ensure_folder
    from povertymap.mapping import MappingModel
    from povertymap.mlops.registry import get_version, model_folder

    version = get_version(f"{name}@champion", uri=uri)
    dst = ensure_folder(Path(runs) / ".mlflow" / "downloads" / f"{name}-v{version.version}")
    folder = model_folder(f"{name}/{version.version}", uri=uri, dst=dst)
    return MappingModel.load(folder), version.version


def retrain(
    name: str,
    cfg: StudyAreaConfig,
    *,
    runs: Path,
    uri: str,
    truth: Path | None = None,
    challenger_run: Path | None = None,
    feedback: pd.DataFrame | None = None,
    progress: ProgressCallback | None = None,
) -> RetrainDecision:
    """Challenge ``name@champion`` with a model of the new round ``cfg`` (module doc);
    ``feedback`` holds field observations (``lon``, ``lat``, ``value``, ``poor``)."""
    from povertymap.engine.base import engine_for
    from povertymap.mlops.drift import cluster_features, feedback_error, feedback_points
    from povertymap.mlops.registry import RegistryError, promote, register, served_run
    from povertymap.mlops.tracking import log_run, use_store
    from povertymap.pipeline import run as run_job
    from povertymap.studyarea import load_study_area

    champion, champion_version = _champion_model(name, uri, runs)
    if challenger_run is None:
        result = run_job(cfg, runs=runs, truth=truth, progress=progress)
        challenger_run = result.path
    challenger = open_run(challenger_run)
    area = load_study_area(cfg)
    labels = area.clusters["target"]
    engine = engine_for(cfg.features)
    new_X = cluster_features(champion, area, engine=engine)
    champ_scores, chall_scores, folds = compare_on_folds(champion, challenger, new_X, labels)
    s = cfg.monitoring
    feedback_check = None
    if feedback is not None and len(feedback):
        chall_scores["feedback"] = feedback_error(challenger.cells(), feedback, settings=s)
        chall_points = feedback_points(challenger.cells(), feedback)
        try:
            _, champion_dir = served_run(f"{name}/{champion_version}", uri=uri, runs=runs)
            champion_cells = open_run(champion_dir).cells()
            champ_scores["feedback"] = feedback_error(champion_cells, feedback, settings=s)
            champ_points = feedback_points(champion_cells, feedback)
        except RegistryError:
            champ_points = None
        feedback_check = _feedback_check(
            champ_points, chall_points, min_feedback=s.min_feedback, alpha=s.skill_alpha
        )
    promoted, checks, reasons = gate(
        champ_scores,
        chall_scores,
        _coverage_check(challenger, labels, s.coverage_tolerance),
        _disclosure_check(challenger),
        min_gain=s.min_gain,
        skill_alpha=s.skill_alpha,
        feedback=feedback_check,
    )
    log_run(challenger, uri=uri)
    version = register(challenger.path, name, uri=uri)
    decision = RetrainDecision(
        promoted=promoted,
        reasons=reasons,
        champion=champ_scores,
        challenger=chall_scores,
        folds=folds,
        checks=checks,
        champion_version=champion_version,
        challenger_version=version.version,
        challenger_run=challenger.run_id,
    )
    if promoted:
        promote(name, version.version, alias="champion", uri=uri)
    with use_store(uri) as mlflow:
        client = mlflow.MlflowClient()
        verdict = "promoted" if promoted else "refused"
        client.set_model_version_tag(name, version.version, "povertymap.gate", verdict)
        client.set_model_version_tag(
            name, version.version, "povertymap.gate_reasons", json.dumps(reasons)
        )
        exp = mlflow.get_experiment_by_name(f"{name}-retrain")
        exp_id = (
            exp.experiment_id
            if exp is not None
            else mlflow.create_experiment(
                f"{name}-retrain",
                artifact_location=(
                    Path(runs).resolve() / ".mlflow" / "artifacts" / "retrain"
                ).as_uri()
                if uri.endswith("/mlflow.db")
                else None,
            )
        )
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{verdict}-{challenger.run_id}"):
            mlflow.set_tags(
                {
                    "povertymap.decision": verdict,
                    "povertymap.champion_version": champion_version,
                    "povertymap.challenger_version": version.version,
                    "povertymap.challenger_run": challenger.run_id,
                    **{f"povertymap.check.{k}": str(v) for k, v in checks.items()},
                }
            )
            mlflow.log_metrics(
                {
                    "champion.r2": champ_scores["r2"],
                    "champion.rmse": champ_scores["rmse"],
                    "challenger.r2": chall_scores["r2"],
                    "challenger.rmse": chall_scores["rmse"],
                    "promoted": float(promoted),
                }
            )
            mlflow.log_dict(asdict(decision), "decision.json")
            decision.mlflow_run_id = mlflow.active_run().info.run_id
    return decision
