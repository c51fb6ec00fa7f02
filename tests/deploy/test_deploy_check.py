"""make deploy-check (scripts/deploy-check.sh): every check passes on the repository, and
each kind of breakage is caught by the check meant for it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool missing: apt-get install prometheus (scripts/system-deps.sh installs it)",
)

CHECKS = [
    "hadolint deploy/Dockerfile",
    "render deploy/k8s/base",
    "kubernetes-validate --strict deploy/k8s/base",
    "render deploy/k8s/overlays/dev",
    "kubernetes-validate --strict deploy/k8s/overlays/dev",
    "render deploy/k8s/overlays/prod",
    "kubernetes-validate --strict deploy/k8s/overlays/prod",
    "kubernetes-validate --strict deploy/k8s/base/secret.template.yaml",
    "promtool check config",
    "promtool check rules",
    "promtool test rules",
    "compose-spec deploy/compose/docker-compose.yml",
    "github-workflows .github/workflows",
    "json deploy/monitoring/grafana/dashboards/povertymap.json",
]


def _run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(root / "scripts/deploy-check.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "VENV_BIN": str(ROOT / ".venv/bin")},
    )


def _lines(out: str) -> dict[str, str]:
    """check name -> ok / FAIL / skip."""
    return {m[1]: m[0] for m in re.findall(r"^(ok|FAIL|skip) +(.+)$", out, flags=re.M)}


def test_deploy_check_passes() -> None:
    out = _run(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    status = _lines(out.stdout)
    assert {name: status.get(name) for name in CHECKS} == dict.fromkeys(CHECKS, "ok")
    shellcheck = "shellcheck deploy/scripts scripts/deploy-check.sh"
    expected = len(CHECKS) + (status.get(shellcheck) == "ok")
    assert out.stdout.rstrip().endswith(f"deploy-check: all {expected} checks passed")


def test_deploy_check_catches_each_breakage(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for part in ("deploy", ".github", "scripts"):
        shutil.copytree(ROOT / part, root / part)
    # A typo'd field in a Deployment patch (strict schema), an alert test expecting the
    # wrong text, an unknown compose key, a dashboard that is no JSON, a Dockerfile that
    # runs as root with an unpinned base.
    patch = root / "deploy/k8s/overlays/prod/patch-deployment.yaml"
    patch.write_text(patch.read_text().replace("          resources:", "          resource:", 1))
    tests = root / "deploy/monitoring/alerts_test.yml"
    tests.write_text(tests.read_text().replace("is 2.47s", "is 1.5s"))
    compose = root / "deploy/compose/docker-compose.yml"
    compose.write_text(
        compose.read_text().replace("    restart: unless-stopped\n", "    restarts: always\n", 1)
    )
    dashboard = root / "deploy/monitoring/grafana/dashboards/povertymap.json"
    dashboard.write_text(dashboard.read_text()[:-10])
    (root / "deploy/Dockerfile").write_text("FROM python\nRUN pip install povertymap\n")
    out = _run(root)
    assert out.returncode == 1
    status = _lines(out.stdout)
    broken = {
        "hadolint deploy/Dockerfile",
        "kubernetes-validate --strict deploy/k8s/overlays/prod",
        "promtool test rules",
        "compose-spec deploy/compose/docker-compose.yml",
        "json deploy/monitoring/grafana/dashboards/povertymap.json",
    }
    assert {name for name in CHECKS if status.get(name) == "FAIL"} == broken
    assert "DL3006" in out.stdout and "DL3013" in out.stdout  # untagged base, unpinned pip
    assert "resource" in out.stdout and "is 1.5s" in out.stdout
    passed = (
        len(CHECKS)
        - len(broken)
        + (status.get("shellcheck deploy/scripts scripts/deploy-check.sh") == "ok")
    )
    assert out.stdout.rstrip().endswith(f"deploy-check: {len(broken)} failed, {passed} passed")
    json.loads(
        (ROOT / "deploy/monitoring/grafana/dashboards/povertymap.json").read_text()
    )  # the original is intact
