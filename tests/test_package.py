"""Package-level promises: light import, version, CLI help with examples."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from povertymap.cli import app


def test_import_is_light() -> None:
    code = (
        "import sys, povertymap, povertymap.cli, povertymap.studyarea, povertymap.validation;"
        "heavy = ('tensorflow', 'keras', 'pyspark', 'mlflow', 'fastapi', 'torch');"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_missing_optional_dependency_names_the_extra() -> None:
    import pytest

    from povertymap._options import require
    from povertymap.errors import DependencyError

    with pytest.raises(DependencyError, match=r"pip install 'povertymap\[spark\]'"):
        require("pyspark.not_a_module_xyz")


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    import typer.main

    commands = list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert {"validate", "info"} <= set(commands)
    for name in commands:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.stdout, name


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("povertymap ")
