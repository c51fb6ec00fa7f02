"""The service's commands, the light CLI import, metrics names and the JSON request log."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from povertymap.cli import app as cli
from povertymap.serve.requestlog import ACCESS_LOGGER, JsonFormatter

Api = Any

METRICS = (
    "povertymap_http_requests_total",
    "povertymap_http_request_duration_seconds_bucket",
    "povertymap_http_requests_in_flight",
    "povertymap_model_info",
    "povertymap_model_loaded_timestamp_seconds",
    "povertymap_ready",
)


def test_cli_imports_no_fastapi() -> None:
    code = (
        "import sys, povertymap.cli;"
        "print(','.join(m for m in ('fastapi', 'uvicorn', 'starlette', 'sqlalchemy', "
        "'rio_tiler') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/keys.db"
    runner = CliRunner()
    made = runner.invoke(
        cli, ["keys", "create", "--role", "analyst", "--name", "ngo", "--database-url", url]
    )
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("pmk_")
    key_id = key.split("_")[1]
    listed = runner.invoke(cli, ["keys", "list", "--database-url", url])
    assert key_id in listed.stdout and "analyst" in listed.stdout and key not in listed.stdout
    assert runner.invoke(cli, ["keys", "revoke", key_id, "--database-url", url]).exit_code == 0
    again = runner.invoke(cli, ["keys", "revoke", key_id, "--database-url", url])
    assert again.exit_code == 2
    bad = runner.invoke(cli, ["keys", "create", "--role", "root", "--database-url", url])
    assert bad.exit_code == 2


def test_serve_refuses_a_folder_that_is_no_run(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["serve", str(tmp_path)])
    assert r.exit_code == 2 and "manifest" in r.output


def test_metrics_have_the_contracted_names(api: Api) -> None:
    api.client.get("/v1/maps/tiny/admin")
    api.client.get("/v1/maps/nope/admin")
    text = api.client.get("/metrics").text
    for name in METRICS:
        assert name in text, name
    assert (
        'povertymap_http_requests_total{method="GET",route="/v1/maps/{map}/admin",status="200"} 1.0'
        in text
    )
    assert 'route="/v1/maps/{map}/admin",status="404"' in text
    assert "povertymap_ready 1.0" in text
    assert "povertymap_audit_write_failures_total 0.0" in text


def test_one_json_log_line_per_request(make_api: Any) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    try:
        api = make_api(log_requests=True)
        r = api.client.get("/v1/maps/tiny/point", params={"lon": 35.0, "lat": -6.0})
        api.client.get("/healthz")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(JsonFormatter().format(rec)) for rec in records]
    assert len(lines) == 2
    first = lines[0]
    assert first["request_id"] == r.headers["X-Request-ID"]
    assert first["route"] == "/v1/maps/{map}/point" and first["status"] == r.status_code
    assert first["role"] == "public" and first["duration_ms"] > 0
    assert "35.0" not in json.dumps(first)  # no query values in the log
