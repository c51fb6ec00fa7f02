"""The audit trail: one row per data request, no values, and a chain that finds edits and
deletions (SQLite here; PostgreSQL when its server binaries are installed)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from povertymap.cli import app as cli
from povertymap.serve.audit import AuditEntry, AuditLog
from povertymap.serve.store import audit_log, connect

Api = Any


def _entry(i: int) -> AuditEntry:
    return AuditEntry(f"r{i}", "k1", "analyst", "GET", "/v1/maps", "tiny", "v1", 200, "0" * 64)


def test_data_requests_leave_rows_without_values(api: Api) -> None:
    api.client.get("/healthz")
    api.client.get("/metrics")
    api.client.get(
        "/v1/maps/tiny/point", params={"lon": 35.0123456, "lat": -6.0}, headers=api.auth("analyst")
    )
    api.client.post(
        "/v1/feedback",
        json={"map": "tiny", "lon": 35.0, "lat": -6.0, "value": 1.5, "source": "visit-77731"},
        headers=api.auth("analyst"),
    )
    rows = api.service.audit.rows()
    assert [r["route"] for r in rows] == ["/v1/maps/{map}/point", "/v1/feedback"]
    key_id = api.keys["analyst"].split("_")[1]
    assert all(r["key_id"] == key_id and r["role"] == "analyst" for r in rows)
    assert rows[0]["status"] == 404 or rows[0]["status"] == 200
    assert rows[1]["status"] == 201 and rows[1]["map"] == "tiny" and rows[1]["model_version"]
    dump = repr(rows)
    assert (
        "35.0123456" not in dump and "visit-77731" not in dump and api.keys["analyst"] not in dump
    )
    assert rows[0]["params_sha256"] != rows[1]["params_sha256"]
    assert api.service.audit.verify().ok


def _tamper_cases(engine: Any) -> None:
    log = AuditLog(engine)
    for i in range(5):
        log.append(_entry(i))
    assert log.verify().ok and log.verify().rows == 5
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 2).values(status=500))
    v = log.verify()
    assert not v.ok and any("row 2 was changed" in p for p in v.problems)
    with engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 2).values(status=200))
    assert log.verify().ok
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 3))
    v = log.verify()
    assert not v.ok and any("missing" in p for p in v.problems)


def test_an_edited_or_deleted_row_breaks_the_chain(tmp_path: Path) -> None:
    _tamper_cases(connect(f"sqlite:///{tmp_path}/audit.db"))


def test_deleting_the_last_row_is_found(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path}/audit.db")
    log = AuditLog(engine)
    for i in range(3):
        log.append(_entry(i))
    with engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == 3))
    assert not log.verify().ok


def test_audit_verify_command_and_route(api: Api, tmp_path: Path) -> None:
    url = str(api.service.engine.url)
    api.client.get("/v1/maps", headers=api.auth("analyst"))
    api.client.get("/v1/maps/tiny/admin")
    r = api.client.get("/v1/admin/audit/verify", headers=api.auth("admin"))
    assert r.json()["ok"] is True and r.json()["rows"] == 2
    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "verify", "--database-url", url])
    assert ok.exit_code == 0 and "intact" in ok.stdout
    with api.service.engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == 1).values(role="admin"))
    bad = runner.invoke(cli, ["audit", "verify", "--database-url", url])
    assert bad.exit_code == 1
    r = api.client.get("/v1/admin/audit/verify", headers=api.auth("admin"))
    assert r.json()["ok"] is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A throwaway PostgreSQL server (skipped when its binaries are not installed)."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"))  # Debian keeps them off PATH
    path = os.pathsep.join([*(str(d) for d in debian[-1:]), os.environ.get("PATH", "")])
    initdb, pg_ctl = shutil.which("initdb", path=path), shutil.which("pg_ctl", path=path)
    if not (initdb and pg_ctl and shutil.which("postgres", path=path)):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed")
    pytest.importorskip("psycopg", reason="psycopg (extra `serve`) is not installed")
    prefix: list[str] = []
    root = tmp_path_factory.mktemp("pg")
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser to start PostgreSQL as postgres")
        prefix = [runuser, "-u", "postgres", "--"]
        root.chmod(0o755)
        for parent in root.parents:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o711)
        os.chown(root, user.pw_uid, user.pw_gid)
    data, port = root / "data", _free_port()
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "pm", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *prefix,
            pg_ctl,
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://pm@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True
        )
        time.sleep(0.1)


@pytest.mark.slow
def test_chain_on_a_real_postgres_server(postgres_url: str) -> None:
    engine = connect(postgres_url)
    _tamper_cases(engine)
    with engine.connect() as conn:
        assert conn.execute(select(audit_log.c.seq)).first() is not None
    engine.dispose()
