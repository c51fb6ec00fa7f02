"""Field feedback scored against the map it was posted on (``monitor --feedback``)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from povertymap.config.monitoring import MonitoringSettings
from povertymap.mlops.drift import feedback_error, feedback_points


def _cells() -> gpd.GeoDataFrame:
    """Four 1 km cells in UTM 33N with known estimates and poverty rates."""
    boxes = [shapely.box(500_000 + 1000 * i, 0, 501_000 + 1000 * i, 1000) for i in range(4)]
    return gpd.GeoDataFrame(
        {"estimate": [-1.0, 0.0, 1.0, 2.0], "poverty_rate": [0.8, 0.5, 0.2, 0.1]},
        geometry=boxes,
        crs="EPSG:32633",
    )


def _points(cells: gpd.GeoDataFrame, which: list[int]) -> pd.DataFrame:
    """WGS 84 points inside the cells ``which`` (one per entry)."""
    centres = cells.geometry.centroid.iloc[which].to_crs("EPSG:4326")
    return pd.DataFrame({"lon": centres.x.to_numpy(), "lat": centres.y.to_numpy()})


def test_feedback_error_scores_each_point_against_its_cell() -> None:
    cells = _cells()
    which = [i % 4 for i in range(24)]
    fb = _points(cells, which).assign(
        value=cells["estimate"].to_numpy()[which] + 0.5,
        poor=[bool(i % 2) for i in range(24)],
    )
    off = pd.DataFrame({"lon": [0.0], "lat": [60.0], "value": [1.0], "poor": [True]})
    out = feedback_error(cells, pd.concat([fb, off]), cv_rmse=0.25)
    assert (out["n"], out["n_on_map"], out["n_off_map"], out["n_values"]) == (25, 24, 1, 24)
    assert out["rmse"] == pytest.approx(0.5) and out["bias"] == pytest.approx(-0.5)
    assert out["rmse_ratio"] == pytest.approx(2.0) and out["drift"] is True
    rate = cells["poverty_rate"].to_numpy()[which]
    poor = np.array([i % 2 for i in range(24)], float)
    assert out["brier"] == pytest.approx(np.mean((poor - rate) ** 2))
    assert out["observed_poor_share"] == pytest.approx(0.5)
    assert out["mapped_poor_share"] == pytest.approx(rate.mean())


def test_too_little_feedback_reports_but_does_not_flag() -> None:
    cells = _cells()
    fb = _points(cells, [0, 1, 2]).assign(value=[5.0, 5.0, 5.0], poor=[None, None, None])
    out = feedback_error(cells, fb, cv_rmse=0.25, settings=MonitoringSettings(min_feedback=20))
    assert out["rmse_ratio"] > 10 and out["drift"] is False
    assert "too few" in out["note"]
    assert out["n_poor"] == 0 and "brier" not in out


@pytest.mark.slow
def test_monitor_scores_the_feedback_the_service_stored(
    champion_run: Path, rounds: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("sqlalchemy")
    from sqlalchemy import insert
    from typer.testing import CliRunner

    from povertymap.cli import app
    from povertymap.rundir import open_run
    from povertymap.serve.store import connect, feedback, now_iso

    run = open_run(champion_run)
    cells = run.cells()
    name = str(run.config_data()["name"])
    url = f"sqlite:///{tmp_path / 'service.db'}"
    picks = list(range(0, len(cells), max(1, len(cells) // 30)))[:30]
    points = _points(cells, picks)
    truth = cells["estimate"].to_numpy()[picks] - 1.0  # the map is 1.0 too high here
    with connect(url).begin() as conn:
        for (lon, lat), value in zip(points.to_numpy(), truth, strict=True):
            conn.execute(
                insert(feedback).values(
                    time=now_iso(), map=name, lon=lon, lat=lat, value=value, source="field"
                )
            )
        conn.execute(insert(feedback).values(time=now_iso(), map="other", lon=0, lat=0, source="x"))
    out = tmp_path / "drift"
    result = CliRunner().invoke(
        app,
        ["monitor", str(champion_run), str(rounds["round1"]), "--out", str(out), "--feedback", url],
    )
    assert result.exit_code == 0, result.stderr
    assert "feedback rmse 1.000 (n 30)" in result.stdout
    doc = json.loads((out / "drift.json").read_text())
    fb = doc["labels"]["feedback"]
    assert fb["n"] == 30 and fb["bias"] == pytest.approx(1.0)
    cv_rmse = run.metrics()["cv"]["rmse"]
    assert fb["rmse_ratio"] == pytest.approx(1.0 / cv_rmse)
    assert doc["drift"] is (fb["rmse_ratio"] >= 1.25)
    assert doc["gauges"]["feedback_rmse_ratio"] == pytest.approx(fb["rmse_ratio"])
    assert "Field feedback: 30 points" in (out / "drift.md").read_text()


def test_the_gate_refuses_a_map_significantly_further_from_the_feedback() -> None:
    from povertymap.mlops.retrain import _feedback_check, gate

    rng = np.random.default_rng(0)
    cells = _cells()
    which = [i % 4 for i in range(40)]
    fb = _points(cells, which).assign(value=cells["estimate"].to_numpy()[which], poor=None)

    def points(noise: float) -> pd.DataFrame:
        """The feedback against a map whose estimates are off by about ``noise``."""
        noisy = cells.assign(estimate=cells["estimate"] + rng.normal(0, noise, 4))
        return feedback_points(noisy, fb)

    champion = points(0.1)
    ok, reason = _feedback_check(champion, points(1.0), min_feedback=20, alpha=0.05)
    assert ok is False and reason.startswith("feedback worse: rmse")
    assert _feedback_check(champion, champion, min_feedback=20, alpha=0.05)[0] is True
    assert _feedback_check(champion, points(1.0), min_feedback=50, alpha=0.05) == (
        True,
        "feedback: 40 values on both maps, fewer than 50; not judged",
    )
    assert _feedback_check(None, points(1.0), min_feedback=20, alpha=0.05)[0] is True
    scores = {"r2": 0.5, "rmse": 0.4, "spearman": 0.7, "spearman_p_one_sided": 1e-6}
    champ = {**scores, "r2": 0.3, "rmse": 0.5}
    promoted, checks, reasons = gate(
        champ, scores, (True, "cov"), (True, "disc"), min_gain=0.0, feedback=(ok, reason)
    )
    assert promoted is False and checks["feedback"] is False and reasons[-1] == reason
