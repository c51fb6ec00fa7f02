"""The web map in a real browser (Debian's Chromium through Playwright) against the
running service on the tiny world: what a user sees must be what the API answers."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

pytestmark = pytest.mark.e2e

Web = Any  # conftest's Web


def _props(fc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["properties"]["admin_id"]: f["properties"] for f in fc["features"]}


def _inside(fc: dict[str, Any], admin_id: str) -> tuple[float, float]:
    """A point well inside district ``admin_id`` (lon, lat)."""
    feature = next(f for f in fc["features"] if f["properties"]["admin_id"] == admin_id)
    p = shapely.geometry.shape(feature["geometry"]).representative_point()
    return p.x, p.y


def _pct(v: float) -> str:
    return f"{v * 100:.0f}%"


def test_the_page_is_ready_draws_every_district_and_loads_tiles(
    web: Web, serve_run: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from povertymap.rundir import open_run

    tiles: list[tuple[int, str]] = []
    web.page.on(
        "response",
        lambda r: "/tiles/" in r.url and tiles.append((r.status, r.headers["content-type"])),
    )
    web.open()
    n_admin = len(open_run(serve_run).admin())  # the rows of admin.gpkg
    assert web.page.locator("path.pm-district").count() == n_admin == 6
    assert (
        web.page.locator("#pm-legend-units")
        .inner_text()
        .startswith("% of people below the poverty line")
    )
    assert web.page.locator("#pm-legend-ramp span").count() == 20
    assert web.page.locator(".pm-cells img.leaflet-tile-loaded").count() > 0
    assert tiles and all(t == (200, "image/png") for t in tiles)

    shot = tmp_path / "map.png"
    web.page.locator("#pm-map").screenshot(path=str(shot))
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.std(axis=(0, 1)).max() > 20  # a drawn map, not a blank box
    web.assert_clean()


def test_the_page_runs_under_a_strict_content_security_policy(web: Web) -> None:
    import httpx

    r = httpx.get(web.live.url + "/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp and "default-src 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    web.open()  # any inline script or style the policy refused would be a console error
    web.assert_clean()


def test_a_district_popup_shows_the_values_the_api_returns(web: Web) -> None:
    admin = web.live.get("/v1/maps/tiny/admin")
    published = [a for a, p in _props(admin).items() if p["publish"] == "yes"]
    admin_id = published[0]
    p = _props(admin)[admin_id]
    web.open()
    text = web.click_map(*_inside(admin, admin_id))
    assert p["admin_name"] and f"{p['admin_name']} (district {admin_id})" in text
    assert f"{p['estimate']:.2f} (90% interval {p['lower']:.2f} – {p['upper']:.2f})" in text
    assert (
        f"{_pct(p['poverty_rate'])} (90% interval {_pct(p['poverty_lower'])} – "
        f"{_pct(p['poverty_upper'])})" in text
    )
    assert f"{p['fh_mean']:.2f} (90% interval {p['fh_mean_lower']:.2f}" in text
    assert f"CV\n{p['fh_mean_cv'] * 100:.1f}%" in text
    assert "Publish status\npublished" in text
    shown = web.page.locator(".pm-popup-district dd[data-field=estimate]").get_attribute(
        "data-value"
    )
    assert float(shown) == p["estimate"]
    web.assert_clean()


def test_a_suppressed_district_is_hatched_and_says_why(web: Web) -> None:
    public = web.live.get("/v1/maps/tiny/admin")
    withheld = [a for a, p in _props(public).items() if p["publish"] == "suppressed"]
    assert len(withheld) == 1  # the gate of the fixture withholds exactly one
    admin_id = withheld[0]
    reason = _props(public)[admin_id]["reason"]
    assert reason.startswith("CV ")
    web.open()
    hatch = web.page.locator(f'path.pm-hatch[data-admin-id="{admin_id}"]')
    assert hatch.count() == 1
    assert hatch.get_attribute("fill") == "url(#pm-hatch)"
    assert web.page.locator("path.pm-hatch").count() == 1
    text = web.click_map(*_inside(public, admin_id))
    assert f"Figures withheld by the disclosure rules: {reason}" in text
    assert "Estimate\nnot available" in text and "Publish status\nwithheld" in text
    web.assert_clean()


def test_public_and_analyst_views_differ_as_the_role_table_says(web: Web) -> None:
    live = web.live
    public = live.get("/v1/maps/tiny/admin")
    published = next(a for a, p in _props(public).items() if p["publish"] == "yes")
    withheld = next(a for a, p in _props(public).items() if p["publish"] == "suppressed")
    lon, lat = _inside(public, published)

    web.open()  # public: districts as published; no cell values, no scenario
    assert "Public view" in web.page.locator("#pm-role").inner_text()
    web.click_map(lon, lat)
    assert web.page.locator(".pm-popup-cell").count() == 0
    assert not any("/point" in u or "/cells" in u or "/target" in u for u in web.requests)
    assert (
        web.page.locator("#pm-run").is_disabled() and web.page.locator("#pm-budget").is_disabled()
    )
    assert web.page.locator("#pm-scenario-locked").is_visible()

    web.page.fill("#pm-key", live.analyst_key)
    web.page.click("#pm-key-form button[type=submit]")
    web.page.wait_for_selector("body[data-role=analyst]", state="attached")
    assert "Analyst view" in web.page.locator("#pm-role").inner_text()
    assert web.page.evaluate("() => sessionStorage.getItem('povertymap.key')") == live.analyst_key
    assert web.page.locator("#pm-run").is_enabled()
    web.page.evaluate("() => window.povertymap.map.closePopup()")
    with web.page.expect_response(lambda r: "/point?" in r.url) as answer:
        web.page.mouse.click(*web.screen_point(lon, lat))
    cell = answer.value.json()["cell"]
    section = web.page.locator(".pm-popup-cell")
    section.wait_for()
    assert section.get_attribute("data-cell-id") == cell["cell_id"]
    text = section.inner_text()
    assert f"{cell['estimate']:.2f} (90% interval {cell['lower']:.2f} – {cell['upper']:.2f})" in (
        text
    )
    assert f"People\n{round(cell['population']):,}" in text
    query = answer.value.url.split("?", 1)[1]
    direct = live.get(f"/v1/maps/tiny/point?{query}", key=live.analyst_key)["cell"]
    assert direct == cell

    # the withheld district: the analyst sees its values and why the public does not
    full = _props(live.get("/v1/maps/tiny/admin", key=live.analyst_key))[withheld]
    text = web.click_map(*_inside(public, withheld))
    assert f"{full['estimate']:.2f} (90% interval" in text
    assert f"In the public release this district's figures are withheld: {full['reason']}" in text
    web.assert_clean()


def _summary_shown(web: Web) -> dict[str, str | None]:
    return {
        k: web.page.locator(f"#pm-out-{k}").get_attribute("data-value")
        for k in ("units", "people", "poor", "cost")
    }


def test_the_scenario_panel_shows_what_target_answers_and_downloads_the_plan(
    web: Web, tmp_path: Path
) -> None:
    live = web.live
    web.open(key=live.analyst_key)
    web.page.check("#pm-kind-share")
    web.page.fill("#pm-budget", "25")
    web.page.select_option("#pm-unit", "admin2")
    with web.page.expect_response(lambda r: r.url.endswith("/target")) as answer:
        web.page.click("#pm-run")
    got = answer.value.json()
    web.page.wait_for_selector("body[data-plan-version='1']", state="attached")
    sent = answer.value.request.post_data_json
    assert sent["budget"] == "25%" and sent["unit"] == "admin2" and sent["curve"] is True
    same = live.post("/v1/maps/tiny/target", sent, key=live.analyst_key)
    assert same["summary"] == got["summary"] and same["selected"] == got["selected"]

    s = got["summary"]
    shown = _summary_shown(web)
    assert shown["units"] == str(s["units_selected"]) == str(got["selected_total"])
    assert float(shown["people"]) == s["population_covered"]
    assert float(shown["poor"]) == s["expected_poor_covered"]
    assert web.page.locator("#pm-out-people").inner_text() == f"{round(s['population_covered']):,}"
    assert (
        f"range {round(s['expected_poor_lower']):,} – {round(s['expected_poor_upper']):,}"
        in web.page.locator("#pm-out-poor-range").inner_text()
    )
    assert web.page.locator("#pm-out-cost").inner_text() == f"{round(s['spent']):,} people"
    outlined = web.page.locator("path.pm-selected")
    assert sorted(outlined.evaluate_all("els => els.map(e => e.dataset.id)")) == sorted(
        u["id"] for u in got["selected"]
    )
    rows = web.page.locator("#pm-selected tr")
    assert rows.count() == len(got["selected"])
    for line in ("map", "nightlights", "lottery"):
        assert web.page.locator(f'#pm-curve polyline[data-line="{line}"]').count() == 1
    assert web.page.locator("#pm-curve circle.pm-plan-point").count() == 1

    with web.page.expect_download() as download:
        web.page.click("#pm-download")
    path = tmp_path / "plan.csv"
    download.value.save_as(path)
    table = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [r["id"] for r in table] == [u["id"] for u in got["selected"]]
    assert [int(r["rank"]) for r in table] == [u["rank"] for u in got["selected"]]
    assert [float(r["population"]) for r in table] == [u["population"] for u in got["selected"]]
    assert {r["unit"] for r in table} == {"admin2"}

    # a budget change: the summary follows the new answer
    web.page.select_option("#pm-unit", "cell")
    web.page.fill("#pm-budget", "40")
    with web.page.expect_response(lambda r: r.url.endswith("/target")) as answer:
        web.page.click("#pm-run")
    again = answer.value.json()
    web.page.wait_for_selector("body[data-plan-version='2']", state="attached")
    assert again["summary"]["budget"] == "40%"
    assert again["summary"]["population_covered"] > s["population_covered"]
    shown = _summary_shown(web)
    assert shown["units"] == str(again["summary"]["units_selected"])
    assert float(shown["people"]) == again["summary"]["population_covered"]
    assert web.page.locator("path.pm-selected").count() == again["summary"]["units_selected"]
    web.assert_clean()


def test_a_money_budget_is_sent_at_its_cost_per_person(web: Web) -> None:
    web.open(key=web.live.analyst_key)
    web.page.check("#pm-kind-money")
    assert web.page.locator("#pm-cost").is_visible()
    web.page.fill("#pm-budget", "50000")
    web.page.fill("#pm-cost", "20")
    with web.page.expect_response(lambda r: r.url.endswith("/target")) as answer:
        web.page.click("#pm-run")
    got = answer.value.json()
    assert answer.value.request.post_data_json["budget"] == "50000 @ 20/person"
    web.page.wait_for_selector("#pm-results:not([hidden])")
    assert got["summary"]["measure"] == "money"
    assert got["summary"]["population_covered"] <= 50000 / 20
    assert web.page.locator("#pm-out-cost").inner_text() == (
        f"{round(got['summary']['spent']):,} (money)"
    )
    web.assert_clean()


def test_the_page_fits_a_phone(browser: Any, live: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(live.url + "/")
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=30_000)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390  # no sideways scrolling
    assert page.locator("#pm-map").bounding_box()["width"] == pytest.approx(390, abs=2)
    context.close()


def test_the_embedding_example_draws_the_districts_from_another_origin(
    browser: Any, live: Any, example_site: str
) -> None:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    try:
        page.goto(example_site)
        page.wait_for_selector("body[data-ready]", state="attached", timeout=30_000)
        n = len(live.map.public_admin["features"])
        assert page.locator("body").get_attribute("data-ready") == str(n)
        assert page.locator("path.leaflet-interactive").count() == n
        assert f"{n} districts" in page.locator("#note").inner_text()
        assert page.locator("img.leaflet-tile").count() > 0
    finally:
        context.close()
    assert errors == []
