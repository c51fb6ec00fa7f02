"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes a real `povertymap serve` on
loopback, loads the alert rules, and answers queries with the service's counts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slow

httpx = pytest.importorskip("httpx")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ROOT = Path(__file__).resolve().parents[2]


def _wait(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    """``probe()`` until it returns something truthy (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = probe()
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            got = None
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def _ready(service: subprocess.Popen[bytes], api: str, log: Path) -> bool:
    """Whether the service answers ready; a service that exited fails at once, with the
    end of its log (a slow start and a crash then read differently)."""
    if service.poll() is not None:
        tail = log.read_text(errors="replace")[-2000:]
        raise AssertionError(f"the service exited with {service.returncode}:\n{tail}")
    return bool(httpx.get(f"{api}/readyz", timeout=2).status_code == 200)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.skipif(
    not os.access(PROMETHEUS, os.X_OK), reason="no prometheus: apt-get install prometheus"
)
def test_prometheus_scrapes_the_service_and_loads_the_rules(
    serve_run: Path, tmp_path: Path, free_port: Callable[[], int]
) -> None:
    from povertymap.rundir import open_run
    from povertymap.serve.maps import model_version

    api_port, prom_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    env = {
        **os.environ,
        "POVERTYMAP_DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        "POVERTYMAP_LOG_REQUESTS": "false",
    }
    cli = str(Path(sys.executable).parent / "povertymap")
    service_log = tmp_path / "service.log"
    service = subprocess.Popen(
        [cli, "serve", str(serve_run), "--host", "127.0.0.1", "--port", str(api_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=service_log.open("wb"),
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "deploy/monitoring/alerts.yml")],
        "scrape_configs": [
            {"job_name": "povertymap", "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = None
    try:
        _wait("service ready", lambda: _ready(service, api, service_log), 180)
        for _ in range(5):
            assert httpx.get(f"{api}/healthz", timeout=5).status_code == 200
        prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "prometheus.log").open("wb"),
        )
        prom = f"http://127.0.0.1:{prom_port}"

        def query(expr: str) -> list[dict[str, Any]]:
            answer = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5).json()
            assert answer["status"] == "success", answer
            return list(answer["data"]["result"])

        healthz = 'povertymap_http_requests_total{route="/healthz",method="GET",status="200"}'
        (series,) = _wait("the request counter in Prometheus", lambda: query(healthz))
        assert series["metric"]["job"] == "povertymap"
        assert series["metric"]["instance"] == f"127.0.0.1:{api_port}"
        assert float(series["value"][1]) >= 5  # our five (the readiness polls are /readyz)

        assert [float(r["value"][1]) for r in query('up{job="povertymap"}')] == [1.0]
        assert [float(r["value"][1]) for r in query("povertymap_ready")] == [1.0]
        (info,) = query("povertymap_model_info")
        assert info["metric"]["version"] == model_version(open_run(serve_run))
        # The scrapes themselves are counted: the counter grows between two queries.
        scrapes = 'povertymap_http_requests_total{route="/metrics"}'
        first = float(_wait("scrapes counted", lambda: query(scrapes))[0]["value"][1])
        _wait("scrapes counted again", lambda: float(query(scrapes)[0]["value"][1]) > first)

        def rules() -> dict[str, dict[str, Any]]:
            groups = httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
            return {r["name"]: r for g in groups for r in g["rules"]}

        # Every rule of alerts.yml loads and evaluates ("unknown" until its first pass).
        evaluated = _wait(
            "rules evaluated",
            lambda: (r := rules()) and all(x["health"] == "ok" for x in r.values()) and r,
        )
        assert len(evaluated) == 10
        # A healthy service fires nothing and has nothing pending.
        assert httpx.get(f"{prom}/api/v1/alerts", timeout=5).json()["data"]["alerts"] == []
    finally:
        if prometheus is not None:
            _stop(prometheus)
        _stop(service)
