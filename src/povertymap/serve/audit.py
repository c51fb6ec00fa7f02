"""The audit trail: one append-only, hash-chained row per request that returns data or
changes state.

A row holds the time, the request id, the key id (never the key), the role, the method and
route template, the map and model version, the status and ``params_sha256``: the SHA-256
of the request's parameters (path, query, and the body's digest), never the values. Each
row's ``row_hash`` is ``sha256(prev_hash || canonical JSON of the row)``, and the
``audit_head`` row holds the last sequence number and hash. :func:`verify` recomputes the
chain: an edited row breaks its own hash, a deleted row breaks the sequence or the next
row's link, and a deleted last row disagrees with the head.

Appends are serialised by the database: the head row is updated first in the
transaction, which takes the write lock (SQLite) or the row lock (PostgreSQL) before the
previous hash is read, so worker processes never fork the chain.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from povertymap.serve.store import GENESIS, audit_head, audit_log, now_iso

__all__ = ["AuditEntry", "AuditLog", "Verification", "chain_hash", "params_digest"]

#: The chained fields, in hashing order.
FIELDS = (
    "seq",
    "time",
    "request_id",
    "key_id",
    "role",
    "method",
    "route",
    "map",
    "model_version",
    "status",
    "params_sha256",
)


def params_digest(params: Mapping[str, Any], body: bytes = b"") -> str:
    """SHA-256 of the request's parameters and body digest (the values are never kept)."""
    canonical = json.dumps(
        {
            "params": {k: str(v) for k, v in sorted(params.items())},
            "body": hashlib.sha256(body).hexdigest(),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """The row's hash: ``sha256(prev_hash || canonical JSON of the chained fields)``."""
    canonical = json.dumps({k: row.get(k) for k in FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    """What one request leaves in the trail (the chain fields are added on append)."""

    request_id: str
    key_id: str | None
    role: str
    method: str
    route: str
    map: str | None
    model_version: str | None
    status: int
    params_sha256: str


@dataclass(frozen=True)
class Verification:
    """The result of :func:`AuditLog.verify`: rows checked and the problems found."""

    rows: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


class AuditLog:
    """Append and read the hash-chained audit trail of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()  # one appender per process; the database orders processes

    def append(self, entry: AuditEntry) -> int:
        """Append ``entry`` as the next row; returns its sequence number."""
        with self._lock, self.engine.begin() as conn:
            conn.execute(
                update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq + 1)
            )
            head = conn.execute(
                select(audit_head.c.seq, audit_head.c.row_hash).where(audit_head.c.id == 1)
            ).one()
            row: dict[str, Any] = {
                "seq": int(head.seq),
                "time": now_iso(),
                **entry.__dict__,
                "prev_hash": head.row_hash,
            }
            row["row_hash"] = chain_hash(head.row_hash, row)
            conn.execute(insert(audit_log).values(**row))
            conn.execute(
                update(audit_head).where(audit_head.c.id == 1).values(row_hash=row["row_hash"])
            )
            return int(row["seq"])

    def rows(self, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Rows with ``seq > after``, oldest first, at most ``limit``."""
        with self.engine.connect() as conn:
            result = conn.execute(
                select(audit_log)
                .where(audit_log.c.seq > after)
                .order_by(audit_log.c.seq)
                .limit(limit)
            )
            return [dict(r._mapping) for r in result]

    def count(self) -> int:
        """Rows in the trail."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())

    def verify(self) -> Verification:
        """Recompute the chain from the first row; every edit or deletion is a problem."""
        problems: list[str] = []
        prev, expected, n = GENESIS, 1, 0
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(
                select(audit_log).order_by(audit_log.c.seq)
            )
            for r in result:
                row = dict(r._mapping)
                n += 1
                seq = int(row["seq"])
                if seq != expected:
                    problems.append(f"rows {expected} to {seq - 1} are missing (deleted)")
                if row["prev_hash"] != prev:
                    problems.append(f"row {seq} does not link to the row before it")
                if chain_hash(row["prev_hash"], row) != row["row_hash"]:
                    problems.append(f"row {seq} was changed after it was written")
                prev, expected = row["row_hash"], seq + 1
            head = conn.execute(
                select(audit_head.c.seq, audit_head.c.row_hash).where(audit_head.c.id == 1)
            ).first()
        if head is None:
            problems.append("the chain head is missing")
        elif int(head.seq) != expected - 1 or head.row_hash != prev:
            problems.append(
                f"the chain head says {int(head.seq)} rows; rows after {expected - 1} are "
                "missing (deleted) or the head was changed"
            )
        return Verification(n, problems)
