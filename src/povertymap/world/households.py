"""Household characteristics: the proxy-means-test (PMT) variables, assets and dwellings.

Each characteristic is an indicator of wealth with its own noise, as in real PMT data:
ordered categories (education, roof, floor, walls, water, toilet, cooking fuel) are
thresholds of a latent ``b w_h + c U + shared taste + N(0, 1)``, assets are logistic in
``w_h``, and electricity needs a grid in the cell. ``w_h = (log c_h - m0) / 0.7`` is the
household's standardised wealth. The noise is set so an OLS of log consumption on these
variables explains about half of its variance, as real PMTs do (R² 0.4-0.6).

The dwelling's roof material and footprint are the same ones the imagery draws, so a
metal roof in the registry is a bright roof in the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from povertymap.world.welfare import M0

__all__ = [
    "CATEGORIES",
    "PMT_COLUMNS",
    "Dwellings",
    "asset_index",
    "household_attributes",
    "pmt_design",
]

#: Categorical PMT variables and their levels, poorest first.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "head_education": ("none", "primary", "secondary", "higher"),
    "roof": ("thatch", "metal", "tiles"),
    "floor": ("earth", "cement", "tiles"),
    "walls": ("mud", "burnt_brick", "cement_block"),
    "water": ("surface", "borehole", "piped"),
    "toilet": ("none", "pit", "flush"),
    "cooking_fuel": ("firewood", "charcoal", "gas_electric"),
}
#: Binary asset indicators (0/1).
ASSETS = ("radio", "mobile_phone", "television", "refrigerator", "bicycle", "motorcycle")
#: Every PMT column of the survey households and the registry, in file order.
PMT_COLUMNS = (
    "hh_size",
    "head_female",
    "head_age",
    "head_education",
    "rooms",
    "roof",
    "floor",
    "walls",
    "water",
    "toilet",
    "cooking_fuel",
    "electricity",
    *ASSETS,
)
#: Variables entering the DHS-style asset index (principal component of their dummies).
_INDEX_VARS = ("electricity", *ASSETS, "roof", "floor", "walls", "water", "toilet", "cooking_fuel")


def _sig(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _ordered(latent: np.ndarray, cuts: tuple[float, ...]) -> np.ndarray:
    return np.digitize(latent, cuts).astype(np.int8)


@dataclass(frozen=True)
class Dwellings:
    """What the imagery needs of each household: roof material, age, footprint, yard."""

    roof: np.ndarray  #: code into CATEGORIES["roof"]
    rusty: np.ndarray  #: bool, an old (rusted, darker) metal roof
    footprint_m2: np.ndarray  #: roofed area
    yard_m2: np.ndarray  #: swept bare-earth compound around the house


def household_attributes(
    log_consumption: np.ndarray,
    size: np.ndarray,
    urban: np.ndarray,
    electrified: np.ndarray,
    roof_preference: np.ndarray,
    town_access: np.ndarray,
    cell_mean: np.ndarray,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], Dwellings]:
    """PMT variables (categoricals as int8 codes) and dwellings of households.

    All inputs are per household: true log consumption, size, the cell's urban flag,
    whether the cell has a grid, the admin-1 roof tradition (logit shift), the cell's
    town access in [0, 1] and the cell's mean log consumption ``mu_c``. Building
    materials and house sizes follow the neighbourhood's prosperity as well as the
    household's own (materials travel along trade networks, builders copy neighbours),
    which is why roofs seen from space track local wealth.
    """
    n = log_consumption.size
    w = (np.asarray(log_consumption) - M0) / 0.7
    wc = (np.asarray(cell_mean) - M0) / 0.7
    u = np.asarray(urban, dtype=float)
    taste = rng.normal(0.0, 0.6, n)
    e = rng.standard_normal((8, n))
    out: dict[str, np.ndarray] = {"hh_size": np.asarray(size, dtype=np.int16)}
    out["head_female"] = (rng.random(n) < _sig(-1.1 - 0.25 * w)).astype(np.int8)
    out["head_age"] = np.clip(np.round(rng.normal(43 + 2 * w, 13)), 18, 95).astype(np.int16)
    out["head_education"] = _ordered(0.4 * w + 0.4 * u + e[0], (-0.6, 1.1, 2.4))
    lam = np.exp(-0.2 + 0.15 * w + 0.35 * np.log(np.asarray(size, dtype=float)))
    out["rooms"] = np.minimum(1 + rng.poisson(lam), 12).astype(np.int16)
    roof_latent = (
        0.7 * w + 1.6 * wc + 0.5 * u + roof_preference + 0.4 * town_access + 0.3 * taste + e[1]
    )
    roof = np.where(roof_latent < 0.0, 0, 1)
    roof = np.where(roof_latent > np.where(u > 0, 3.0, 4.0), 2, roof).astype(np.int8)
    out["roof"] = roof
    out["floor"] = _ordered(0.45 * w + 0.6 * u + 0.4 * taste + e[2], (0.6, 2.6))
    out["walls"] = _ordered(0.45 * w + 0.6 * u + 0.4 * taste + e[3], (0.2, 1.7))
    out["water"] = _ordered(0.3 * w + 1.2 * u + e[4], (-0.4, 1.4))
    out["toilet"] = _ordered(0.45 * w + 1.0 * u + e[5], (-1.1, 2.1))
    out["cooking_fuel"] = _ordered(0.4 * w + 1.4 * u + e[6], (0.8, 3.0))
    grid = np.asarray(electrified, dtype=bool)
    elec = grid & (rng.random(n) < _sig(-0.3 + 0.9 * w + 1.0 * u))
    out["electricity"] = elec.astype(np.int8)
    p = {
        "radio": _sig(0.2 + 0.35 * w + 0.5 * taste),
        "mobile_phone": _sig(0.9 + 0.7 * w + 0.6 * u + 0.5 * taste),
        "television": _sig(-1.6 + 0.9 * w + 0.8 * u + 0.5 * taste) * np.where(elec, 1.0, 0.12),
        "refrigerator": _sig(-3.2 + 1.0 * w + 0.6 * u + 0.5 * taste) * np.where(elec, 1.0, 0.05),
        "bicycle": _sig(-0.2 + 0.3 * w - 0.9 * u + 0.3 * taste),
        "motorcycle": _sig(-2.4 + 0.6 * w + 0.3 * taste),
    }
    for name in ASSETS:
        out[name] = (rng.random(n) < p[name]).astype(np.int8)
    rusty = (roof == 1) & (rng.random(n) < _sig(-0.3 - 0.9 * w))
    footprint = (
        11.0 * out["rooms"] * np.exp(0.3 * w + 0.4 * wc + 0.25 * e[7]) * np.where(u > 0, 1.3, 1.0)
    )
    yard = np.where(u > 0, 0.5 * footprint, 100.0 * np.exp(0.3 * w + 0.3 * rng.standard_normal(n)))
    return out, Dwellings(roof, rusty, footprint, yard)


def decode(attrs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Replace categorical codes by their labels (for writing tables)."""
    out = dict(attrs)
    for name, levels in CATEGORIES.items():
        if name in out:
            out[name] = np.asarray(levels, dtype=object)[np.asarray(out[name], dtype=np.int64)]
    return out


