"""What the ``povertymap serve``, ``keys`` and ``audit`` commands call (the CLI stays thin).

``serve`` hands uvicorn an app factory (:func:`factory`) by import string, so
``--workers N`` starts N processes that each load the runs named in
``POVERTYMAP_SERVE_RUNS`` and the registry models in ``POVERTYMAP_SERVE_MODELS`` (both
set by :func:`serve`). Each worker keeps its own rate-limit
buckets and tile cache; keys, audit rows and feedback are shared through the database.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from povertymap.serve.audit import AuditLog, Verification
from povertymap.serve.auth import KeyRecord, KeyStore, Role
from povertymap.serve.settings import ServeSettings
from povertymap.serve.store import connect
from povertymap.serve.watch import ModelRef

__all__ = [
    "create_key",
    "factory",
    "list_keys",
    "model_refs",
    "revoke_key",
    "serve",
    "verify_audit",
]

RUNS_ENV = "POVERTYMAP_SERVE_RUNS"
MODELS_ENV = "POVERTYMAP_SERVE_MODELS"


def _settings(database_url: str | None) -> ServeSettings:
    settings = ServeSettings()
    return settings.model_copy(update={"database_url": database_url}) if database_url else settings


def factory() -> Any:
    """The app of the runs in ``POVERTYMAP_SERVE_RUNS`` and the registry models in
    ``POVERTYMAP_SERVE_MODELS`` (JSON lists), for uvicorn."""
    from povertymap.serve.app import build_app

    models = [
        ModelRef(m["ref"], m["uri"], Path(m["runs"]) if m.get("runs") else None)
        for m in json.loads(os.environ.get(MODELS_ENV, "[]"))
    ]
    return build_app(json.loads(os.environ.get(RUNS_ENV, "[]")), ServeSettings(), models)


def model_refs(refs: Sequence[str], runs: Path) -> list[ModelRef]:
    """``NAME@ALIAS`` references in the tracking store of ``runs`` (or the one
    ``POVERTYMAP_TRACKING_URI`` names), each checked to resolve to a run directory now."""
    from povertymap.mlops.tracking import tracking_uri

    uri = tracking_uri(runs)
    out = [ModelRef(ref, uri, Path(runs).resolve()) for ref in refs]
    for ref in out:
        ref.resolve()  # an unknown model, alias or missing run fails here, before uvicorn
    return out


def serve(
    run_dirs: Sequence[Path],
    *,
    models: Sequence[ModelRef] = (),
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Run the service with uvicorn until interrupted (TLS when both files are given)."""
    import uvicorn

    from povertymap.rundir import open_run

    for path in run_dirs:
        open_run(path)  # a bad path fails here, with the CLI's one-line error
    os.environ[RUNS_ENV] = json.dumps([str(Path(p).resolve()) for p in run_dirs])
    os.environ[MODELS_ENV] = json.dumps(
        [{"ref": m.ref, "uri": m.uri, "runs": str(m.runs or "")} for m in models]
    )
    uvicorn.run(
        "povertymap.serve.commands:factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        access_log=False,  # the service logs one JSON line per request itself
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
    )


def create_key(
    role: str, *, name: str = "", days: int | None = None, database_url: str | None = None
) -> tuple[KeyRecord, str]:
    """A new key of ``role``: its record and the key itself (shown once)."""
    settings = _settings(database_url)
    store = KeyStore(connect(settings.database_url))
    return store.create(Role(role), name=name, days=days or settings.key_days)


def revoke_key(key_id: str, *, database_url: str | None = None) -> bool:
    """Revoke ``key_id`` (False when no such active key)."""
    return KeyStore(connect(_settings(database_url).database_url)).revoke(key_id)


def list_keys(*, database_url: str | None = None) -> list[KeyRecord]:
    """Every key's record."""
    return KeyStore(connect(_settings(database_url).database_url)).list()


def verify_audit(*, database_url: str | None = None) -> Verification:
    """Check the audit chain of the service database."""
    return AuditLog(connect(_settings(database_url).database_url)).verify()
