"""Calibration on a constructed shrunk predictor whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from povertymap.errors import ModelError
from povertymap.estimate.calibrate import LinearCalibrator

R2 = 0.7  # correlation^2 of truth and prediction
NOISE = 0.2  # sampling-noise variance of the observed cluster means


def _data(n: int = 40_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(2.0, 1.0, n)
    tau2 = 1 / R2 - 1
    signal = truth + rng.normal(0, np.sqrt(tau2), n)
    # a least-squares predictor E[t | s] would be 2 + R2 (s - 2); shrink it further, as
    # an over-regularised model does
    pred = 2.0 + 0.5 * R2 * (signal - 2.0)
    y = truth + rng.normal(0, np.sqrt(NOISE), n)
    return pred, y, truth


def _slope_ratio(est: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    c = np.cov(est, truth)
    return c[0, 1] / c[0, 0], c[0, 0] / c[1, 1]


@pytest.mark.parametrize(
    ("method", "slope", "ratio"),
    [
        ("regression", 1.0, R2),
        ("variance", np.sqrt(R2), 1.0),
        ("balanced", R2**0.25, np.sqrt(R2)),
    ],
)
def test_each_method_delivers_its_promised_slope_and_spread(
    method: str, slope: float, ratio: float
) -> None:
    pred, y, truth = _data()
    cal = LinearCalibrator(method=method).fit(pred, y, noise_var=NOISE)
    s, r = _slope_ratio(cal.predict(pred), truth)
    assert s == pytest.approx(slope, abs=0.02)
    assert r == pytest.approx(ratio, abs=0.03)
    assert cal.r_ == pytest.approx(np.sqrt(R2), abs=0.01)
    # the report estimates the same figures from the noisy y alone
    assert cal.report_["slope_after"] == pytest.approx(slope, abs=0.02)
    assert cal.report_["var_ratio_after"] == pytest.approx(ratio, abs=0.03)
    assert cal.report_["slope_before"] == pytest.approx(2.0, abs=0.05)
    assert cal.report_["var_ratio_before"] == pytest.approx(0.25 * R2, abs=0.01)
    assert cal.report_["r2_true"] == pytest.approx(R2, abs=0.02)
    assert cal.report_["r2_observed"] < cal.report_["r2_true"]
    assert cal.report_["attainable"] is True  # r = 0.84 >= 0.805


def test_ignoring_sampling_noise_overstates_the_spread() -> None:
    pred, y, truth = _data()
    naive = LinearCalibrator(method="variance").fit(pred, y)
    _, r = _slope_ratio(naive.predict(pred), truth)
    assert r == pytest.approx(1 + NOISE, abs=0.04)


def test_attainable_threshold() -> None:
    for r2, expected in ((0.7, True), (0.6, False)):
        rng = np.random.default_rng(1)
        t = rng.normal(0, 1, 50_000)
        p = t + rng.normal(0, np.sqrt(1 / r2 - 1), t.size)
        rep = LinearCalibrator(method="balanced").fit(p, t).report_
        assert rep["attainable"] is expected


def test_calibration_refuses_unusable_predictions() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(0, 1, 100)
    with pytest.raises(ModelError, match="constant"):
        LinearCalibrator().fit(np.ones(100), y)
    with pytest.raises(ModelError, match="correlate"):
        LinearCalibrator(method="balanced").fit(-y, y)
    with pytest.raises(ModelError, match="sampling-noise"):
        LinearCalibrator().fit(y + rng.normal(0, 1, 100), y, noise_var=5.0)
    with pytest.raises(ModelError, match="unknown"):
        LinearCalibrator(method="isotonic").fit(y, y)
    with pytest.raises(ModelError, match="at least 10"):
        LinearCalibrator().fit(y[:5], y[:5])


def test_balanced_against_a_realised_target_uses_its_extra_variance() -> None:
    # the map is judged against realised means: truth + a deviation no model predicts
    pred, y, truth = _data(seed=3)
    extra = 0.5
    realised = truth + np.random.default_rng(4).normal(0, np.sqrt(extra), truth.size)
    cal = LinearCalibrator(method="balanced").fit(pred, y, noise_var=NOISE, target_extra_var=extra)
    r_target = np.sqrt(R2 * 1.0 / (1.0 + extra))  # corr(pred, realised)
    assert cal.r_ == pytest.approx(r_target, abs=0.01)
    s, ratio = _slope_ratio(cal.predict(pred), realised)
    assert s == pytest.approx(np.sqrt(r_target), abs=0.02)
    assert ratio == pytest.approx(r_target, abs=0.03)
    assert cal.report_["r2_target"] == pytest.approx(r_target**2, abs=0.01)
    assert cal.report_["var_ratio_after_target"] == pytest.approx(r_target, abs=0.03)
    # r^2 = 0.7 would make the targets attainable against the truth, not against realised
    # means with that much extra variance (r^2 0.47 < 0.65)
    assert cal.report_["attainable"] is False
    plain = LinearCalibrator(method="balanced").fit(pred, y, noise_var=NOISE)
    assert plain.report_["attainable"] is True
