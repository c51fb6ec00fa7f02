"""The service's database: API keys, the audit trail and field feedback (SQLAlchemy Core).

SQLite by default (a file beside the service), PostgreSQL by URL
(``postgresql+psycopg://user@host/db``). Times are stored as ISO-8601 UTC strings, so an
audit row hashes to the same digest whichever database holds it.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from povertymap.io.serve_store import open_database

__all__ = [
    "api_keys",
    "audit_head",
    "audit_log",
    "connect",
    "feedback",
    "feedback_frame",
    "metadata",
    "now_iso",
]

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("role", String(16), nullable=False),
    Column("salt", String(64), nullable=False),
    Column("digest", String(128), nullable=False),
    Column("created", String(40), nullable=False),
    Column("expires", String(40), nullable=False),
    Column("revoked", String(40), nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("time", String(40), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("role", String(16), nullable=False),
    Column("method", String(10), nullable=False),
    Column("route", String(200), nullable=False),
    Column("map", String(200), nullable=True),
    Column("model_version", String(200), nullable=True),
    Column("status", Integer, nullable=False),
    Column("params_sha256", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("row_hash", String(64), nullable=False),
)

#: One row: the last sequence number and hash, so a deleted last row is found too.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("row_hash", String(64), nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", String(40), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("map", String(200), nullable=False),
    Column("lon", Float, nullable=False),
    Column("lat", Float, nullable=False),
    Column("value", Float, nullable=True),
    Column("poor", Boolean, nullable=True),
    Column("source", String(200), nullable=False),
    Column("observed_on", String(40), nullable=True),
    Column("note", Text, nullable=True),
)

#: The hash a chain starts from.
GENESIS = "0" * 64


def now_iso() -> str:
    """The current UTC time, ISO 8601 with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def connect(url: str) -> Engine:
    """The engine for ``url`` with every table created and the audit head in place."""
    engine = open_database(url)
    metadata.create_all(engine)
    with contextlib.suppress(IntegrityError), engine.begin() as conn:  # another worker won
        if conn.execute(select(audit_head.c.id)).first() is None:
            conn.execute(insert(audit_head).values(id=1, seq=0, row_hash=GENESIS))
    return engine


def feedback_frame(url: str, map_name: str) -> pd.DataFrame:
    """The field feedback stored for ``map_name`` (``POST /v1/feedback``), oldest first:
    ``lon``, ``lat``, ``value``, ``poor``, ``source``, ``observed_on``, ``time``."""
    columns = ("lon", "lat", "value", "poor", "source", "observed_on", "time")
    query = (
        select(*(feedback.c[c] for c in columns))
        .where(feedback.c.map == map_name)
        .order_by(feedback.c.id)
    )
    with connect(url).connect() as conn:
        rows = conn.execute(query).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(columns))
