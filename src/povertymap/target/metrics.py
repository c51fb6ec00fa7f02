"""How good is a targeting plan: errors, coverage of the poor and welfare, by group.

Everything is computed from a table of households with the truth (``poor``, and true
``consumption`` per capita for welfare) and each household's **coverage** ``c_i`` in
[0, 1]: 1 if covered, 0 if not, a fraction for an area covered in part or a lottery (the
expected coverage). Each household counts with weight ``w_i``: at **person level** (the
default) ``w_i = weight_i x hh_size_i``, the people it stands for; at **household level**
``w_i = weight_i`` (``weight`` is 1 in a registry, the survey weight in a survey). With
``P = Σ w p`` the poor, ``B = Σ w c`` the beneficiaries and ``PC = Σ w c p`` the poor
covered:

* inclusion error ``(B - PC) / B``: share of beneficiaries who are not poor (1 - precision);
* exclusion error ``(P - PC) / P``: share of the poor not covered (1 - recall);
* share of the poor covered ``PC / P`` (recall) and precision ``PC / B``;
* coverage ``B / Σ w``: share of the people (households) covered;
* welfare (Aiken et al. 2022, after Hanna & Olken 2018): each beneficiary gets a fixed
  transfer ``T`` per person; with CRRA utility ``u(y) = y^(1-ρ) / (1-ρ)`` (``log y`` at
  ρ = 1) over consumption per capita ``y``, the gain is ``W = Σ w c [u(y + T) - u(y)]``.
  It is reported against three references at the same number of beneficiaries ``B``:
  the oracle (the ``B`` people of lowest true consumption: the most any rule can reach),
  the lottery (``B`` people at random) and universal transfers (the same total
  ``T·B`` spread over everyone): ``welfare_vs_oracle = W / W_oracle``,
  ``welfare_vs_universal = W / W_universal`` and
  ``welfare_index = (W - W_lottery) / (W_oracle - W_lottery)`` (0 lottery, 1 oracle).

Groups (``urban``, ``admin1_id``, ...) get the same figures on their own households, and
:func:`parity_gaps` gives, per grouping and metric, the spread between the best and worst
served group (e.g. the difference in the share of the poor covered).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from povertymap.errors import InputError
from povertymap.target._checks import finite_column, require_columns

__all__ = [
    "METRICS",
    "Level",
    "crra_utility",
    "evaluate",
    "household_weights",
    "parity_gaps",
    "targeting_metrics",
    "welfare_gains",
]

Level = Literal["person", "household"]

#: The metric columns of :func:`evaluate`, in order.
METRICS = (
    "coverage",
    "beneficiaries",
    "poor",
    "poor_covered",
    "share_poor_covered",
    "exclusion_error",
    "inclusion_error",
    "precision",
    "recall",
    "welfare_gain",
    "welfare_vs_oracle",
    "welfare_vs_universal",
    "welfare_index",
)


def crra_utility(y: np.ndarray | float, rho: float = 3.0) -> np.ndarray:
    """CRRA utility ``y^(1-ρ)/(1-ρ)`` (``log y`` at ρ = 1) of consumption ``y`` > 0."""
    y = np.asarray(y, dtype=float)
    if rho < 0 or not np.isfinite(rho):
        raise InputError(f"relative risk aversion rho={rho!r} is not >= 0", fix="give e.g. 3")
    if (y <= 0).any():
        raise InputError(
            f"CRRA utility needs consumption > 0; got minimum {float(y.min())!r}",
            fix="pass consumption in levels (not logs), strictly positive",
        )
    if abs(rho - 1.0) < 1e-12:
        return np.log(y)
    return np.power(y, 1.0 - rho) / (1.0 - rho)


def welfare_gains(consumption: np.ndarray, transfer: float, rho: float = 3.0) -> np.ndarray:
    """Utility gain ``u(y + T) - u(y)`` of each household's members from a transfer ``T``."""
    if not (np.isfinite(transfer) and transfer > 0):
        raise InputError(f"transfer {transfer!r} is not > 0", fix="give a positive transfer")
    y = np.asarray(consumption, dtype=float)
    return crra_utility(y + transfer, rho) - crra_utility(y, rho)


