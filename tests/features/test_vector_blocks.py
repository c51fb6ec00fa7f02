"""OSM and settlement features on hand-made layers with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from builders import TinyStudy
from povertymap.engine import LocalEngine
from povertymap.features.osm import OsmFeatures, road_class
from povertymap.features.settlements import CITY, RURAL, TOWN, degree_of_urbanisation
from povertymap.io.configfile import read_config
from povertymap.studyarea import load_study_area

ENGINE = LocalEngine()


def test_road_classes() -> None:
    got = road_class(pd.Series(["trunk", "primary_link", "tertiary", "residential", "track", "x"]))
    assert list(got) == ["primary", "primary", "secondary", "minor", "track", "other"]


def test_road_length_and_poi_counts(tiny: TinyStudy) -> None:
    area = load_study_area(read_config(tiny.write()))
    block = OsmFeatures().fit(area, engine=ENGINE)
    assert block.poi_classes_ == ["clinic", "school"]
    feats = block.transform(area, area.grid, engine=ENGINE)
    # the primary road runs (almost exactly) east-west: 1 km in each column of cells
    crossed = feats["osm_road_km_primary"] > 0
    per_column = feats.loc[crossed, "osm_road_km_primary"].groupby(area.grid["ix"]).sum()
    inner_columns = per_column.iloc[1:-1]  # the end columns hold the road's ends
    assert np.allclose(inner_columns, 1.0, atol=0.01)
    assert feats["osm_road_km_primary"].sum() == pytest.approx(
        area.vectors["roads"].length[area.vectors["roads"]["class"] == "primary"].sum() / 1e3,
        rel=0.02,
    )
    assert feats["osm_poi_school"].sum() == 2 and feats["osm_poi_clinic"].sum() == 1
    assert (feats.loc[crossed, "osm_dist_primary_km"] < 0.8).all()


def test_osm_transform_needs_fit(tiny: TinyStudy) -> None:
    from povertymap.errors import ModelError

    area = load_study_area(read_config(tiny.write()))
    with pytest.raises(ModelError, match="before fit"):
        OsmFeatures().transform(area, area.grid, engine=ENGINE)


def test_degree_of_urbanisation() -> None:
    pop = np.zeros((10, 10))
    pop[1:4, 1:4] = 6000  # 9 cells x 6,000 = 54,000 people at 6,000/km²: a city
    pop[7, 7:9] = 2600  # 5,200 people at 2,600/km²: a town
    pop[0, 9] = 2000  # dense but alone (2,000 people): rural
    got = degree_of_urbanisation(pop, 1.0)
    assert (got[1:4, 1:4] == CITY).all()
    assert (got[7, 7:9] == TOWN).all()
    assert got[0, 9] == RURAL and got[5, 5] == RURAL
