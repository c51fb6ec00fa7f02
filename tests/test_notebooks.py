"""The notebooks under notebooks/ run, say what they claim, and are stored clean.

Every ``notebooks/**/*.ipynb`` is executed with nbclient on this interpreter's
``python3`` kernel (jupyter_client starts ``python`` kernels with ``sys.executable``), with
``POVERTYMAP_NOTEBOOK_OUT`` pointing at a temporary folder, the only place a notebook
writes. Each notebook's last code cell prints one JSON line of its figures; the test
parses it and checks the values (finite, in range, and the notebook's own claim where it
makes one). Stored notebooks carry no outputs and no execution counts.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
)
IDS = [str(p.relative_to(ROOT / "notebooks")) for p in NOTEBOOKS]
#: Wall-clock limit per cell (the notebooks take about a minute on 2 cores in all).
CELL_TIMEOUT_S = 300


def test_notebooks_exist() -> None:
    folders = {p.parent.name for p in NOTEBOOKS}
    assert {"exploratory", "model_development", "documentation"} <= folders


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_without_outputs(path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a notebook without code"
    for i, cell in enumerate(code):
        assert cell.get("outputs") == [], f"code cell {i} has stored outputs"
        assert cell.get("execution_count") is None, f"code cell {i} has an execution count"


def _finite_leaves(node: Any, where: str = "") -> list[str]:
    """Paths of numeric leaves that are not finite."""
    if isinstance(node, dict):
        return [b for k, v in node.items() for b in _finite_leaves(v, f"{where}.{k}")]
    if isinstance(node, list):
        return [b for i, v in enumerate(node) for b in _finite_leaves(v, f"{where}[{i}]")]
    if isinstance(node, float) and not math.isfinite(node):
        return [where]
    return []


def _between(x: float, lo: float, hi: float) -> bool:
    return math.isfinite(x) and lo <= x <= hi


def check_analyst(s: dict[str, Any], out: Path) -> None:
    assert s["n_cells"] > 100 and s["n_districts"] >= 2
    assert _between(s["cv_r2"], 0.0, 1.0)  # the denser tiny world has skill to show
    assert _between(s["truth_r2"], 0.2, 1.0)
    assert _between(s["cell_coverage"], 0.7, 1.0)
    assert _between(s["national_poverty_rate"], 0.05, 0.95)
    assert _between(s["rural_share_of_poor"], 0.0, 1.0)
    assert s["published_districts"] == s["n_districts"]  # default thresholds publish all
    assert s["strict_suppressed"] >= 1  # the stricter rule withholds the least precise
    assert s["ministry_rows"] == s["n_districts"]
    import pandas as pd

    files = [Path(f) for f in s["ministry_files"]]
    assert all(f.is_relative_to(out) and f.is_file() for f in files)
    table = pd.read_csv(out / "ministry_districts.csv")
    assert len(table) == s["n_districts"]
    for column in ("district", "population", "poverty_rate", "poverty_rate_lower", "publish"):
        assert column in table
    rates = table["poverty_rate"].dropna()
    assert len(rates) and rates.between(0, 1).all()
    assert (table["poverty_rate_lower"] <= table["poverty_rate_upper"]).all()


def check_ml_engineer(s: dict[str, Any], out: Path) -> None:
    assert s["same_folds"] is True and s["default_reproduced"] is True
    assert set(s["cv_r2"]) == {"default ridge", "lightgbm", "ridge + logdist"}
    assert all(_between(v, -1.0, 1.0) for v in s["cv_r2"].values())
    assert _between(s["cv_r2"]["default ridge"], 0.1, 1.0)
    assert all(0 <= v <= 5 for v in s["fold_wins_vs_default"].values())
    assert s["mlflow_runs"] == 3 and s["best_in_mlflow"]
    assert s["tracking_uri"] == f"sqlite:///{out / 'mlflow.db'}"
    assert (out / "mlflow.db").is_file()


def check_lights_disagree(s: dict[str, Any], out: Path) -> None:
    assert _between(s["dark_share"], 0.05, 0.95)
    assert s["n_cells"] > 100
    for group in ("dark_not_poor", "lit_but_poor"):
        g = s[group]
        assert g["people"] > 0
        assert _between(g["map_right"], 0.0, 1.0)
        assert math.isclose(g["map_right"] + g["lights_right"], 1.0)
    assert all(_between(v, 0.0, 1.0) for v in s["classed_as_truth"].values())
    # the notebook's insight: where the lights are off, the map ranks and they cannot
    dark = s["truth_r2_dark"]
    assert dark["map"] > dark["nightlights only"]
    assert s["spearman_dark"]["map"] > s["spearman_dark"]["nightlights only"]


CHECKS: dict[str, Callable[[dict[str, Any], Path], None]] = {
    "analyst": check_analyst,
    "ml_engineer": check_ml_engineer,
    "lights_disagree": check_lights_disagree,
}


def _summary(nb: Any) -> dict[str, Any]:
    """The JSON line the last code cell printed."""
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert lines, "the last code cell printed no JSON line of figures"
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("POVERTYMAP_NOTEBOOK_OUT", str(out))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("POVERTYMAP_TRACKING_URI", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend, as for users
    nb = nbformat.read(path, as_version=4)
    before = sorted((ROOT / "notebooks").rglob("*"))
    started = time.monotonic()
    nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    seconds = time.monotonic() - started
    print(f"{path.name}: {seconds:.0f} s")
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "display_data" and "image/png" in o.get("data", {})
    ]
    assert images, "no figure was drawn"
    summary = _summary(nb)
    assert not _finite_leaves(summary), _finite_leaves(summary)
    CHECKS.get(path.stem, lambda s, o: None)(summary, out)
    after = sorted((ROOT / "notebooks").rglob("*"))
    assert after == before, "the notebook wrote into the repository"
    assert os.environ["POVERTYMAP_NOTEBOOK_OUT"] == str(out)
