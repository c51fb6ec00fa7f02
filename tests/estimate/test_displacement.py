"""DHS displacement rules: caps, the 1 % far draws, uniform distance, polygon constraint."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import box

from povertymap.errors import ModelError
from povertymap.estimate.displacement import displace_clusters, displace_points


def test_caps_far_share_and_uniform_distance_on_a_large_draw() -> None:
    rng = np.random.default_rng(0)
    n_urban, n_rural = 50_000, 150_000
    urban = np.r_[np.ones(n_urban, bool), np.zeros(n_rural, bool)]
    x = rng.uniform(0, 1e6, urban.size)
    y = rng.uniform(0, 1e6, urban.size)
    d = displace_points(x, y, urban, rng)
    moved = np.hypot(d.x - x, d.y - y)
    np.testing.assert_allclose(moved, d.distance)
    assert moved[urban].max() <= 2000.0
    assert moved[~urban & ~d.far].max() <= 5000.0
    assert moved[d.far].max() <= 10_000.0
    assert not d.far[urban].any()
    assert d.far.sum() == round(0.01 * n_rural)  # exactly 1 % of rural clusters
    # distance uniform on [0, cap]: half the far draws land beyond 5 km, so ~0.5 % of
    # rural clusters do (binomial sd 0.018 % on 150 000)
    beyond = np.mean(moved[~urban] > 5000.0)
    assert beyond == pytest.approx(0.005, abs=0.001)
    assert moved[urban].mean() == pytest.approx(1000.0, rel=0.01)
    assert moved[~urban & ~d.far].mean() == pytest.approx(2500.0, rel=0.01)
    angle = np.arctan2(d.y - y, d.x - x)
    assert abs(np.mean(np.cos(angle))) < 0.01 and abs(np.mean(np.sin(angle))) < 0.01


def test_points_stay_inside_their_polygon_by_redrawing() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    x = rng.uniform(-1000, 1000, n)
    y = rng.uniform(-1000, 1000, n)
    poly = box(-1500, -1500, 1500, 1500)  # smaller than the 5 km rural cap
    d = displace_points(x, y, np.zeros(n, bool), rng, polygons=[poly] * n)
    assert shapely.contains_xy(poly, d.x, d.y).all()
    assert d.tries.max() > 1  # some draws had to be redrawn
    free = displace_points(x, y, np.zeros(n, bool), np.random.default_rng(1))
    assert not shapely.contains_xy(poly, free.x, free.y).all()


def test_an_impossible_polygon_is_reported() -> None:
    far_away = box(1e6, 1e6, 1e6 + 10, 1e6 + 10)
    with pytest.raises(ModelError, match="outside their polygon"):
        displace_points(
            [0.0], [0.0], [True], np.random.default_rng(2), polygons=[far_away], max_tries=50
        )


def test_displace_clusters_uses_each_clusters_admin_polygon() -> None:
    admin = gpd.GeoDataFrame(
        {"admin_id": ["A", "B"]},
        geometry=[box(0, 0, 10_000, 10_000), box(10_000, 0, 20_000, 10_000)],
        crs="EPSG:32736",
    )
    rng = np.random.default_rng(3)
    clusters = pd.DataFrame(
        {
            "easting": np.r_[rng.uniform(9000, 10_000, 300), rng.uniform(10_000, 11_000, 300)],
            "northing": rng.uniform(0, 10_000, 600),
            "urban": rng.random(600) < 0.3,
            "admin_id": ["A"] * 300 + ["B"] * 300,
        }
    )
    out = displace_clusters(clusters, np.random.default_rng(4), admin=admin)
    geo = admin.set_index("admin_id").geometry
    inside = shapely.contains_xy(
        geo.reindex(out["admin_id"]).to_numpy(), out["easting"], out["northing"]
    )
    assert inside.all()
    assert {"displacement_m", "displaced_far"} <= set(out.columns)
    again = displace_clusters(clusters, np.random.default_rng(4), admin=admin)
    pd.testing.assert_frame_equal(out, again)  # reproducible from the generator
