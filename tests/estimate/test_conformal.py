"""Mondrian conformal intervals: finite-sample quantile, coverage of the noise-free truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from povertymap.errors import ModelError
from povertymap.estimate.conformal import MondrianConformal, conformal_quantile

# Coverage tolerances: with n calibration scores the conditional coverage of split
# conformal is Beta-distributed with sd ~ sqrt(0.09 / n); with 3000 scores per group and
# 20000 test points the sd of the measured coverage is ~0.006, so +/- 0.02 is > 3 sd.
TOL = 0.02


def test_conformal_quantile_is_the_ceil_n_plus_one_order_statistic() -> None:
    scores = np.arange(1.0, 20.0)  # n = 19
    assert conformal_quantile(scores, 0.9) == 18.0  # ceil(20 * 0.9) = 18
    assert conformal_quantile(scores[::-1], 0.5) == 10.0
    assert math.isinf(conformal_quantile(np.arange(5.0), 0.9))  # ceil(5.4) = 6 > 5


def _groups(rng: np.random.Generator, n: int) -> dict[bool, dict[str, np.ndarray]]:
    """Urban: small model error, large sampling noise; rural: the reverse."""
    out = {}
    for urban, sigma, (vlo, vhi) in ((True, 0.15, (0.01, 0.03)), (False, 0.30, (0.002, 0.01))):
        v = rng.uniform(vlo, vhi, n)
        resid = rng.normal(0, sigma, n) + rng.normal(0, np.sqrt(v))
        test_err = rng.normal(0, sigma, 20_000)  # truth minus prediction: no noise
        out[urban] = {"resid": resid, "v": v, "test": test_err, "sigma": np.array(sigma)}
    return out


def _fit(data: dict, **kw: object) -> MondrianConformal:
    r = np.concatenate([data[True]["resid"], data[False]["resid"]])
    v = np.concatenate([data[True]["v"], data[False]["v"]])
    g = np.repeat([True, False], data[True]["resid"].size)
    groups = None if kw.pop("pooled", False) else g
    return MondrianConformal(**kw).fit(r, groups, v)  # type: ignore[arg-type]


def _coverage(conf: MondrianConformal, data: dict, urban: bool, pooled: bool = False) -> float:
    e = data[urban]["test"]
    lo, hi = conf.predict_interval(np.zeros_like(e), None if pooled else np.full(e.size, urban))
    return float(np.mean((lo <= e) & (e <= hi)))


def test_noise_deconvolution_covers_the_truth_in_each_group() -> None:
    data = _groups(np.random.default_rng(0), 3000)
    conf = _fit(data, level=0.9)
    for urban in (True, False):
        assert _coverage(conf, data, urban) == pytest.approx(0.9, abs=TOL)
        assert conf.sigma_[urban] == pytest.approx(float(data[urban]["sigma"]), rel=0.05)
    assert conf.noise_share_[True] > 0.3 > conf.noise_share_[False]


def test_plain_conformal_on_noisy_targets_over_covers_the_truth() -> None:
    data = _groups(np.random.default_rng(0), 3000)
    plain = _fit(data, level=0.9, noise_correction="none")
    # urban: noise is ~47 % of the residual variance, so |r| quantiles are too wide
    assert _coverage(plain, data, True) > 0.96


def test_without_mondrian_groups_are_covered_unequally() -> None:
    data = _groups(np.random.default_rng(0), 3000)
    pooled = _fit(data, level=0.9, pooled=True)
    urban = _coverage(pooled, data, True, pooled=True)
    rural = _coverage(pooled, data, False, pooled=True)
    assert urban > 0.9 + TOL and rural < 0.9 - TOL


def test_heavy_tailed_errors_keep_the_conformal_level() -> None:
    rng = np.random.default_rng(3)
    resid = rng.standard_t(3, 4000) * 0.2
    test = rng.standard_t(3, 20_000) * 0.2
    conf = MondrianConformal(level=0.8).fit(resid)
    lo, hi = conf.predict_interval(np.zeros_like(test))
    assert np.mean((lo <= test) & (test <= hi)) == pytest.approx(0.8, abs=TOL)


def test_extra_variance_widens_intervals_to_cover_a_noisier_target() -> None:
    rng = np.random.default_rng(4)
    resid = rng.normal(0, 0.2, 4000)
    conf = MondrianConformal(level=0.9).fit(resid, noise_var=np.zeros(4000))
    extra = rng.uniform(0.0, 0.1, 20_000)
    target = rng.normal(0, 0.2, 20_000) + rng.normal(0, np.sqrt(extra))
    lo, hi = conf.predict_interval(np.zeros(20_000), extra_var=extra)
    assert np.mean((lo <= target) & (target <= hi)) == pytest.approx(0.9, abs=TOL)
    narrow_lo, narrow_hi = conf.predict_interval(np.zeros(20_000))
    assert np.mean((narrow_lo <= target) & (target <= narrow_hi)) < 0.85


def test_small_and_unseen_groups_fall_back_to_the_pooled_quantile() -> None:
    rng = np.random.default_rng(5)
    r = rng.normal(0, 0.2, 210)
    g = np.array(["rural"] * 200 + ["urban"] * 10)
    conf = MondrianConformal(min_group_size=30).fit(r, g)
    assert conf.pooled_groups_ == ["urban"]
    assert conf.halfwidth_["urban"] == conf.halfwidth_["__pooled__"]
    h = conf.halfwidth(np.array(["peri-urban"]), 1)
    assert h[0] == conf.halfwidth_["__pooled__"]
    assert conf.summary()["pooled_groups"] == ["urban"]


def test_the_noise_floor_is_recorded_when_noise_exceeds_the_residuals() -> None:
    r = np.random.default_rng(6).normal(0, 0.1, 200)
    conf = MondrianConformal().fit(r, noise_var=np.full(200, 0.05))
    assert conf.floored_ == ["__pooled__"]
    assert conf.sigma_["__pooled__"] == pytest.approx(np.sqrt(0.05 * np.mean(r**2)))


def test_conformal_refuses_too_few_residuals() -> None:
    with pytest.raises(ModelError, match="too few"):
        MondrianConformal(level=0.9).fit(np.arange(5.0))
    with pytest.raises(ModelError, match="strictly between"):
        MondrianConformal(level=1.0).fit(np.arange(50.0))
