"""Abuse and bad input: caps, rate limit, body size, strict queries, CORS, headers."""

from __future__ import annotations

from typing import Any

from povertymap.serve.maps import LoadedMap
from povertymap.serve.ratelimit import RateLimiter

Api = Any


def _bbox(m: LoadedMap) -> str:
    w, s, e, n = m.bounds
    return f"{w:.4f},{s:.4f},{e:.4f},{n:.4f}"


def test_cells_over_the_cap_or_too_wide_are_a_clear_422(make_api: Any, loaded: LoadedMap) -> None:
    api = make_api(max_cells=10, max_bbox_degrees=1.0)
    h = api.auth("analyst")
    r = api.client.get("/v1/maps/tiny/cells", params={"bbox": _bbox(loaded)}, headers=h)
    assert r.status_code == 422 and "smaller bbox" in r.json()["error"]["message"]
    wide = api.client.get("/v1/maps/tiny/cells", params={"bbox": "30,-8,33,-5"}, headers=h)
    assert wide.status_code == 422
    for bad in ("1,2,3", "3,2,1,4", "a,b,c,d", "0,0,0,0", "10,91,11,92"):
        assert (
            api.client.get("/v1/maps/tiny/cells", params={"bbox": bad}, headers=h).status_code
            == 422
        )
    w, s, _, _ = loaded.bounds
    small = f"{w:.4f},{s:.4f},{w + 0.02:.4f},{s + 0.02:.4f}"
    ok = api.client.get("/v1/maps/tiny/cells", params={"bbox": small}, headers=h)
    assert ok.status_code == 200 and 0 < len(ok.json()["features"]) <= 10


def test_rate_limit_answers_429_with_retry_after(make_api: Any) -> None:
    api = make_api(rate_public=1.0, rate_burst_seconds=2.0)
    codes = [api.client.get("/v1/maps").status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[2:] == [429, 429]
    r = api.client.get("/v1/maps")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["code"] == "rate_limited"
    assert api.client.get("/v1/maps", headers=api.auth("analyst")).status_code == 200  # own bucket
    assert 'povertymap_rate_limited_total{role="public"} 3.0' in api.client.get("/metrics").text


def test_token_bucket_arithmetic() -> None:
    now = [0.0]
    limiter = RateLimiter(burst_seconds=1.0, clock=lambda: now[0])
    assert [limiter.take("a", 2.0) for _ in range(3)] == [None, None, 1]
    now[0] = 0.5  # one token back
    assert limiter.take("a", 2.0) is None and limiter.take("a", 2.0) == 1
    assert limiter.take("b", 2.0) is None


def test_body_size_limit(make_api: Any) -> None:
    api = make_api(max_body_bytes=2_000)
    h = {**api.auth("analyst"), "Content-Type": "application/json"}
    big = b'{"map": "tiny", "rows": [' + b'{"features": {"a": 1.0}},' * 200 + b'{"features": {}}]}'
    r = api.client.post("/v1/predict", content=big, headers=h)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Any:  # no Content-Length: the limit applies while streaming
        for i in range(0, len(big), 500):
            yield big[i : i + 500]

    r = api.client.post("/v1/predict", content=chunks(), headers=h)
    assert r.status_code == 413


def test_predict_row_cap_and_unusable_table(make_api: Any) -> None:
    api = make_api(max_predict_rows=2)
    h = api.auth("analyst")
    rows = [{"features": {"nl_mean": 1.0}}] * 3
    assert (
        api.client.post("/v1/predict", json={"map": "tiny", "rows": rows}, headers=h).status_code
        == 422
    )
    none = api.client.post(
        "/v1/predict", json={"map": "tiny", "rows": [{"features": {"nope": 1.0}}]}, headers=h
    )
    assert none.status_code == 422 and none.json()["error"]["code"] == "unusable_input"


def test_strict_query_validation(api: Api) -> None:
    base = "/v1/maps/tiny/point"
    assert api.client.get(base, params={"lon": 35, "lat": -6, "extra": 1}).status_code == 422
    assert api.client.get(f"{base}?lon=35&lon=36&lat=-6").status_code == 422
    assert api.client.get(base, params={"lon": 200, "lat": -6}).status_code == 422
    assert api.client.get(base, params={"lon": "nan", "lat": -6}).status_code == 422
    assert api.client.get(base, params={"lon": 0, "lat": 0}).status_code == 404  # off the map
    assert api.client.get("/v1/maps/tiny/tiles/3/9/1.png").status_code == 404  # x >= 2^z
    assert api.client.get("/v1/maps/tiny/tiles/23/1/1.png").status_code == 422


def test_security_headers_on_every_answer(api: Api) -> None:
    for url in ("/healthz", "/v1/maps", "/v1/maps/nope/admin", "/no/such/route"):
        r = api.client.get(url)
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Model-Version"] and len(r.headers["X-Request-ID"]) == 32


def test_cors_only_for_configured_origins(make_api: Any) -> None:
    closed = make_api()
    r = closed.client.get("/v1/maps", headers={"Origin": "https://maps.example.org"})
    assert "access-control-allow-origin" not in r.headers
    api = make_api(cors_origins=["https://maps.example.org"])
    ok = api.client.get("/v1/maps", headers={"Origin": "https://maps.example.org"})
    assert ok.headers["access-control-allow-origin"] == "https://maps.example.org"
    assert "X-Model-Version" in ok.headers["access-control-expose-headers"]
    other = api.client.get("/v1/maps", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers
    pre = api.client.options(
        "/v1/predict",
        headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 400 and "access-control-allow-origin" not in pre.headers