def pmt_design(df: pd.DataFrame) -> np.ndarray:
    """The PMT design matrix: intercept, numeric variables, and dummies (first level dropped).

    Numeric: household size and its square, head's age, rooms, binaries; categorical: one
    dummy per non-reference level. Works on decoded (label) columns.
    """
    cols = [np.ones(len(df))]
    size = df["hh_size"].to_numpy(dtype=float)
    cols += [size, size**2, df["head_age"].to_numpy(dtype=float), df["rooms"].to_numpy(dtype=float)]
    for name in ("head_female", "electricity", *ASSETS):
        cols.append(df[name].to_numpy(dtype=float))
    for name, levels in CATEGORIES.items():
        vals = df[name].to_numpy()
        for level in levels[1:]:
            cols.append((vals == level).astype(float))
    return np.column_stack(cols)


def pmt_r2(df: pd.DataFrame, y: np.ndarray) -> float:
    """R² of the OLS of ``y`` on the PMT design matrix (unweighted)."""
    x = pmt_design(df)
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    return float(1.0 - resid.var() / y.var())


def asset_index(df: pd.DataFrame) -> np.ndarray:
    """DHS-style wealth index: first principal component of asset and housing dummies.

    Dummies of every level of the categorical variables plus the binary assets are
    standardised over the households given; the first component's scores are returned,
    oriented so that owning a television raises the index (DHS orients by assets, it
    has no consumption to orient by).
    """
    cols = []
    names = []
    for name in _INDEX_VARS:
        vals = df[name].to_numpy()
        if name in CATEGORIES:
            for level in CATEGORIES[name]:
                cols.append((vals == level).astype(float))
                names.append(f"{name}={level}")
        else:
            cols.append(vals.astype(float))
            names.append(name)
    x = np.column_stack(cols)
    sd = x.std(axis=0)
    keep = sd > 0
    z = (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    loading = vt[0]
    kept = [n for n, k in zip(names, keep, strict=True) if k]
    if "television" in kept and loading[kept.index("television")] < 0:
        loading = -loading
    score = z @ loading
    return np.asarray(score / score.std())
