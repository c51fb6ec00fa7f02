"""A sentinel string in every field of every route never comes back, and bad input is
never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from povertymap.serve.maps import LoadedMap

Api = Any
SENTINEL = "zq7SENTINELx9"
S_NUM = f"1{SENTINEL}"  # where a number is expected


def _cases(m: LoadedMap) -> list[tuple[str, str, dict[str, Any], Any, str]]:
    """``(method, url, query, json, role)`` with the sentinel in one field each."""
    good_point = {"lon": 35.0, "lat": -6.0}
    fb = {"map": "tiny", "lon": 35.0, "lat": -6.0, "poor": True, "source": "visit"}
    target = {"budget": "20%"}
    out: list[tuple[str, str, dict[str, Any], Any, str]] = [
        ("GET", f"/v1/maps/{SENTINEL}/admin", {}, None, "public"),
        ("GET", f"/v1/maps/{SENTINEL}/point", good_point, None, "public"),
        ("GET", "/v1/maps/tiny/point", {"lon": SENTINEL, "lat": -6.0}, None, "public"),
        ("GET", "/v1/maps/tiny/point", {"lon": 35.0, "lat": SENTINEL}, None, "public"),
        ("GET", "/v1/maps/tiny/point", {**good_point, SENTINEL: SENTINEL}, None, "public"),
        ("GET", "/v1/maps/tiny/cells", {"bbox": SENTINEL}, None, "analyst"),
        ("GET", "/v1/maps/tiny/cells", {"bbox": f"1,2,3,{S_NUM}"}, None, "analyst"),
        ("GET", f"/v1/maps/tiny/tiles/{SENTINEL}/1/1.png", {}, None, "public"),
        ("GET", f"/v1/maps/tiny/tiles/3/{SENTINEL}/1.png", {}, None, "public"),
        ("GET", f"/v1/maps/tiny/tiles/3/1/{SENTINEL}.png", {}, None, "public"),
        ("GET", "/v1/maps/tiny/tiles/3/1/1.png", {"layer": SENTINEL}, None, "public"),
        ("GET", "/v1/admin/audit", {"after": SENTINEL}, None, "admin"),
        ("GET", "/v1/admin/audit", {"limit": SENTINEL}, None, "admin"),
        ("POST", f"/v1/admin/maps/{SENTINEL}/reload", {}, None, "admin"),
        ("POST", "/v1/admin/maps/tiny/reload", {}, {"run_dir": f"/{SENTINEL}"}, "admin"),
        ("POST", "/v1/admin/maps/tiny/reload", {}, {SENTINEL: 1}, "admin"),
        ("POST", "/v1/predict", {}, {"map": SENTINEL, "rows": [{"features": {"a": 1}}]}, "analyst"),
        (
            "POST",
            "/v1/predict",
            {},
            {"map": "tiny", "rows": [{"features": {SENTINEL: 1.0}}]},
            "analyst",
        ),
        (
            "POST",
            "/v1/predict",
            {},
            {"map": "tiny", "rows": [{"features": {"x": SENTINEL}}]},
            "analyst",
        ),
        (
            "POST",
            "/v1/predict",
            {},
            {"map": "tiny", "rows": [{"features": {}, "urban": SENTINEL}]},
            "analyst",
        ),
        ("POST", "/v1/predict", {}, {"map": "tiny", "rows": SENTINEL}, "analyst"),
        ("POST", "/v1/predict", {}, SENTINEL, "analyst"),
    ]
    for key in (
        "budget",
        "unit",
        "method",
        "rank_by",
        "uncertainty",
        "min_share_admin1",
        "unit_cap",
        "limit",
        SENTINEL,
    ):
        out.append(("POST", "/v1/maps/tiny/target", {}, {**target, key: SENTINEL}, "analyst"))
    out.append(("POST", f"/v1/maps/{SENTINEL}/target", {}, target, "analyst"))
    out.append(
        ("POST", "/v1/maps/tiny/target", {}, {"budget": f"{SENTINEL} households"}, "analyst")
    )
    for key in ("map", "lon", "lat", "value", "poor", "observed_on", SENTINEL):
        out.append(("POST", "/v1/feedback", {}, {**fb, key: SENTINEL}, "analyst"))
    out.append(("POST", "/v1/feedback", {}, {**fb, "source": SENTINEL * 30}, "analyst"))
    return out


@pytest.mark.slow
def test_a_sentinel_in_any_field_never_comes_back(api: Api, loaded: LoadedMap) -> None:
    cases = _cases(loaded)
    for method, url, query, body, role in cases:
        kwargs: dict[str, Any] = {"params": query, "headers": api.auth(role)}
        if isinstance(body, str):
            kwargs["content"] = body.encode()
            kwargs["headers"] = {**kwargs["headers"], "Content-Type": "application/json"}
        elif body is not None:
            kwargs["json"] = body
        r = api.client.request(method, url, **kwargs)
        where = (method, url, query, body)
        assert 400 <= r.status_code < 500, (where, r.status_code, r.text[:300])
        assert SENTINEL not in r.text, where
        assert all(SENTINEL not in v for v in r.headers.values()), where
        error = r.json()["error"]
        assert set(error) <= {"code", "message", "request_id", "fields"}
        assert "Traceback" not in r.text and 'File "' not in r.text
    assert len(cases) > 30


def test_sentinel_in_headers_never_comes_back(api: Api) -> None:
    for headers in (
        {"Authorization": f"Bearer {SENTINEL}"},
        {"Authorization": f"Bearer pmk_0123456789ab_{SENTINEL}{SENTINEL}"},
        {"X-Request-ID": SENTINEL},
        {"Content-Type": SENTINEL},
    ):
        r = api.client.get("/v1/maps", headers=headers)
        assert r.status_code in (200, 401), headers
        assert SENTINEL not in r.text and all(SENTINEL not in v for v in r.headers.values())


def test_an_unexpected_error_is_a_plain_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"secret detail {SENTINEL}")

    monkeypatch.setattr(api.service.maps, "all", broken)
    r = api.client.get("/v1/maps")
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error"
    assert SENTINEL not in r.text and "RuntimeError" not in r.text
