"""schemathesis over the whole API for each role: no server error, no schema violation.

The schema is read from an app without maps (the routes, not the data, make it), and every
case is sent to a fresh app over the tiny run (``call_and_validate(app=...)``), with the
``map`` path parameter fixed to the served map so that valid cases reach real data.

Positive data may also get a 422: the schema cannot say that a bbox's west is below its
east, that a budget string parses, or that a bbox is under the cell cap, so such answers
are correct refusals, not rejections of valid data.
"""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402

from povertymap.serve.app import create_app  # noqa: E402
from povertymap.serve.settings import ServeSettings  # noqa: E402

ROLES = ("public", "analyst", "admin")
CONFIG = {
    "parameters": {"map": "tiny"},
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]
        }
    },
}

schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    create_app(ServeSettings(database_url="sqlite://", log_requests=False), []),
    config=SchemathesisConfig.from_dict(CONFIG),
)


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory, loaded: Any) -> dict[str, Any]:
    """One app per role over the tiny map, with that role's key."""
    from fastapi.testclient import TestClient  # noqa: F401 - the transport schemathesis uses

    folder = tmp_path_factory.mktemp("schemathesis")
    out = {}
    for role in ROLES:
        settings = ServeSettings(
            database_url=f"sqlite:///{folder}/{role}.db",
            log_requests=False,
            rate_public=1e6,
            rate_analyst=1e6,
            rate_admin=1e6,
        )
        app = create_app(settings, [loaded])
        key = None if role == "public" else app.state.service.keys.create(role)[1]
        out[role] = (app, {"Authorization": f"Bearer {key}"} if key else {})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case: Any, role: str, apps: dict[str, Any]) -> None:
    app, headers = apps[role]
    case.call_and_validate(app=app, headers=headers)
