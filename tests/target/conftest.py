"""Tiny hand-made data for the targeting tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def ten_households() -> pd.DataFrame:
    """10 households whose errors are computed by hand in test_metrics.py.

    people 30, poor people 18 (5 households); covered 14 people (5 households), of whom
    8 poor (3 households).
    """
    return pd.DataFrame(
        {
            "household_id": [f"h{i:02d}" for i in range(1, 11)],
            "hh_size": [2, 4, 1, 3, 5, 2, 6, 1, 3, 3],
            "poor": [1, 1, 1, 0, 1, 0, 1, 0, 0, 0],
            "covered": [1, 0, 1, 1, 1, 0, 0, 0, 1, 0],
            "urban": [0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
            "admin1_id": ["A", "A", "B", "B", "A", "A", "B", "B", "A", "B"],
        }
    ).assign(poor=lambda d: d["poor"].astype(bool))


@pytest.fixture
def units() -> pd.DataFrame:
    """Six cells in two admin-1 (A, B) and three admin-2, 600 people each region."""
    return pd.DataFrame(
        {
            "population": [100.0, 200.0, 300.0, 100.0, 200.0, 300.0],
            "households": [20.0, 40.0, 60.0, 20.0, 40.0, 60.0],
            "poverty_rate": [0.9, 0.6, 0.3, 0.8, 0.5, 0.2],
            "parent_id": ["A", "A", "A", "B", "B", "B"],
            "admin_id": ["a1", "a1", "a2", "b1", "b1", "b1"],
            "urban": [0, 0, 1, 0, 1, 1],
        },
        index=pd.Index(["c1", "c2", "c3", "c4", "c5", "c6"], name="cell_id"),
    )


def simulate_pmt_households(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, float]:
    """Households whose log consumption is linear in PMT variables plus N(0, 0.5²).

    Returns the PMT table, log consumption and the population R² of the true model.
    """
    rng = np.random.default_rng(seed)
    wealth = rng.normal(size=n)
    roof = np.where(wealth + rng.normal(size=n) > 0.3, "metal", "thatch")
    floor = np.array(["earth", "cement", "tiles"])[
        np.digitize(wealth + rng.normal(size=n), [-0.3, 1.0])
    ]
    edu = np.array(["none", "primary", "secondary", "higher"])[
        np.digitize(wealth + rng.normal(size=n), [-1.0, 0.0, 1.2])
    ]
    radio = (rng.random(n) < 1 / (1 + np.exp(-wealth))).astype(int)
    hh_size = rng.integers(1, 10, size=n)
    effects = {"metal": 0.3, "thatch": 0.0, "earth": 0.0, "cement": 0.25, "tiles": 0.5}
    edu_effect = {"none": 0.0, "primary": 0.15, "secondary": 0.35, "higher": 0.7}
    signal = (
        np.array([effects[r] for r in roof])
        + np.array([effects[f] for f in floor])
        + np.array([edu_effect[e] for e in edu])
        + 0.2 * radio
        - 0.08 * hh_size
    )
    noise_sd = 0.5
    y = 6.0 + signal + rng.normal(scale=noise_sd, size=n)
    r2 = float(np.var(signal) / (np.var(signal) + noise_sd**2))
    table = pd.DataFrame(
        {"roof": roof, "floor": floor, "head_education": edu, "radio": radio, "hh_size": hh_size}
    )
    return table, y, r2


@pytest.fixture(scope="session")
def pmt_survey() -> tuple[pd.DataFrame, np.ndarray, float]:
    """4000 simulated survey households (see :func:`simulate_pmt_households`)."""
    return simulate_pmt_households(4000, seed=1)


@pytest.fixture(scope="session")
def pmt_registry() -> tuple[pd.DataFrame, np.ndarray, float]:
    """A second, independent draw: the registry the PMT is applied to."""
    return simulate_pmt_households(3000, seed=2)
