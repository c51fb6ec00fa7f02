"""Every route against every role (the full matrix), keys, and disclosure by role."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from povertymap.serve.maps import LoadedMap
from povertymap.serve.store import api_keys
from povertymap.serve.tiles import tile_of

Api = Any  # the conftest's Api: app, client, keys by role
ROLES = ("public", "analyst", "admin")

RANK = {"public": 0, "analyst": 1, "admin": 2}


def features(row: Any) -> dict[str, float | None]:
    """A feature row as JSON (NaN as null)."""
    return {str(c): (None if v != v else float(v)) for c, v in row.items()}


def routes(m: LoadedMap) -> list[tuple[str, str, str, dict[str, Any], Any, str, int]]:
    """``(method, template, url, query, json, lowest role, success status)`` per route."""
    centre = m.cells.geometry.iloc[len(m.cells) // 2].representative_point()
    x, y = tile_of(centre.x, centre.y, 12)
    w, s, e, n = m.bounds
    row = {"features": features(m.model.training_X_.iloc[0])}
    return [
        ("GET", "/healthz", "/healthz", {}, None, "public", 200),
        ("GET", "/readyz", "/readyz", {}, None, "public", 200),
        ("GET", "/metrics", "/metrics", {}, None, "public", 200),
        ("GET", "/v1/maps", "/v1/maps", {}, None, "public", 200),
        ("GET", "/v1/maps/{map}/admin", "/v1/maps/tiny/admin", {}, None, "public", 200),
        (
            "GET",
            "/v1/maps/{map}/point",
            "/v1/maps/tiny/point",
            {"lon": centre.x, "lat": centre.y},
            None,
            "public",
            200,
        ),
        (
            "GET",
            "/v1/maps/{map}/tiles/{z}/{x}/{y}.png",
            f"/v1/maps/tiny/tiles/12/{x}/{y}.png",
            {"layer": "poverty"},
            None,
            "public",
            200,
        ),
        (
            "GET",
            "/v1/maps/{map}/cells",
            "/v1/maps/tiny/cells",
            {"bbox": f"{w:.4f},{s:.4f},{e:.4f},{n:.4f}"},
            None,
            "analyst",
            200,
        ),
        (
            "POST",
            "/v1/maps/{map}/target",
            "/v1/maps/tiny/target",
            {},
            {"budget": "20%", "unit": "admin2"},
            "analyst",
            200,
        ),
        ("POST", "/v1/predict", "/v1/predict", {}, {"map": "tiny", "rows": [row]}, "analyst", 200),
        (
            "POST",
            "/v1/feedback",
            "/v1/feedback",
            {},
            {"map": "tiny", "lon": centre.x, "lat": centre.y, "poor": True, "source": "visit"},
            "analyst",
            201,
        ),
        ("GET", "/v1/admin/audit", "/v1/admin/audit", {}, None, "admin", 200),
        ("GET", "/v1/admin/audit/verify", "/v1/admin/audit/verify", {}, None, "admin", 200),
        (
            "POST",
            "/v1/admin/maps/{map}/reload",
            "/v1/admin/maps/tiny/reload",
            {},
            None,
            "admin",
            200,
        ),
    ]


def test_the_matrix_covers_every_route_of_the_api(api: Api, loaded: LoadedMap) -> None:
    schema = api.client.get("/openapi.json").json()
    declared = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    assert declared == {(r[0], r[1]) for r in routes(loaded)}


@pytest.mark.slow
def test_every_route_for_every_role(api: Api, loaded: LoadedMap) -> None:
    seen: dict[tuple[str, str], int] = {}
    for method, template, url, query, body, lowest, ok in routes(loaded):
        for role in ROLES:
            r = api.client.request(method, url, params=query, json=body, headers=api.auth(role))
            allowed = RANK[role] >= RANK[lowest]
            # no key where one is needed: 401; a key of too low a role: 403
            expected = ok if allowed else (401 if role == "public" else 403)
            assert r.status_code == expected, (template, role, r.status_code, r.text[:200])
            assert r.headers["X-Model-Version"].startswith(("tiny-", "tiny="))
            if not allowed:
                code = "unauthorized" if role == "public" else "forbidden"
                assert r.json()["error"]["code"] == code
            seen[(template, role)] = r.status_code
    assert len(seen) == 3 * len(routes(loaded))


def test_answers_hold_numbers_of_the_run(api: Api, loaded: LoadedMap) -> None:
    cell = loaded.public_cells.iloc[7]
    centre = cell.geometry.representative_point()
    r = api.client.get("/v1/maps/tiny/point", params={"lon": centre.x, "lat": centre.y})
    body = r.json()
    assert body["cell"]["cell_id"] == loaded.public_cells.index[7]
    assert body["cell"]["estimate"] == pytest.approx(float(cell["estimate"]))
    assert body["version"] == loaded.version == r.headers["X-Model-Version"]
    assert "easting" not in body["cell"] and "northing" not in body["cell"]
    admin = api.client.get("/v1/maps/tiny/admin").json()
    assert r.status_code == 200 and admin["type"] == "FeatureCollection"
    table = loaded.run.admin()
    by_id = {f["id"]: f["properties"] for f in admin["features"]}
    assert set(by_id) == set(table.index)
    first = table.index[0]
    assert by_id[first]["fh_mean"] == pytest.approx(float(table.loc[first, "fh_mean"]))
    assert by_id[first]["publish"] == table.loc[first, "publish"]
    lon, lat = admin["features"][0]["geometry"]["coordinates"][0][0]
    assert -180 <= lon <= 180 and -90 <= lat <= 90  # WGS 84, not the working CRS


def test_target_matches_the_library_plan(api: Api, loaded: LoadedMap) -> None:
    from povertymap.target.stage import make_plan

    r = api.client.post(
        "/v1/maps/tiny/target",
        json={"budget": "25%", "unit": "admin2"},
        headers=api.auth("analyst"),
    )
    assert r.status_code == 200
    settings = loaded.run.targeting_settings().model_copy(update={"unit": "admin2"})
    plan = make_plan(loaded.run.cells(), settings, budget="25%")
    chosen = set(plan.index[plan["selected"].astype(bool)])
    body = r.json()
    assert {u["id"] for u in body["selected"]} == chosen
    assert body["summary"]["units_selected"] == len(chosen) == body["selected_total"]


def test_predict_gives_the_models_numbers(api: Api, loaded: LoadedMap) -> None:
    X = loaded.model.training_X_.head(2)
    rows = [{"features": features(X.iloc[i])} for i in range(2)]
    r = api.client.post(
        "/v1/predict", json={"map": "tiny", "rows": rows}, headers=api.auth("analyst")
    )
    assert r.status_code == 200
    expected = loaded.model.predict_features(X.reset_index(drop=True))
    got = r.json()["rows"]
    assert [g["estimate"] for g in got] == pytest.approx(expected["estimate"].tolist())
    assert all(g["lower"] <= g["estimate"] <= g["upper"] for g in got)


def test_public_sees_the_gated_areas_and_analysts_the_values(
    make_api: Any, loaded: LoadedMap
) -> None:
    gated = {**loaded.public_admin, "features": [dict(f) for f in loaded.public_admin["features"]]}
    first = gated["features"][0]
    first["properties"] = {
        **first["properties"],
        "estimate": None,
        "publish": "suppressed",
        "reason": "cv above 30%",
    }
    api = make_api(maps=_registry(loaded, gated))
    public = api.client.get("/v1/maps/tiny/admin").json()["features"][0]["properties"]
    analyst = api.client.get("/v1/maps/tiny/admin", headers=api.auth("analyst")).json()
    assert public["estimate"] is None and public["reason"] == "cv above 30%"
    assert analyst["features"][0]["properties"]["estimate"] is not None


def _registry(m: LoadedMap, public_admin: dict[str, Any]) -> Any:
    from povertymap.serve.maps import MapRegistry

    return MapRegistry([dataclasses.replace(m, public_admin=public_admin)])


def test_keys_unknown_malformed_expired_revoked_refused(api: Api) -> None:
    url = "/v1/maps"
    good = api.auth("analyst")
    assert api.client.get(url, headers=good).status_code == 200
    for header in ("Bearer pmk_000000000000_" + "x" * 43, "Bearer nonsense", "Basic abc"):
        r = api.client.get(url, headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.headers["WWW-Authenticate"] == "Bearer"
    record, key = api.service.keys.create("analyst")
    with api.service.engine.begin() as conn:
        past = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="seconds")
        conn.execute(
            update(api_keys).where(api_keys.c.key_id == record.key_id).values(expires=past)
        )
    api.service.keys._cache.clear()
    assert api.client.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 401
    admin_id = api.keys["admin"].split("_")[1]
    assert api.service.keys.revoke(admin_id)
    assert api.client.get(url, headers=api.auth("admin")).status_code == 401
    assert not api.service.keys.revoke(admin_id)  # already revoked


def test_keys_are_stored_only_as_salted_hashes(api: Api) -> None:
    from sqlalchemy import select

    with api.service.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(api_keys))]
    secrets = [k.split("_", 2)[2] for k in api.keys.values()]
    dump = repr(rows)
    assert len(rows) == 2 and all(s not in dump for s in secrets)
    assert len({r["salt"] for r in rows}) == 2


def test_require_key_makes_public_a_key_holder(make_api: Any) -> None:
    api = make_api(require_key=True)
    assert api.client.get("/v1/maps").status_code == 401
    assert api.client.get("/v1/maps", headers=api.auth("analyst")).status_code == 200
    assert api.client.get("/healthz").status_code == 200  # probes stay open
