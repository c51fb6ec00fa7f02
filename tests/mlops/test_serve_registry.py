"""The service serving a registered model: it follows the alias, swaps hot, and exports
the drift of the model it serves.

A real MLflow sqlite store, two runs of the tiny country registered as versions 1 and 2,
and the service built as ``povertymap serve --model tiny@champion`` builds it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from povertymap.cli import app as cli
from povertymap.io.configfile import read_config
from povertymap.rundir import open_run

pytestmark = pytest.mark.slow

pytest.importorskip("mlflow")
pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from povertymap.serve.app import build_app  # noqa: E402
from povertymap.serve.maps import model_version  # noqa: E402
from povertymap.serve.settings import ServeSettings  # noqa: E402
from povertymap.serve.watch import ModelRef  # noqa: E402


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The value of sample ``name{labels}`` in exposition ``text`` (None if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if "{" in key:
            metric, _, rest = key.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(",")))
        else:
            metric, got = key, ""
        if metric == name and got == want:
            return float(value)
    return None


@pytest.fixture()
def store(champion_run: Path, rounds: dict[str, Path], tmp_path: Path) -> dict[str, object]:
    """Versions 1 (the champion run) and 2 (a second run of round 1) of ``tiny``."""
    from povertymap.mlops.registry import promote, register
    from povertymap.pipeline import run

    runs = tmp_path / "runs"
    uri = f"sqlite:///{runs / 'mlflow.db'}"
    second = run(read_config(rounds["round1"]), runs=runs).path
    register(champion_run, "tiny", uri=uri)
    register(second, "tiny", uri=uri)
    promote("tiny", 1, uri=uri)
    return {"runs": runs, "uri": uri, "one": champion_run, "two": second}


def _app(store: dict[str, object], tmp_path: Path, **settings: object) -> object:
    cfg = ServeSettings(
        database_url=f"sqlite:///{tmp_path / 'service.db'}", log_requests=False, **settings
    )
    ref = ModelRef("tiny@champion", str(store["uri"]), Path(str(store["runs"])))
    return build_app([], cfg, [ref])


def test_served_model_follows_its_alias_and_reports_each_poll(
    store: dict[str, object], tmp_path: Path
) -> None:
    from povertymap.mlops.registry import promote, register, rollback

    uri = str(store["uri"])
    one, two = (model_version(open_run(Path(str(store[k])))) for k in ("one", "two"))
    app = _app(store, tmp_path)
    client = TestClient(app)
    watcher = app.state.watcher  # type: ignore[attr-defined]
    (name,) = client.get("/readyz").json()["maps"]
    assert client.get("/readyz").json()["maps"] == {name: one}

    assert watcher.check() == {name: "unchanged"}
    promote("tiny", 2, uri=uri)
    assert watcher.check() == {name: "swapped"}
    answer = client.get(f"/v1/maps/{name}")
    assert answer.headers["X-Model-Version"] == f"{name}={two}"
    rollback("tiny", uri=uri)
    assert watcher.check() == {name: "swapped"}
    assert client.get("/readyz").json()["maps"] == {name: one}

    # a version whose run directory is gone: the poll fails, the old version serves on
    # (a copy of version 1's run, which is not in the runs folder either)
    gone = tmp_path / "gone" / open_run(Path(str(store["one"]))).run_id
    shutil.copytree(Path(str(store["one"])), gone)
    register(gone, "tiny", uri=uri)
    shutil.rmtree(gone)
    promote("tiny", 3, uri=uri)
    assert watcher.check() == {name: "failed"}
    assert client.get("/readyz").json()["maps"] == {name: one}

    text = client.get("/metrics").text
    checks = {
        outcome: _metric(text, "povertymap_registry_checks_total", map=name, outcome=outcome)
        for outcome in ("unchanged", "swapped", "failed")
    }
    assert checks == {"unchanged": 1.0, "swapped": 2.0, "failed": 1.0}
    assert _metric(text, "povertymap_model_swaps_total", map=name, outcome="swapped") == 2.0
    assert _metric(text, "povertymap_model_info", map=name, version=one) == 1.0
    assert _metric(text, "povertymap_model_info", map=name, version=two) is None


def test_the_watcher_thread_swaps_within_a_poll_and_drift_gauges_follow_the_model(
    store: dict[str, object], rounds: dict[str, Path], tmp_path: Path
) -> None:
    from povertymap.mlops.drift import monitor
    from povertymap.mlops.registry import promote

    drift_dir = tmp_path / "drift"
    monitor(Path(str(store["one"])), read_config(rounds["round2"]), out=drift_dir / "round2")
    two = model_version(open_run(Path(str(store["two"]))))
    app = _app(store, tmp_path, drift_dir=str(drift_dir), registry_poll_seconds=0.2)
    with TestClient(app) as client:  # the lifespan starts the watcher
        (name,) = client.get("/readyz").json()["maps"]
        text = client.get("/metrics").text
        assert _metric(text, "povertymap_drift_detected", map=name) == 1.0  # round 2's lights
        assert _metric(text, "povertymap_drift_feature_psi_max", map=name) > 0.25  # type: ignore[operator]
        assert _metric(text, "povertymap_drift_report_timestamp_seconds", map=name) > 0  # type: ignore[operator]

        promote("tiny", 2, uri=str(store["uri"]))
        deadline = time.monotonic() + 30
        while client.get("/readyz").json()["maps"][name] != two:
            assert time.monotonic() < deadline, "the alias move was not followed"
            time.sleep(0.1)
        # the new model has no drift report: the old model's gauges are gone, not kept
        text = client.get("/metrics").text
        assert _metric(text, "povertymap_drift_detected", map=name) is None
    assert app.state.watcher._thread is None  # type: ignore[attr-defined]  # stopped with the app


def test_serve_refuses_an_unknown_model_before_starting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["serve", "--model", "nothing@champion", "--runs", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "no registered model 'nothing'" in result.stderr
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2 and "--model NAME@ALIAS" in result.stderr


def test_monitor_takes_a_registered_model(
    store: dict[str, object], rounds: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "drift"
    args = ["monitor", "tiny@champion", str(rounds["round2"]), "--runs", str(store["runs"])]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    doc = json.loads((out / "drift.json").read_text())
    assert doc["model_run"] == open_run(Path(str(store["one"]))).run_id  # version 1 holds it
    result = CliRunner().invoke(cli, [*args[:1], "tiny@nothing", *args[2:], "--out", str(out)])
    assert result.exit_code == 2 and "no alias 'nothing'" in result.stderr
