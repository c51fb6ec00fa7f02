"""Run directories: atomic publication, manifest digests, `povertymap info`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from povertymap.cli import app
from povertymap.errors import RunDirError
from povertymap.rundir import RunDirectory, new_run_id, write_run


def test_run_is_published_with_digests(tmp_path: Path) -> None:
    src = tmp_path / "input.csv"
    src.write_text("a,b\n1,2\n")
    with write_run(tmp_path / "runs", "r1", config_text="name: x\n", inputs={"survey": src}) as d:
        (d / "metrics.json").write_text(
            json.dumps({"cv": {"scheme": "spatial", "folds": 5, "r2": 0.5, "spearman": 0.7}})
        )
        (d / "figures").mkdir()
        (d / "figures" / "a.png").write_bytes(b"png")
        assert not (tmp_path / "runs" / "r1").exists()  # not visible while being written
    run = RunDirectory.open(tmp_path / "runs" / "r1")
    m = run.manifest
    assert m["inputs"]["survey"]["sha256"] == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    assert m["config_sha256"] == hashlib.sha256(b"name: x\n").hexdigest()
    assert set(m["files"]) == {"config.yaml", "metrics.json", "figures/a.png"}
    assert m["files"]["figures/a.png"]["sha256"] == hashlib.sha256(b"png").hexdigest()
    assert run.verify() == []
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["r1"]


def test_failed_run_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    with pytest.raises(RuntimeError), write_run(root, "r1", config_text="", inputs={}) as d:
        (d / "half.parquet").write_bytes(b"x")
        raise RuntimeError("stage failed")
    assert list(root.iterdir()) == []


def test_existing_run_is_not_overwritten(tmp_path: Path) -> None:
    with write_run(tmp_path, "r1", config_text="", inputs={}):
        pass
    with (
        pytest.raises(RunDirError, match="already exists"),
        write_run(tmp_path, "r1", config_text="", inputs={}),
    ):
        pass


def test_run_id_is_sortable_and_traceable() -> None:
    from datetime import UTC, datetime

    rid = new_run_id("demo", "name: demo\n", now=datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    assert rid == "demo-20261130T120000Z-" + hashlib.sha256(b"name: demo\n").hexdigest()[:6]


def test_info_reports_and_verifies(tmp_path: Path) -> None:
    with write_run(tmp_path, "r1", config_text="name: x\n", inputs={}) as d:
        (d / "metrics.json").write_text(
            json.dumps({"cv": {"scheme": "spatial", "folds": 5, "r2": 0.512, "spearman": 0.7}})
        )
    result = CliRunner().invoke(app, ["info", str(tmp_path / "r1")])
    assert result.exit_code == 0, result.stderr
    assert "r2 0.512" in result.stdout and "all files match" in result.stdout
    (tmp_path / "r1" / "metrics.json").write_text("{}")
    result = CliRunner().invoke(app, ["info", str(tmp_path / "r1")])
    assert result.exit_code == 2 and "metrics.json (changed)" in result.stderr


def test_info_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["info", str(tmp_path)])
    assert result.exit_code == 2 and "manifest.json" in result.stderr
