"""The ``monitoring:`` section of a study config: drift thresholds and the retraining gate.

Defaults follow common practice for the population stability index (PSI below 0.1: no
shift; 0.1-0.25: a moderate shift to watch; above 0.25: a shift that needs action) and a
two-sample Kolmogorov-Smirnov test at 1%.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MonitoringSettings"]


class MonitoringSettings(BaseModel):
    """Drift thresholds (``povertymap monitor``) and the retraining gate (``retrain``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    psi_warn: float = Field(0.1, gt=0, description="PSI at which a feature shift is reported.")
    psi_alert: float = Field(
        0.25, gt=0, description="PSI at which a feature (or the prediction) has drifted."
    )
    ks_alpha: float = Field(
        0.01, gt=0, lt=1, description="KS p-value below which a warned shift counts as drift."
    )
    bins: int = Field(10, ge=2, description="Quantile bins of the reference for the PSI.")
    drifted_share: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Share of drifted features at which the inputs as a whole have drifted.",
    )
    rmse_ratio: float = Field(
        1.25,
        gt=1,
        description="New-label RMSE over the cross-validated RMSE at which the labels say drift.",
    )
    min_feedback: int = Field(
        20,
        ge=1,
        description="Field feedback points on the map needed before their error can flag drift.",
    )
    min_gain: float = Field(
        0.0, description="r2 a challenger must gain over the champion on the new folds."
    )
    skill_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="One-sided p-value of the challenger's out-of-fold Spearman with the new "
        "labels below which it has skill.",
    )
    coverage_tolerance: float = Field(
        0.05, ge=0, lt=1, description="Interval coverage may fall this far below the level."
    )
