"""API keys and roles.

A key is ``pmk_<key_id>_<secret>``: ``key_id`` (12 hex) finds the stored record, the
secret (256 random bits) is stored only as ``sha256(salt || secret)`` with a per-key salt
and compared with :func:`hmac.compare_digest`. The secret is random, not a password, so a
fast hash is enough: brute force of 2^256 is not a threat a slow hash would change, and a
request never waits on a key-stretching function. Keys expire (``key_days``) and can be
revoked; a revoked or expired key is refused within ``key_cache_seconds``.

Roles are ordered: ``public`` < ``analyst`` < ``admin``; a route names the lowest role it
allows. A request without a key is ``public`` unless the settings require a key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from povertymap.serve.errors import Unauthorized
from povertymap.serve.store import api_keys, now_iso

__all__ = ["KeyRecord", "KeyStore", "Principal", "Role", "allows"]


class Role(StrEnum):
    """Who may see what: ``public`` < ``analyst`` < ``admin``."""

    public = "public"
    analyst = "analyst"
    admin = "admin"


_RANK = {Role.public: 0, Role.analyst: 1, Role.admin: 2}


def allows(role: Role, needed: Role) -> bool:
    """Whether ``role`` may use a route that needs ``needed``."""
    return _RANK[role] >= _RANK[needed]


@dataclass(frozen=True)
class Principal:
    """Who is asking: the key's id (None without a key), its role, and the client address."""

    key_id: str | None
    role: Role
    client: str

    @property
    def identity(self) -> str:
        """What the rate limit counts by: the key, or the client address without one."""
        return f"key:{self.key_id}" if self.key_id else f"ip:{self.client}"


@dataclass(frozen=True)
class KeyRecord:
    """A stored key, without its secret."""

    key_id: str
    name: str
    role: Role
    created: str
    expires: str
    revoked: str | None

    def active(self, now: datetime | None = None) -> bool:
        """Neither revoked nor expired."""
        now = now or datetime.now(UTC)
        return self.revoked is None and datetime.fromisoformat(self.expires) > now


_TOKEN = re.compile(r"^pmk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


class KeyStore:
    """Keys in the service database: create, revoke, list, and check a bearer token."""

    def __init__(self, engine: Engine, *, cache_seconds: float = 2.0) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, tuple[KeyRecord, str, str] | None]] = {}
        self._lock = threading.Lock()

    def create(self, role: Role | str, *, name: str = "", days: int = 365) -> tuple[KeyRecord, str]:
        """A new key of ``role``; returns its record and the key (shown once, never stored)."""
        role = Role(role)
        key_id, secret, salt = (
            secrets.token_hex(6),
            secrets.token_urlsafe(32),
            secrets.token_hex(16),
        )
        created = datetime.now(UTC)
        record = KeyRecord(
            key_id=key_id,
            name=name,
            role=role,
            created=created.isoformat(timespec="seconds"),
            expires=(created + timedelta(days=days)).isoformat(timespec="seconds"),
            revoked=None,
        )
        with self.engine.begin() as conn:
            conn.execute(
                insert(api_keys).values(
                    key_id=key_id,
                    name=name,
                    role=role.value,
                    salt=salt,
                    digest=_digest(salt, secret),
                    created=record.created,
                    expires=record.expires,
                    revoked=None,
                )
            )
        return record, f"pmk_{key_id}_{secret}"

    def revoke(self, key_id: str) -> bool:
        """Revoke ``key_id``; False when no such active key exists."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked.is_(None))
                .values(revoked=now_iso())
            ).rowcount
        with self._lock:
            self._cache.pop(key_id, None)
        return bool(done)

    def list(self) -> list[KeyRecord]:
        """Every key, newest first (revoked and expired ones included)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created.desc())).all()
        return [self._record(r._mapping) for r in rows]

    @staticmethod
    def _record(row: object) -> KeyRecord:
        m = dict(row)  # type: ignore[call-overload]
        return KeyRecord(
            key_id=m["key_id"],
            name=m["name"],
            role=Role(m["role"]),
            created=m["created"],
            expires=m["expires"],
            revoked=m["revoked"],
        )

    def _lookup(self, key_id: str) -> tuple[KeyRecord, str, str] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        found = None
        if row is not None:
            m = row._mapping
            found = (self._record(m), m["salt"], m["digest"])
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_id] = (now, found)
        return found

    def check(self, token: str) -> KeyRecord:
        """The active key ``token`` is; raises :class:`Unauthorized` otherwise (one message
        for every reason, so a caller learns nothing about which keys exist)."""
        refused = Unauthorized("the API key is not valid (unknown, expired or revoked)")
        match = _TOKEN.match(token)
        if match is None:
            raise refused
        key_id, secret = match.groups()
        found = self._lookup(key_id)
        salt, digest = (found[1], found[2]) if found else ("00" * 16, "0" * 64)
        same = hmac.compare_digest(_digest(salt, secret), digest)
        if found is None or not same or not found[0].active():
            raise refused
        return found[0]
