"""Honest estimates: calibration, conformal intervals, area aggregation, small-area
estimation, poverty headcounts, displacement and the disclosure gate.

The stage entry point is :func:`estimate_map`; :func:`evaluate_against_truth` scores its
result against a known truth (the synthetic world). Methods and equations are in
``docs/methods.md``.
"""

from __future__ import annotations

from povertymap.config.estimate import DisclosureSettings, EstimationSettings
from povertymap.estimate.aggregate import simulate_area_intervals, weighted_area_means
from povertymap.estimate.calibrate import LinearCalibrator, calibration_report
from povertymap.estimate.conformal import MondrianConformal, conformal_quantile
from povertymap.estimate.direct import (
    cluster_noise,
    direct_estimates,
    gvf_variances,
    household_weights,
    realized_mean_factor,
    within_sd,
)
from povertymap.estimate.disclosure import (
    DisclosureError,
    gate,
    public_table,
    strip_private,
    violations,
)
from povertymap.estimate.displacement import Displacement, displace_clusters, displace_points
from povertymap.estimate.evaluate import evaluate_against_truth
from povertymap.estimate.headcount import expected_headcount, headcount, headcount_interval
from povertymap.estimate.sae import FayHerriot, benchmark
from povertymap.estimate.spatial import (
    ExponentialCovariance,
    GridFieldSampler,
    empirical_variogram,
    fit_exponential,
    fit_nested,
    nested_variogram,
)
from povertymap.estimate.stage import EstimateResult, estimate_areas, estimate_map

__all__ = [
    "DisclosureError",
    "DisclosureSettings",
    "Displacement",
    "EstimateResult",
    "EstimationSettings",
    "ExponentialCovariance",
    "FayHerriot",
    "GridFieldSampler",
    "LinearCalibrator",
    "MondrianConformal",
    "benchmark",
    "calibration_report",
    "cluster_noise",
    "conformal_quantile",
    "direct_estimates",
    "displace_clusters",
    "displace_points",
    "empirical_variogram",
    "estimate_areas",
    "estimate_map",
    "evaluate_against_truth",
    "expected_headcount",
    "fit_exponential",
    "fit_nested",
    "gate",
    "gvf_variances",
    "headcount",
    "headcount_interval",
    "household_weights",
    "nested_variogram",
    "public_table",
    "realized_mean_factor",
    "simulate_area_intervals",
    "strip_private",
    "violations",
    "weighted_area_means",
    "within_sd",
]
