"""Welfare: the latent field of mean log consumption and households drawn around it.

Cell mean log consumption per capita (2017 PPP dollars a day, natural log)::

    mu_c = m0 - 0.25 + b_u U_c + b_d U_c log(D_c / 1000)
              + b_city exp(-T_city,c / 3 h) + b_town exp(-T_town,c / 1.5 h)
              + b_agro (A_c - mean A) + a1[r(c)] + a2[d(c)] + s_reg G_reg,c + s_loc G_loc,c + e_c

with U the urban flag, D the urban density, T travel times, A agricultural suitability,
a1/a2 admin-1/admin-2 effects, G unit Gaussian random fields (regional and local scale)
and e iid noise. A household h in cell c has ``log c_h = mu_c + u_h``,
``u_h ~ N(0, sd_rural or sd_urban)``, and ``1 + Poisson(lambda_h)`` members with
``log lambda_h = log lambda_0 - 0.3 u_h - 0.25 (mu_c - m0)`` (``lambda_0`` = 4.0 rural,
3.3 urban): larger households are poorer per head. Coefficients are in :data:`COEF`.
The poverty line is the people-weighted quantile of ``log c`` at the target headcount.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from povertymap.world.randomness import gaussian_field
from povertymap.world.spec import WorldSpec

__all__ = [
    "M0",
    "WelfareDraw",
    "WelfareHistogram",
    "cell_mean_log_consumption",
    "draw_welfare",
]

#: National centre of log consumption per capita (log of 2.6 $/day).
M0 = float(np.log(2.6))
#: Coefficients of the cell mean (see the module docstring).
COEF = {
    "urban": 0.30,
    "urban_density": 0.10,
    "city_access": 0.30,
    "town_access": 0.30,
    "agro": 0.45,
    "admin1_sd": 0.10,
    "admin2_sd": 0.08,
    "regional_sd": 0.10,
    "local_sd": 0.16,
    "cell_sd": 0.06,
}
_LAMBDA0 = {False: 4.0, True: 3.3}


def cell_mean_log_consumption(
    *,
    spec: WorldSpec,
    urban: np.ndarray,
    urban_density: np.ndarray,
    tt_city_h: np.ndarray,
    tt_town_h: np.ndarray,
    agro: np.ndarray,
    admin1: np.ndarray,
    admin2: np.ndarray,
    populated: np.ndarray,
    rng: np.random.Generator,
    cell_size_m: float,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The latent cell mean ``mu_c`` and its components (for documentation and tests).

    ``admin1``/``admin2`` are integer unit indices per cell (-1 outside the country);
    ``populated`` marks cells where the mean of agricultural suitability is taken.
    """
    shape = urban.shape
    n1 = int(admin1.max()) + 1
    n2 = int(admin2.max()) + 1
    a1 = rng.normal(0, COEF["admin1_sd"], n1)
    a2 = rng.normal(0, COEF["admin2_sd"], n2)
    w = shape[1] * cell_size_m
    g_reg = gaussian_field(rng, shape, 0.08 * w / cell_size_m)
    g_loc = gaussian_field(rng, shape, spec.local_scale_km * 1000.0 / cell_size_m / 2.0)
    eps = rng.normal(0, COEF["cell_sd"], shape)
    agro_mean = float(agro[populated].mean()) if populated.any() else float(agro.mean())
    parts = {
        "urban": COEF["urban"] * urban
        + COEF["urban_density"] * urban * np.log(np.maximum(urban_density, 1.0) / 1000.0),
        "market_access": COEF["city_access"] * np.exp(-tt_city_h / 3.0)
        + COEF["town_access"] * np.exp(-tt_town_h / 1.5),
        "agro": COEF["agro"] * (agro - agro_mean),
        "admin": np.where(admin1 >= 0, a1[np.maximum(admin1, 0)], 0.0)
        + np.where(admin2 >= 0, a2[np.maximum(admin2, 0)], 0.0),
        "spatial": COEF["regional_sd"] * g_reg + COEF["local_sd"] * g_loc,
        "noise": eps,
    }
    mu = M0 - 0.25 + sum(parts.values())
    return np.asarray(mu), parts


@dataclass(frozen=True)
class WelfareDraw:
    """Households of a window: their cell (index into the window's cell list), welfare, size."""

    cell: np.ndarray  #: int64 index into the window's populated cells
    rank: np.ndarray  #: int64 position of the household within its cell
    log_consumption: np.ndarray  #: true log consumption per capita
    shock: np.ndarray  #: u_h, deviation from the cell mean
    size: np.ndarray  #: household members (int16)


def draw_welfare(
    mu: np.ndarray,
    n_households: np.ndarray,
    urban: np.ndarray,
    spec: WorldSpec,
    rng: np.random.Generator,
) -> WelfareDraw:
    """Draw the households of a list of cells (arrays indexed by cell, in a fixed order)."""
    n_households = np.asarray(n_households, dtype=np.int64)
    cell = np.repeat(np.arange(n_households.size), n_households)
    starts = np.cumsum(n_households) - n_households
    rank = np.arange(cell.size) - starts[cell]
    u_c = np.asarray(urban, dtype=bool)[cell]
    sd = np.where(u_c, spec.household_sd_urban, spec.household_sd_rural)
    shock = rng.standard_normal(cell.size) * sd
    logc = np.asarray(mu)[cell] + shock
    lam0 = np.where(u_c, _LAMBDA0[True], _LAMBDA0[False])
    lam = lam0 * np.exp(-0.3 * shock - 0.25 * (np.asarray(mu)[cell] - M0))
    size = (1 + rng.poisson(np.minimum(lam, 25.0))).astype(np.int16)
    return WelfareDraw(cell, rank, logc, shock, size)


class WelfareHistogram:
    """People-weighted histogram of log consumption, to set the poverty line in one pass."""

    LO, HI, STEP = -6.0, 9.0, 1e-4

    def __init__(self) -> None:
        self.counts = np.zeros(round((self.HI - self.LO) / self.STEP), dtype=np.int64)

    def add(self, log_consumption: np.ndarray, people: np.ndarray) -> None:
        """Add households (their log consumption and size)."""
        k = np.clip(
            ((log_consumption - self.LO) / self.STEP).astype(np.int64), 0, self.counts.size - 1
        )
        self.counts += np.bincount(k, weights=people, minlength=self.counts.size).astype(np.int64)

    def quantile(self, share: float) -> float:
        """The log consumption below which ``share`` of people live (bin-interpolated)."""
        cum = np.cumsum(self.counts)
        target = share * cum[-1]
        k = int(np.searchsorted(cum, target))
        before = cum[k - 1] if k > 0 else 0
        frac = (target - before) / max(self.counts[k], 1)
        return float(self.LO + (k + frac) * self.STEP)