def household_weights(
    households: pd.DataFrame,
    *,
    level: Level = "person",
    weight: str | None = "weight",
    size: str = "hh_size",
) -> np.ndarray:
    """``w_i``: people (weight x size) at person level, households (weight) at household."""
    if level not in ("person", "household"):
        raise InputError(f"unknown level {level!r}", fix="use 'person' or 'household'")
    w = np.ones(len(households))
    if weight is not None and weight in households.columns:
        w = finite_column(households, weight, "households", lower=0)
    if level == "person":
        require_columns(households, [size], "households")
        w = w * finite_column(households, size, "households", lower=0)
    return w


def _oracle_welfare(gain: np.ndarray, y: np.ndarray, w: np.ndarray, beneficiaries: float) -> float:
    """Welfare of covering the ``beneficiaries`` people of lowest consumption first."""
    order = np.argsort(y, kind="stable")
    cum = np.cumsum(w[order])
    take = np.clip(beneficiaries - (cum - w[order]), 0.0, w[order])
    return float(np.sum(take * gain[order]))


def targeting_metrics(
    poor: np.ndarray,
    coverage: np.ndarray,
    w: np.ndarray,
    *,
    consumption: np.ndarray | None = None,
    transfer: float | None = None,
    rho: float = 3.0,
) -> dict[str, float]:
    """The metrics of the module docstring for one set of households (arrays aligned)."""
    p = np.asarray(poor, dtype=bool)
    c = np.asarray(coverage, dtype=float)
    w = np.asarray(w, dtype=float)
    total = float(w.sum())
    n_poor = float(np.sum(w * p))
    ben = float(np.sum(w * c))
    pc = float(np.sum(w * c * p))
    nan = float("nan")
    out = {
        "coverage": ben / total if total > 0 else nan,
        "beneficiaries": ben,
        "poor": n_poor,
        "poor_covered": pc,
        "share_poor_covered": pc / n_poor if n_poor > 0 else nan,
        "exclusion_error": (n_poor - pc) / n_poor if n_poor > 0 else nan,
        "inclusion_error": (ben - pc) / ben if ben > 0 else nan,
        "precision": pc / ben if ben > 0 else nan,
        "recall": pc / n_poor if n_poor > 0 else nan,
        "welfare_gain": nan,
        "welfare_vs_oracle": nan,
        "welfare_vs_universal": nan,
        "welfare_index": nan,
    }
    if consumption is not None and transfer is not None and total > 0:
        y = np.asarray(consumption, dtype=float)
        gain = welfare_gains(y, transfer, rho)
        welfare = float(np.sum(w * c * gain))
        oracle = _oracle_welfare(gain, y, w, ben)
        lottery = ben / total * float(np.sum(w * gain))
        universal = float(np.sum(w * welfare_gains(y, transfer * ben / total, rho))) if ben else 0
        out["welfare_gain"] = welfare
        out["welfare_vs_oracle"] = welfare / oracle if oracle > 0 else nan
        out["welfare_vs_universal"] = welfare / universal if universal > 0 else nan
        span = oracle - lottery
        out["welfare_index"] = (welfare - lottery) / span if span > 1e-12 * abs(oracle) else nan
    return out


def _coverage_array(coverage: pd.Series | np.ndarray, households: pd.DataFrame) -> np.ndarray:
    if isinstance(coverage, pd.Series):
        key = (
            pd.Index(households["household_id"])
            if "household_id" in households.columns
            else households.index
        )
        if coverage.index.equals(key):
            values = coverage.to_numpy(dtype=float)
        else:
            values = coverage.reindex(key).fillna(0.0).to_numpy(dtype=float)
    else:
        values = np.asarray(coverage, dtype=float)
        if values.shape != (len(households),):
            raise InputError(
                f"coverage has shape {values.shape} for {len(households)} households",
                fix="pass one coverage per household (aligned), or a Series by household_id",
            )
    if not np.isfinite(values).all() or (values < 0).any() or (values > 1 + 1e-9).any():
        raise InputError(
            "coverage values must lie in [0, 1]",
            fix="pass 1/0 (or True/False) per household, or an expected share in [0, 1]",
        )
    return np.minimum(values, 1.0)


def default_transfer(consumption: np.ndarray, w: np.ndarray) -> float:
    """20% of the (weighted) median consumption per capita: the default transfer."""
    order = np.argsort(consumption, kind="stable")
    cum = np.cumsum(w[order])
    median = float(consumption[order][np.searchsorted(cum, cum[-1] / 2)])
    return 0.2 * median


