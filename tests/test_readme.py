"""The README's results are generated from recorded metrics, never edited by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "readme_tables", ROOT / "scripts" / "readme_tables.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_results_are_the_recorded_ones() -> None:
    script = _script()
    assert script.main(["check"]) == 0, "run `python scripts/readme_tables.py write`"


def test_a_changed_figure_is_found(tmp_path: Path) -> None:
    script = _script()
    results = script.load()
    text = (ROOT / "README.md").read_text()
    r2 = results["lsms-folds"]["cv"]["r2"]
    assert f"**r² {r2:.3f}**" in text
    results["lsms-folds"]["cv"]["r2"] = r2 + 0.01
    assert script.render(text, results) != text
    with pytest.raises(SystemExit, match="lacks the markers"):
        script.render("no markers here", results)


def test_every_recorded_result_names_its_command() -> None:
    script = _script()
    for name, command in script.RESULTS.items():
        metrics = json.loads((script.RESULTS_DIR / f"{name}.json").read_text())
        assert "cv" in metrics, name
        assert command.startswith("povertymap "), name


def test_every_file_the_readme_links_to_exists() -> None:
    import re

    text = (ROOT / "README.md").read_text()
    targets = set(re.findall(r"\]\(((?!https?://|#)[^)#\s]+)", text))
    targets |= {t.rstrip("/") for t in re.findall(r"`((?:docs|notebooks|deploy)/[^`\s]*)`", text)}
    assert "docs/user-manual.md" in targets  # the per-user lines are read
    missing = sorted(t for t in targets if not (ROOT / t).exists())
    assert not missing, f"README links to missing files: {missing}"
