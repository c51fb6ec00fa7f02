"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builders import TinyStudy

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def tiny(tmp_path: Path) -> TinyStudy:
    """The files of a tiny study area in a fresh folder."""
    return TinyStudy(tmp_path / "tiny")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulator's tiny country (generated once per session); returns its study.yaml."""
    from povertymap.world import generate

    return generate("tiny", seed=7, out=tmp_path_factory.mktemp("world") / "tiny")
