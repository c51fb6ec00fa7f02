"""The DVC pipeline (``povertymap dvc``) on the tiny country, in a temporary git repository.

One real ``dvc repro`` of the six stages, checked against a direct library run of the same
config; a second ``dvc repro`` runs nothing; a changed model parameter reruns train,
estimate, target and report and leaves validate and features (their dvc.lock entries) alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from povertymap.cli import app

BIN = Path(sys.executable).parent
DVC = BIN / "dvc"
#: The light feature set and model of the lifecycle tests (tests/mlops/conftest.py).
LIGHT = {"features": {"blocks": ["nl", "pop", "osm", "settle"]}, "model": {"name": "ridge"}}
STAGES = ["validate", "features", "train", "estimate", "target", "report"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DVC.exists(), reason="dvc is not installed in the venv"),
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CI="true",
        DVC_NO_ANALYTICS="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.org",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.org",
    )
    return env


def _sh(repo: Path, *args: str | Path) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=repo,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _dvc(repo: Path, *args: str) -> str:
    return _sh(repo, DVC, *args)


def _ran(output: str) -> list[str]:
    """The stages a ``dvc repro`` output says it ran."""
    return [s for s in STAGES if f"Running stage '{s}'" in output]


def _numbers(node: object, prefix: str = "") -> dict[str, float]:
    """The numbers of a nested mapping by dotted key."""
    if isinstance(node, dict):
        out: dict[str, float] = {}
        for key, value in node.items():
            out.update(_numbers(value, f"{prefix}{key}."))
        return out
    if isinstance(node, bool) or not isinstance(node, int | float):
        return {}
    return {prefix.rstrip("."): float(node)}


def _lock(repo: Path) -> dict[str, object]:
    stages: dict[str, object] = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return stages


@pytest.fixture(scope="module")
def repo(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC repository holding a copy of the tiny country, inputs ``dvc add``-ed."""
    root = tmp_path_factory.mktemp("dvcrepo") / "tiny"
    shutil.copytree(tiny_world.parent, root, ignore=shutil.ignore_patterns("truth"))
    data = yaml.safe_load((root / "study.yaml").read_text())
    data.update(LIGHT)
    (root / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    inputs = sorted(p.name for p in root.iterdir() if p.is_file() and p.name != "study.yaml")
    _sh(root, "git", "init", "-q")
    _sh(root, "git", "config", "user.name", "test")
    _sh(root, "git", "config", "user.email", "test@example.org")
    _dvc(root, "init", "-q")
    _dvc(root, "config", "core.check_update", "false")
    _dvc(root, "config", "core.analytics", "false")
    _dvc(root, "add", "-q", *inputs)
    _sh(root, "git", "add", "-A")
    _sh(root, "git", "commit", "-q", "-m", "inputs")
    return root


def test_dvc_pipeline_repro_is_the_run_and_reruns_only_what_changed(
    repo: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["dvc", str(repo / "study.yaml")])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    assert list(pipeline["stages"]) == STAGES
    assert pipeline["stages"]["train"]["params"] == ["features", "model", "cv", "estimate"]
    assert pipeline["stages"]["features"]["params"] == ["features"]
    assert "clusters.csv" in pipeline["stages"]["features"]["deps"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert set(params) == {"features", "model", "cv", "estimate", "targeting"}
    assert params["model"]["name"] == "ridge"
    again = CliRunner().invoke(app, ["dvc", str(repo / "study.yaml")])
    assert again.exit_code == 2 and "exists already" in again.output  # edits are kept

    first = _dvc(repo, "repro")
    assert _ran(first) == STAGES, first
    work = repo / ".povertymap"
    for rel in ("plan.json", "features.joblib", "model/model.json", "cells.parquet",
                "admin.csv", "metrics.json", "targeting.csv", "run/report.html",
                "run/manifest.json", "run/model_card.md", "run/map.tif"):  # fmt: skip
        assert (work / rel).is_file(), rel

    # the pipeline's figures are a direct run's figures
    from povertymap.io.configfile import read_config
    from povertymap.pipeline import run
    from povertymap.rundir import open_run

    done = run(read_config(repo / "study.yaml"), runs=tmp_path / "runs")
    direct = done.metrics
    metrics = json.loads((work / "metrics.json").read_text())
    for key in ("r2", "spearman", "rmse"):
        assert metrics["cv"][key] == pytest.approx(direct["cv"][key], rel=1e-9), key
    assert metrics["n_cells"] == direct["n_cells"]
    ours, theirs = _numbers(metrics["estimate"]), _numbers(direct["estimate"])
    assert ours.keys() == theirs.keys() and len(ours) > 10
    assert ours == pytest.approx(theirs, rel=1e-9, nan_ok=True)
    dvc_run = open_run(work / "run")
    assert dvc_run.verify() == []
    cells, direct_cells = dvc_run.cells(), open_run(done.path).cells()
    for column in ("estimate", "lower", "upper", "poverty_rate"):
        np.testing.assert_allclose(cells[column], direct_cells[column], rtol=1e-9)
    assert len(dvc_run.admin()) == len(open_run(done.path).admin())
    plan = json.loads((work / "targeting.json").read_text())["targeting"]
    assert plan["units_selected"] == direct["targeting"]["units_selected"]
    assert plan["expected_poor_covered"] == pytest.approx(
        direct["targeting"]["expected_poor_covered"], rel=1e-9
    )
    shown = json.loads(_dvc(repo, "metrics", "show", "--json"))
    assert "cv" in json.dumps(shown)

    # nothing changed: nothing runs, and dvc status says so
    second = _dvc(repo, "repro")
    assert _ran(second) == [], second
    assert json.loads(_dvc(repo, "status", "--json")) == {}

    # a model parameter: train and after, never validate or features
    before = _lock(repo)
    params["model"]["params"] = {"alphas": [1000.0]}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    diff = json.loads(_dvc(repo, "params", "diff", "--json"))
    assert "model.params.alphas" in json.dumps(diff)
    status = json.loads(_dvc(repo, "status", "--json"))
    assert set(status) == {"train"}  # the stage whose own params changed
    third = _dvc(repo, "repro")
    assert _ran(third) == ["train", "estimate", "target", "report"], third
    after = _lock(repo)
    assert after["validate"] == before["validate"]
    assert after["features"] == before["features"]
    assert after["train"] != before["train"]
    changed = json.loads((work / "metrics.json").read_text())
    assert changed["cv"]["r2"] != pytest.approx(metrics["cv"]["r2"], rel=1e-9)
    assert json.loads(_dvc(repo, "status", "--json")) == {}
