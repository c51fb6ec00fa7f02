"""What the service answers for the web map: legend fields, the caller's role, the
targeting curve and the interval of the poor reached, and tiles over the whole box."""

from __future__ import annotations

from typing import Any

import pytest

from povertymap.serve.maps import LoadedMap
from povertymap.serve.tiles import render_tile, tile_of


def test_maps_say_the_role_and_how_to_read_the_layers(api: Any) -> None:
    roles = {
        role: api.client.get("/v1/maps", headers=api.auth(role)).json()["role"]
        for role in ("public", "analyst", "admin")
    }
    assert roles == {"public": "public", "analyst": "analyst", "admin": "admin"}
    m = api.client.get("/v1/maps").json()["maps"][0]
    assert m["target"] == "log_consumption" and m["level"] == 0.9
    assert m["poverty_line"] > 0 and m["household_methods"] is True
    assert m["colormaps"] == {"estimate": "viridis", "poverty": "magma_r", "uncertainty": "cividis"}
    assert m["ranges"]["poverty"] == [0.0, 1.0]
    w, s, e, n = m["tile_bounds"]
    bw, bs, be, bn = m["bounds"]
    assert w <= bw + 1e-3 and s <= bs + 1e-3 and e >= be - 1e-3 and n >= bn - 1e-3


def test_the_targeting_curve_and_the_range_of_poor_reached(api: Any, loaded: LoadedMap) -> None:
    from povertymap.target.stage import area_units, make_plan

    body = {"budget": "30%", "unit": "admin2", "curve": True}
    r = api.client.post("/v1/maps/tiny/target", json=body, headers=api.auth("analyst"))
    assert r.status_code == 200
    a = r.json()
    s, curve = a["summary"], a["curve"]
    assert s["expected_poor_lower"] <= s["expected_poor_covered"] <= s["expected_poor_upper"]
    cells = loaded.run.cells()
    units = area_units(cells, "admin2")
    assert curve["expected_poor"] == pytest.approx(
        float((units["population"] * units["poverty_rate"]).sum())
    )
    points = curve["points"]
    assert [p["budget_share"] for p in points] == [round(0.05 * k, 2) for k in range(1, 20)]
    assert all(p["lottery"] == p["budget_share"] for p in points)
    maps = [p["map"] for p in points]
    assert maps == sorted(maps) and all(0 <= v <= 1 for v in maps)
    assert all(p["nightlights"] is not None for p in points)
    # the point at 30% is the plan the request made
    at30 = next(p for p in points if p["budget_share"] == 0.3)
    assert at30["map"] == pytest.approx(s["expected_poor_covered"] / curve["expected_poor"])
    settings = loaded.run.targeting_settings().model_copy(update={"unit": "admin2"})
    plan = make_plan(cells, settings, budget="30%")
    assert s["units_selected"] == int(plan["selected"].sum())
    # without the flag there is no curve
    plain = api.client.post(
        "/v1/maps/tiny/target", json={"budget": "30%"}, headers=api.auth("analyst")
    )
    assert plain.json()["curve"] is None


def test_no_tile_inside_the_box_is_a_404(loaded: LoadedMap) -> None:
    w, s, e, n = loaded.raster.bounds_wgs84()
    z = 13
    x0, y0 = tile_of(w, n, z)
    x1, y1 = tile_of(e, s, z)
    missing = [
        (x, y)
        for x in range(x0, x1 + 1)
        for y in range(y0, y1 + 1)
        if render_tile(loaded, "poverty", z, x, y) is None
    ]
    assert missing == []
    far = tile_of(w - 1.0, n + 1.0, z)
    assert render_tile(loaded, "poverty", z, *far) is None
