"""Service settings: ``BaseSettings`` read from ``POVERTYMAP_*`` environment variables.

Every limit the service enforces lives here, so an operator changes them without code:
``POVERTYMAP_DATABASE_URL=postgresql+psycopg://...``, ``POVERTYMAP_REQUIRE_KEY=true``,
``POVERTYMAP_CORS_ORIGINS='["https://maps.example.org"]'`` (a JSON list).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServeSettings"]


class ServeSettings(BaseSettings):
    """Settings of one service process (see ``docs/service.md`` for the table)."""

    model_config = SettingsConfigDict(env_prefix="POVERTYMAP_", extra="ignore")

    database_url: str = Field(
        "sqlite:///povertymap-service.db",
        description="SQLAlchemy URL of the key store, audit trail and feedback.",
    )
    require_key: bool = Field(False, description="Refuse requests without an API key.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (none: CORS off)."
    )
    max_body_bytes: int = Field(1_000_000, gt=0, description="Largest request body accepted.")
    max_cells: int = Field(5_000, gt=0, description="Most cells one cells request returns.")
    max_bbox_degrees: float = Field(
        5.0, gt=0, description="Largest width and height of a cells bbox, in degrees."
    )
    max_predict_rows: int = Field(1_000, gt=0, description="Most rows one predict request takes.")
    max_selected_units: int = Field(
        10_000, gt=0, description="Most selected units a target answer lists."
    )
    rate_public: float = Field(20.0, gt=0, description="Requests per second per public client.")
    rate_analyst: float = Field(50.0, gt=0, description="Requests per second per analyst key.")
    rate_admin: float = Field(50.0, gt=0, description="Requests per second per admin key.")
    rate_burst_seconds: float = Field(
        2.0, gt=0, description="Burst allowance: a bucket holds this many seconds of requests."
    )
    tile_cache_size: int = Field(1_024, ge=0, description="Rendered tiles kept per map version.")
    key_cache_seconds: float = Field(
        2.0, ge=0, description="How long a checked key is trusted before the store is asked again."
    )
    key_days: int = Field(365, gt=0, description="Default lifetime of a new key, in days.")
    run_roots: list[str] = Field(
        default_factory=list,
        description="Folders a reload may take run directories from (default: the parents "
        "of the runs served at start).",
    )
    registry_poll_seconds: float = Field(
        30.0,
        gt=0,
        description="How often a map served from the model registry (`serve --model "
        "NAME@ALIAS`) checks whether its alias moved, and the drift reports are re-read.",
    )
    drift_dir: str | None = Field(
        None,
        description="A folder of `povertymap monitor` outputs (each with its drift.json); "
        "the newest report of each served model is exported as `povertymap_drift_*` gauges.",
    )
    log_requests: bool = Field(True, description="One JSON log line per request.")
    hsts: bool = Field(
        False, description="Send Strict-Transport-Security (only when served over TLS)."
    )
    web_basemap_url: str | None = Field(
        None,
        max_length=500,
        pattern=r"^https?://[A-Za-z0-9.{}-]+(:[0-9]+)?/[^\s'\"]*$",
        description="An online basemap under the web map, as a tile URL template "
        "(`https://tile.example.org/{z}/{x}/{y}.png`); none: the page makes no request "
        "beyond the service.",
    )
    web_basemap_attribution: str = Field(
        "", max_length=300, description="The basemap's attribution, shown on the map."
    )

    def rate_for(self, role: str) -> float:
        """Requests per second allowed for ``role``."""
        return {"public": self.rate_public, "analyst": self.rate_analyst}.get(role, self.rate_admin)