def evaluate(
    households: pd.DataFrame,
    coverage: pd.Series | np.ndarray,
    *,
    by: Sequence[str] = ("urban", "admin1_id"),
    level: Level = "person",
    poor: str = "poor",
    consumption: str | None = "consumption",
    weight: str | None = "weight",
    size: str = "hh_size",
    transfer: float | None = None,
    rho: float = 3.0,
) -> pd.DataFrame:
    """Targeting metrics of one plan, overall and by group.

    Parameters
    ----------
    households:
        One row per household: ``poor`` (bool), ``hh_size``, optional ``weight``
        (default 1), ``consumption`` per capita in levels (for welfare; skipped when the
        column is absent) and the grouping columns ``by`` (absent ones are skipped).
    coverage:
        Per household, 1/0 or a share in [0, 1]; an array aligned with ``households`` or a
        Series by ``household_id`` (missing ids count as not covered).
    level:
        ``"person"`` (default: households weighted by people) or ``"household"``.
    transfer, rho:
        Transfer per beneficiary person (default: 20% of the weighted median
        consumption) and relative risk aversion (default 3) for the welfare measures.

    Returns
    -------
    DataFrame
        One row per group: ``group_by`` (``"all"`` for the whole table, else the column),
        ``group`` (its value), ``level``, ``n_households`` and the :data:`METRICS`.
        ``attrs`` holds ``level``, ``transfer`` and ``rho``.
    """
    require_columns(households, [poor], "households")
    cov = _coverage_array(coverage, households)
    w = household_weights(households, level=level, weight=weight, size=size)
    p = households[poor].astype(bool).to_numpy()
    y = None
    if consumption is not None and consumption in households.columns:
        y = finite_column(households, consumption, "households")
        if transfer is None:
            transfer = default_transfer(y, w)
    rows = [
        {
            "group_by": "all",
            "group": "all",
            **targeting_metrics(p, cov, w, consumption=y, transfer=transfer, rho=rho),
            "n_households": len(households),
        }
    ]
    for col in by:
        if col not in households.columns:
            continue
        codes, values = pd.factorize(households[col], sort=True)
        for k, value in enumerate(values):
            m = codes == k
            metrics = targeting_metrics(
                p[m], cov[m], w[m],
                consumption=None if y is None else y[m], transfer=transfer, rho=rho,
            )  # fmt: skip
            rows.append({"group_by": col, "group": value, **metrics, "n_households": int(m.sum())})
    out = pd.DataFrame(rows)
    out.insert(2, "level", level)
    out = out[["group_by", "group", "level", "n_households", *METRICS]]
    out.attrs.update(level=level, transfer=transfer, rho=rho)
    return out


def parity_gaps(
    evaluation: pd.DataFrame,
    metrics: Sequence[str] = ("share_poor_covered", "exclusion_error", "inclusion_error"),
) -> pd.DataFrame:
    """Spread of each metric across the groups of each grouping: max - min.

    ``evaluation`` is the output of :func:`evaluate` (or several stacked, with a
    ``method`` column). Returns one row per (method,) grouping and metric with ``gap``,
    the groups at the ``high`` and ``low`` end and their values; for urban/rural the gap
    is the difference between the two groups. Groups where a metric is undefined (no
    poor, no beneficiary) are left out of its gap.
    """
    keys = ["method"] if "method" in evaluation.columns else []
    rows = []
    sub = evaluation[evaluation["group_by"] != "all"]
    for key, frame in sub.groupby([*keys, "group_by"], sort=False):
        key_t = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            vals = frame[["group", metric]].dropna()
            if len(vals) < 2:
                continue
            hi = vals.loc[vals[metric].idxmax()]
            lo = vals.loc[vals[metric].idxmin()]
            rows.append(
                {
                    **dict(zip([*keys, "group_by"], key_t, strict=True)),
                    "metric": metric,
                    "gap": float(hi[metric] - lo[metric]),
                    "high": hi["group"],
                    "high_value": float(hi[metric]),
                    "low": lo["group"],
                    "low_value": float(lo[metric]),
                }
            )
    columns = [*keys, "group_by", "metric", "gap", "high", "high_value", "low", "low_value"]
    return pd.DataFrame(rows, columns=columns)
