"""Fixtures of the lifecycle tests: two survey rounds of a small country, a light model.

The country is the tiny preset, denser (250 people per km²) and surveyed in 160 clusters,
so that a model has skill to measure (spatial CV r2 about 0.4 with ridge, against about 0
on the 60 clusters of the plain tiny preset). The study configs keep the tabular feature
blocks only (no CNN, no random features), so a full run takes seconds; the lifecycle code
treats every block alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("POVERTYMAP_TRACKING_URI", None)

LIGHT = {
    "features": {"blocks": ["nl", "pop", "osm", "settle"]},
    "model": {"name": "ridge"},
}


def light_study(study: Path, name: str = "study-light.yaml", **changes: object) -> Path:
    """A copy of ``study`` beside it with the light feature set and model."""
    data = yaml.safe_load(study.read_text())
    data.update(LIGHT)
    data.update(changes)
    out = study.parent / name
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


@pytest.fixture(scope="session")
def rounds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Round 1 and round 2 (recalibrated lights) of the tiny country, light configs."""
    from povertymap.world import PRESETS, generate

    spec = PRESETS["tiny"].with_(population_density=250.0, n_clusters=160)
    root = tmp_path_factory.mktemp("rounds")
    one = generate(spec, seed=7, out=root / "round1")
    two = generate(spec, seed=7, out=root / "round2", survey_round=2, lights_gain=1.6)
    return {
        "round1": light_study(one),
        "round2": light_study(two),
        "truth1": one.parent / "truth",
        "truth2": two.parent / "truth",
    }


@pytest.fixture(scope="session")
def champion_run(rounds: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of round 1 (not tracked), in its own runs folder."""
    from povertymap.io.configfile import read_config
    from povertymap.pipeline import run

    runs = tmp_path_factory.mktemp("runs")
    return run(read_config(rounds["round1"]), runs=runs, truth=rounds["truth1"]).path


@pytest.fixture(autouse=True)
def _no_tracking_uri_leaks() -> object:
    """``mlflow.set_tracking_uri`` in a test sets ``MLFLOW_TRACKING_URI``; unset it after."""
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
