"""Run directories: atomic publication, manifest digests, relative paths, `povertymap info`."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from povertymap.cli import app
from povertymap.config import StudyAreaConfig, config_from_dict
from povertymap.errors import RunDirError
from povertymap.io.configfile import read_config
from povertymap.rundir import new_run_id, open_run, write_run


def _config(folder: Path) -> StudyAreaConfig:
    """A config whose one input is ``folder/data/input.csv``."""
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "input.csv").write_text("cluster_id,lon,lat,y\nk1,30,-1,2\n")
    data = {"name": "x", "survey": {"clusters": {"path": "data/input.csv", "target": "y"}}}
    return config_from_dict(data, base_dir=folder)


def test_run_is_published_with_digests(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with write_run(tmp_path / "runs", "r1", kind="evaluate", cfg=cfg) as d:
        (d / "metrics.json").write_text(
            json.dumps({"cv": {"scheme": "spatial", "folds": 5, "r2": 0.5, "spearman": 0.7}})
        )
        (d / "figures").mkdir()
        (d / "figures" / "a.png").write_bytes(b"png")
        assert not (tmp_path / "runs" / "r1").exists()  # not visible while being written
    run = open_run(tmp_path / "runs" / "r1")
    m = run.manifest
    assert run.kind == "evaluate" and m["schema_version"] == 2
    data = (tmp_path / "data" / "input.csv").read_bytes()
    assert m["inputs"]["survey.clusters"]["sha256"] == hashlib.sha256(data).hexdigest()
    # inputs are stored relative to the run directory, and so is the resolved config
    assert m["inputs"]["survey.clusters"]["path"] == "../../data/input.csv"
    config_text = (run.path / "config.yaml").read_bytes()
    assert m["config_sha256"] == hashlib.sha256(config_text).hexdigest()
    assert set(m["files"]) == {"config.yaml", "metrics.json", "figures/a.png"}
    assert m["files"]["figures/a.png"]["sha256"] == hashlib.sha256(b"png").hexdigest()
    assert run.verify() == [] and run.metrics()["cv"]["r2"] == 0.5
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["r1"]


def test_resolved_config_is_relative_and_reads_back(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "project")
    with write_run(tmp_path / "project" / "runs", "r1", kind="run", cfg=cfg):
        pass
    text = (tmp_path / "project" / "runs" / "r1" / "config.yaml").read_text()
    assert str(tmp_path) not in text
    assert yaml.safe_load(text)["survey"]["clusters"]["path"] == "../../data/input.csv"
    # the run and its inputs moved together still find each other
    shutil.move(tmp_path / "project", tmp_path / "moved")
    again = open_run(tmp_path / "moved" / "runs" / "r1").config()
    assert again.survey.clusters.path == (tmp_path / "moved" / "data" / "input.csv").resolve()
    assert again.model_dump(exclude={"base_dir", "survey"}) == cfg.model_dump(
        exclude={"base_dir", "survey"}
    )
    assert read_config(tmp_path / "moved" / "runs" / "r1" / "config.yaml").name == "x"


def test_failed_run_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    cfg = _config(tmp_path)
    with pytest.raises(RuntimeError), write_run(root, "r1", kind="run", cfg=cfg) as d:
        (d / "half.parquet").write_bytes(b"x")
        raise RuntimeError("stage failed")
    assert list(root.iterdir()) == []


def test_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with write_run(tmp_path / "runs", "r1", kind="run", cfg=cfg):
        pass
    with (
        pytest.raises(RunDirError, match="already exists"),
        write_run(tmp_path / "runs", "r1", kind="run", cfg=cfg),
    ):
        pass


def test_readers_refuse_what_the_run_lacks(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with write_run(tmp_path / "runs", "r1", kind="evaluate", cfg=cfg):
        pass
    run = open_run(tmp_path / "runs" / "r1")
    with pytest.raises(RunDirError, match="has no cells.parquet"):
        run.cells()
    with pytest.raises(RunDirError, match="has no model/model.json"):
        run.model()
    assert run.plan() is None and run.truth is None


def test_a_newer_layout_is_refused(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with write_run(tmp_path / "runs", "r1", kind="run", cfg=cfg):
        pass
    path = tmp_path / "runs" / "r1" / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 99}))
    with pytest.raises(RunDirError, match="layout version 99"):
        open_run(path.parent)


def test_run_id_is_sortable_and_traceable() -> None:
    from datetime import UTC, datetime

    rid = new_run_id("demo", "name: demo\n", now=datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    assert rid == "demo-20261130T120000Z-" + hashlib.sha256(b"name: demo\n").hexdigest()[:6]


def test_info_reports_and_verifies(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with write_run(tmp_path / "runs", "r1", kind="evaluate", cfg=cfg) as d:
        (d / "metrics.json").write_text(
            json.dumps({"cv": {"scheme": "spatial", "folds": 5, "r2": 0.512, "spearman": 0.7}})
        )
    run_dir = tmp_path / "runs" / "r1"
    result = CliRunner().invoke(app, ["info", str(run_dir)])
    assert result.exit_code == 0, result.stderr
    assert "r2 0.512" in result.stdout and "all files match" in result.stdout
    assert "evaluate" in result.stdout
    (run_dir / "metrics.json").write_text("{}")
    result = CliRunner().invoke(app, ["info", str(run_dir)])
    assert result.exit_code == 2 and "metrics.json (changed)" in result.stderr


def test_info_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["info", str(tmp_path)])
    assert result.exit_code == 2 and "manifest.json" in result.stderr
