"""Synthetic countries generated once per test session.

``world_tiny`` is fast (a few seconds) and used by most tests; ``world_demo`` (about 100 x
80 km, 400 clusters) backs the statistical property tests, which are marked ``slow``.
Both return the folder holding ``study.yaml`` and ``truth/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from povertymap.world import generate


@pytest.fixture(scope="session")
def world_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world-tiny") / "tiny"
    generate("tiny", seed=7, out=out)
    return out


@pytest.fixture(scope="session")
def world_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world-demo") / "demo"
    generate("demo", seed=7, out=out)
    return out
