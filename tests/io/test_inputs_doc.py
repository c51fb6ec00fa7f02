"""The config snippets of docs/inputs.md are valid config (keys and types)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from povertymap.config import BoundariesConfig, RasterConfig, SurveyConfig, VectorConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "inputs.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_every_source_has_a_snippet() -> None:
    text = DOC.read_text(encoding="utf-8")
    for source in ("DHS", "LSMS", "WorldPop", "VIIRS", "GHSL", "Sentinel-2", "Landsat",
                   "OpenStreetMap", "GADM", "geoBoundaries"):  # fmt: skip
        assert f"### {source}" in text
    assert len(BLOCKS) >= 11


@pytest.mark.parametrize("block", BLOCKS)
def test_snippet_validates(block: str) -> None:
    data: dict[str, Any] = yaml.safe_load(block)
    for key, value in data.items():
        if key == "survey":
            SurveyConfig.model_validate(value)
        elif key == "boundaries":
            BoundariesConfig.model_validate(value)
        elif key == "vectors":
            for layer in value.values():
                VectorConfig.model_validate(layer)
        elif key == "rasters":
            for raster in value.values():
                RasterConfig.model_validate(raster)
        else:
            raise AssertionError(f"unexpected top-level key {key!r} in docs/inputs.md")
