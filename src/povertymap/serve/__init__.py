"""The poverty-map service: a REST API over run directories (extra ``serve``).

Nothing here is imported by ``import povertymap`` or ``povertymap.cli``: FastAPI and the
other service dependencies load only when a service is built (:func:`povertymap.serve.app.
create_app`) or a service command runs. The modules split by what they hold:

- :mod:`.settings`: ``POVERTYMAP_*`` settings (``BaseSettings``).
- :mod:`.maps`: loaded maps (one per run directory) and their atomic hot swap.
- :mod:`.auth`: API keys (salted hashes, constant-time compare, expiry, revoke) and roles.
- :mod:`.audit`: the append-only, hash-chained audit trail and its verification.
- :mod:`.store`: the database (SQLAlchemy; SQLite by default, PostgreSQL by URL).
- :mod:`.errors`: typed service errors and the exception-to-status table.
- :mod:`.metrics`, :mod:`.requestlog`, :mod:`.middleware`: Prometheus metrics, one JSON
  log line per request, and the ASGI layer that applies limits, headers and audit rows.
- :mod:`.ratelimit`: token buckets per key.
- :mod:`.tiles`: web-mercator PNG tiles of the map raster, cached per model version.
- :mod:`.routes`: the HTTP endpoints by area (health, maps, analysis, admin).
"""
