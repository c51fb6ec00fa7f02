"""Scoring against ground truth: hand-computed weighted metrics, and reading truth files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from povertymap.truth import TRUE_MEAN, read_truth, score_cells


def _weighted_r2_rmse(y: list[float], p: list[float], w: list[float]) -> tuple[float, float]:
    """r² = 1 - Σw(y-p)² / Σw(y-ȳw)² and rmse = sqrt(Σw(y-p)² / Σw), written out."""
    y_, p_, w_ = (np.asarray(v, dtype=float) for v in (y, p, w))
    mean = np.sum(w_ * y_) / np.sum(w_)
    sse = np.sum(w_ * (y_ - p_) ** 2)
    sst = np.sum(w_ * (y_ - mean) ** 2)
    return float(1 - sse / sst), float(np.sqrt(sse / np.sum(w_)))


@pytest.fixture
def truth() -> pd.DataFrame:
    """Seven true cells; t5 has nobody, t7 is not on the map."""
    return pd.DataFrame(
        {
            TRUE_MEAN: [5.0, 6.0, 7.0, 8.0, 9.0, 5.5, 6.5],
            "population": [10.0, 30.0, 20.0, 40.0, 0.0, 50.0, 99.0],
            "poverty_rate": [0.9, 0.5, 0.3, 0.1, 0.0, 0.8, 0.4],
        },
        index=pd.Index([f"t{i}" for i in range(1, 8)], name="cell_id"),
    )


@pytest.fixture
def cells() -> pd.DataFrame:
    """The map: t1..t6 plus t0, which the truth lacks; its own population is ignored."""
    return pd.DataFrame(
        {
            "estimate": [5.5, 6.0, 6.5, 7.5, 3.0, 6.0, 1.0],
            "baseline": [6.0, 6.0, 6.5, 7.0, 3.0, 6.5, 1.0],
            "population": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            "dark": [True, True, False, False, True, True, True],
        },
        index=pd.Index(["t1", "t2", "t3", "t4", "t5", "t6", "t0"], name="cell_id"),
    )


# populated cells on both sides: t1, t2, t3, t4, t6 (t5 has no people, t0/t7 unmatched)
Y = [5.0, 6.0, 7.0, 8.0, 5.5]
PEOPLE = [10.0, 30.0, 20.0, 40.0, 50.0]
EST = [5.5, 6.0, 6.5, 7.5, 6.0]
BASE = [6.0, 6.0, 6.5, 7.0, 6.5]


def test_population_weighted_and_per_cell_metrics(cells: pd.DataFrame, truth: pd.DataFrame) -> None:
    out = score_cells(cells, truth)
    assert out["n_cells"] == 5
    for column, pred in (("estimate", EST), ("baseline", BASE)):
        r2_w, rmse_w = _weighted_r2_rmse(Y, pred, PEOPLE)
        r2_c, rmse_c = _weighted_r2_rmse(Y, pred, [1.0] * 5)
        assert out[column]["all"]["n"] == 5
        assert out[column]["all"]["r2"] == pytest.approx(r2_w)
        assert out[column]["all"]["rmse"] == pytest.approx(rmse_w)
        assert out[column]["cells"]["r2"] == pytest.approx(r2_c)
        assert out[column]["cells"]["rmse"] == pytest.approx(rmse_c)
    # a few of those numbers by hand: estimate, weights 10,30,20,40,50 (sum 150)
    # ȳ = (50+180+140+320+275)/150 = 6.4333; SSE = 10*.25+20*.25+40*.25+50*.25 = 30
    # SST = Σwy² - Σw·ȳ² = 6382.5 - 965²/150 = 523/3
    assert out["estimate"]["all"]["rmse"] == pytest.approx(np.sqrt(30 / 150))
    assert out["estimate"]["all"]["r2"] == pytest.approx(1 - 90 / 523)
    # unweighted: SSE = .25*4 = 1; ȳ = 6.3, SST = 1.69+.09+.49+2.89+.64 = 5.8
    assert out["estimate"]["cells"]["r2"] == pytest.approx(1 - 1 / 5.8)
    assert out["estimate"]["cells"]["rmse"] == pytest.approx(np.sqrt(1 / 5))


def test_unpopulated_and_unmatched_cells_do_not_count(
    cells: pd.DataFrame, truth: pd.DataFrame
) -> None:
    # wildly wrong estimates where nobody lives (t5), or where there is no truth (t0),
    # leave every metric unchanged
    worse = cells.assign(estimate=cells["estimate"].where(~cells.index.isin(["t5", "t0"]), 1e6))
    assert score_cells(worse, truth)["estimate"] == score_cells(cells, truth)["estimate"]
    # and the weights are the true population, not the map's own population column
    reweighted = cells.assign(population=[5.0, 1.0, 9.0, 2.0, 0.0, 3.0, 4.0])
    assert score_cells(reweighted, truth)["estimate"] == score_cells(cells, truth)["estimate"]


def test_dark_cells_and_their_share(cells: pd.DataFrame, truth: pd.DataFrame) -> None:
    out = score_cells(cells, truth, ("estimate",))
    # populated dark cells: t1 (10), t2 (30), t6 (50) of 150 people
    assert out["estimate"]["dark_share"] == pytest.approx(90 / 150)
    r2, rmse = _weighted_r2_rmse([5.0, 6.0, 5.5], [5.5, 6.0, 6.0], [10.0, 30.0, 50.0])
    assert out["estimate"]["dark"]["n"] == 3
    assert out["estimate"]["dark"]["r2"] == pytest.approx(r2)
    assert out["estimate"]["dark"]["rmse"] == pytest.approx(rmse)
    assert out["estimate"]["dark"]["rmse"] == pytest.approx(np.sqrt(15 / 90))


def test_too_few_dark_cells_give_only_a_count(cells: pd.DataFrame, truth: pd.DataFrame) -> None:
    two_dark = cells.assign(dark=[True, False, False, False, True, True, True])
    out = score_cells(two_dark, truth, ("estimate",))
    assert out["estimate"]["dark"] == {"n": 2.0}  # t1, t6 (t5 is unpopulated)
    assert out["estimate"]["dark_share"] == pytest.approx(60 / 150)


def test_no_dark_column_no_dark_entry(cells: pd.DataFrame, truth: pd.DataFrame) -> None:
    out = score_cells(cells.drop(columns="dark"), truth)
    assert "dark" not in out["estimate"] and "dark_share" not in out["estimate"]
    assert set(out["estimate"]) == {"all", "cells"}


def test_missing_columns_are_skipped(cells: pd.DataFrame, truth: pd.DataFrame) -> None:
    out = score_cells(cells.drop(columns="baseline"), truth, ("estimate", "baseline", "nope"))
    assert set(out) == {"n_cells", "estimate"}
    assert out["n_cells"] == 5
    assert score_cells(cells, truth, ())["n_cells"] == 5


def test_map_without_its_own_population_column(cells: pd.DataFrame, truth: pd.DataFrame) -> None:
    out = score_cells(cells.drop(columns="population"), truth, ("estimate",))
    r2, rmse = _weighted_r2_rmse(Y, EST, PEOPLE)
    assert out["estimate"]["all"]["r2"] == pytest.approx(r2)
    assert out["estimate"]["all"]["rmse"] == pytest.approx(rmse)


def _write_truth(folder: Path, admin_csv: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder.mkdir(parents=True, exist_ok=True)
    cells = pd.DataFrame(
        {
            "cell_id": [101, 102, 103],
            TRUE_MEAN: [5.0, 6.5, 7.25],
            "population": [10.0, 0.0, 35.5],
        }
    )
    cells.to_parquet(folder / "cells.parquet")
    households = pd.DataFrame(
        {
            "household_id": ["h1", "h2", "h3", "h4"],
            "cell_id": [101, 101, 103, 103],
            "log_consumption": [5.1, 4.9, 7.0, 7.5],
            "poor": [True, True, False, False],
        }
    )
    households.to_parquet(folder / "households.parquet")
    (folder / "admin2.csv").write_text(admin_csv, encoding="utf-8")
    return cells, households


ADMIN_CSV = (
    "admin2_id,admin2_name,admin1_id,population,poverty_rate\n"
    "007,North,R1,1200,0.25\n"
    "010,South,R2,800,0.5\n"
)


def test_read_truth_indexes_and_types(tmp_path: Path) -> None:
    cells, households = _write_truth(tmp_path / "truth", ADMIN_CSV)
    out = read_truth(tmp_path / "truth")
    assert set(out) == {"cells", "admin", "households"}

    assert out["cells"].index.name == "cell_id"
    assert list(out["cells"].index) == [101, 102, 103]
    assert out["cells"].loc[103, TRUE_MEAN] == pytest.approx(7.25)
    assert out["cells"].loc[103, "population"] == pytest.approx(35.5)
    assert "cell_id" not in out["cells"].columns
    pd.testing.assert_frame_equal(out["cells"], cells.set_index("cell_id"))

    pd.testing.assert_frame_equal(out["households"], households)

    admin = out["admin"]
    assert admin.index.name == "admin2_id"
    assert list(admin.index) == ["007", "010"]  # the id keeps its leading zeros
    assert list(admin.columns) == ["admin2_name", "admin1_id", "population", "poverty_rate"]
    assert pd.api.types.is_numeric_dtype(admin["population"])
    assert pd.api.types.is_numeric_dtype(admin["poverty_rate"])
    assert admin.loc["007", "population"] == 1200
    assert admin.loc["010", "poverty_rate"] == pytest.approx(0.5)
    assert float((admin["population"] * admin["poverty_rate"]).sum()) == pytest.approx(700)
    assert list(admin["admin2_name"]) == ["North", "South"]  # text stays text
    assert list(admin["admin1_id"]) == ["R1", "R2"]


def test_read_truth_scores_like_the_frames_it_read(tmp_path: Path) -> None:
    _write_truth(tmp_path, ADMIN_CSV)
    truth = read_truth(tmp_path)["cells"]
    cells = pd.DataFrame(
        {"estimate": [5.5, 6.0, 7.0, 6.0], "population": 1.0},
        index=pd.Index([101, 102, 103, 104], name="cell_id"),
    )
    out = score_cells(cells, truth, ("estimate",))
    assert out["n_cells"] == 2  # 102 has nobody, 104 is not in the truth
    assert out["estimate"]["all"] == {"n": 2.0}


def test_read_truth_names_the_missing_file(tmp_path: Path) -> None:
    _write_truth(tmp_path, ADMIN_CSV)
    (tmp_path / "households.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"households\.parquet"):
        read_truth(tmp_path)


def test_read_truth_numeric_column_with_a_blank(tmp_path: Path) -> None:
    _write_truth(
        tmp_path,
        "admin2_id,population,poverty_rate\nA1,1200,0.25\nA2,0,\nA3,800,0.5\n",
    )
    admin = read_truth(tmp_path)["admin"]
    assert pd.api.types.is_numeric_dtype(admin["poverty_rate"])
    assert admin.loc["A3", "poverty_rate"] == pytest.approx(0.5)
    assert np.isnan(admin.loc["A2", "poverty_rate"])
