"""deploy/scripts: the commands they run (dry run), the refusals, and a real reload of a
served map with the admin key from the environment."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "deploy/scripts"


def _sh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _swaps(base: str, name: str) -> float:
    """povertymap_model_swaps_total{map=name,outcome="swapped"} scraped from the service."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "povertymap_model_swaps_total" and s.labels == {
                "map": name,
                "outcome": "swapped",
            }:
                return s.value
    return 0.0


def test_dry_run_prints_the_promotion_and_the_reload() -> None:
    out = _sh(
        str(SCRIPTS / "deploy_model.sh"),
        "--dry-run",
        "--runs",
        "/srv/runs",
        "demo",
        "3",
        "--url",
        "https://maps.example.org/",
        "--map",
        "demoland",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "would run: povertymap models promote demo 3 --alias champion --runs /srv/runs",
        "would run: POST https://maps.example.org/v1/admin/maps/demoland/reload "
        '{"run_dir": "/data/runs/<run id of demo@champion>"} '
        "(Authorization: Bearer $POVERTYMAP_ADMIN_KEY)",
    ]


def test_dry_run_of_a_rollback_and_of_the_alias_only() -> None:
    out = _sh(
        str(SCRIPTS / "update_model_version.sh"),
        "--dry-run",
        "--alias",
        "prod",
        "--rollback",
        "demo",
    )
    assert (out.returncode, out.stdout) == (
        0,
        "would run: povertymap models rollback demo --alias prod --runs runs\n",
    )
    out = _sh(str(SCRIPTS / "deploy_model.sh"), "--dry-run", "demo", "2")
    assert (out.returncode, out.stdout) == (
        0,
        "would run: povertymap models promote demo 2 --alias champion --runs runs\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["update_model_version.sh", "demo", "two"], "VERSION must be a number, got 'two'"),
        (["update_model_version.sh", "demo"], "give NAME VERSION (or --rollback NAME)"),
        (["update_model_version.sh", "--rollback", "demo", "2"], "--rollback takes NAME only"),
        (["update_model_version.sh", "--force", "demo", "2"], "unknown option --force"),
        (["deploy_model.sh", "demo", "2", "--url", "http://x"], "--url needs --map"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(args: list[str], message: str) -> None:
    out = _sh(str(SCRIPTS / args[0]), *args[1:], env={"POVERTYMAP_BIN": "/nonexistent/povertymap"})
    assert out.returncode == 2 and message in out.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="deploy_model.sh reloads with curl")
def test_deploy_promotes_then_reloads_the_running_service(
    serve_run: Path, tmp_path: Path, serve_in_thread: Callable[[Any], str]
) -> None:
    pytest.importorskip("fastapi")
    from povertymap.serve.app import create_app
    from povertymap.serve.maps import load_map
    from povertymap.serve.settings import ServeSettings

    loaded = load_map(serve_run)
    app = create_app(
        ServeSettings(database_url=f"sqlite:///{tmp_path / 'service.db'}", log_requests=False),
        [loaded],
    )
    admin = app.state.service.keys.create("admin", name="ops")[1]
    analyst = app.state.service.keys.create("analyst", name="ngo")[1]
    base = serve_in_thread(app)
    # The registry half is a stand-in that records its arguments (tests/mlops covers promote).
    log = tmp_path / "calls.txt"
    fake = tmp_path / "povertymap"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    args = [
        str(SCRIPTS / "deploy_model.sh"),
        loaded.name,
        "2",
        "--url",
        base,
        "--map",
        loaded.name,
        "--run-dir",
        str(serve_run),
    ]

    out = _sh(*args, env={"POVERTYMAP_BIN": str(fake), "POVERTYMAP_ADMIN_KEY": admin})
    assert out.returncode == 0, out.stderr
    assert log.read_text() == f"models promote {loaded.name} 2 --alias champion --runs runs\n"
    assert f'"new_version":"{loaded.version}"' in out.stdout.replace(" ", "")
    assert _swaps(base, loaded.name) == 1
    assert admin not in out.stdout + out.stderr

    # A key of too low a role is refused by the service (403), and the script fails.
    out = _sh(*args, env={"POVERTYMAP_BIN": str(fake), "POVERTYMAP_ADMIN_KEY": analyst})
    assert out.returncode != 0 and "forbidden" in out.stdout + out.stderr
    # No key at all: refused before any request.
    env = {k: v for k, v in os.environ.items() if k != "POVERTYMAP_ADMIN_KEY"}
    out = subprocess.run(
        ["bash", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "POVERTYMAP_BIN": str(fake)},
    )
    assert out.returncode != 0 and "set POVERTYMAP_ADMIN_KEY" in out.stderr
    assert _swaps(base, loaded.name) == 1
