"""The map's urban rule: fitted to the survey's flags, one rule for clusters and cells."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from builders import TinyStudy
from povertymap.engine import LocalEngine
from povertymap.features.build import compute_features
from povertymap.features.urban import UrbanRule, cluster_urban
from povertymap.io.configfile import read_config
from povertymap.studyarea import StudyArea, load_study_area

ENGINE = LocalEngine()


def _area(tiny: TinyStudy) -> StudyArea:
    return load_study_area(read_config(tiny.write()))


def _dense_around(area: StudyArea, clusters: list[str], people: float = 5000.0) -> pd.Series:
    """Population per cell: ``people`` in the cells within 1.5 km of the given clusters,
    10 elsewhere."""
    centres = area.grid.geometry.centroid
    pop = pd.Series(10.0, index=area.grid.index)
    for cid in clusters:
        near = centres.distance(area.clusters.geometry.loc[cid]) < 1500
        pop[near.to_numpy()] = people
    return pop


def test_rule_reproduces_the_survey_flags_where_density_separates_them(tiny: TinyStudy) -> None:
    area = _area(tiny)
    # the survey calls c1 and c4 urban; make exactly their surroundings dense
    rule = UrbanRule.fit(area, _dense_around(area, ["c1", "c4"]))
    assert rule.kind == "survey-matched density"
    assert rule.balanced_accuracy == 1.0
    # a 3 x 3 smoothing of 1 km cells: the threshold lies between rural and dense density
    assert rule.people_per_km2 is not None and 10 < rule.people_per_km2 <= 5000
    urban = rule.cells(area, _dense_around(area, ["c1", "c4"]))
    flags = cluster_urban(area.clusters, urban, area.cell_size)
    assert list(flags) == [True, False, False, True, False, False]
    assert rule.summary() == {
        "kind": "survey-matched density",
        "people_per_km2": rule.people_per_km2,
        "balanced_accuracy": 1.0,
    }


def test_clusters_take_the_rule_not_their_survey_flag(tiny: TinyStudy) -> None:
    area = _area(tiny)
    # dense around c2 (a rural cluster) only: the map's rule calls c2's cell urban
    urban = pd.Series(False, index=area.grid.index)
    near = area.grid.geometry.centroid.distance(area.clusters.geometry.loc["c2"]) < 600
    urban[near.to_numpy()] = True
    flags = cluster_urban(area.clusters, urban, area.cell_size)
    assert list(flags) == [False, True, False, False, False, False]


def test_a_cluster_outside_the_grid_keeps_its_survey_flag(tiny: TinyStudy) -> None:
    area = _area(tiny)
    far = area.clusters.iloc[[0, 1]].copy()
    far["geometry"] = gpd.points_from_xy(far.geometry.x + 1e6, far.geometry.y, crs=area.crs)
    urban = pd.Series(False, index=area.grid.index)
    assert list(cluster_urban(far, urban, area.cell_size)) == [True, False]


def test_without_survey_flags_the_degree_of_urbanisation_decides(tiny: TinyStudy) -> None:
    area = _area(tiny)
    unflagged = StudyArea(**{**area.__dict__, "clusters": area.clusters.drop(columns="urban")})
    rule = UrbanRule.fit(unflagged, _dense_around(area, ["c1"]))
    assert rule == UrbanRule() and rule.kind == "degree of urbanisation"
    # 5,000 people on 1 km cells is an urban cluster (>= 300/km², >= 5,000 in all)
    urban = rule.cells(area, _dense_around(area, ["c1"], people=6000.0))
    assert urban.any() and not urban.all()


def test_cluster_buffers_follow_the_rule_fitted_on_the_cells(tiny: TinyStudy) -> None:
    area = _area(tiny)
    features = compute_features(area, for_map=True, engine=ENGINE)
    assert features.urban_rule is not None and features.cell_facts is not None
    assert features.urban_rule == features.cell_facts.attrs["urban_rule"]
    expected = cluster_urban(area.clusters, features.cell_facts["urban"], area.cell_size)
    radius = np.where(expected, 2000.0, 5000.0)
    # the pop_sum of a uniform 40 people/km² buffer is 40 pi r² (away from the edges)
    pop_sum = features.clusters["pop_sum"].to_numpy()
    inner = [1, 4]  # c2 and c5 lie 3+ km inside the area
    assert pop_sum[inner] == pytest.approx(40.0 * np.pi * (radius[inner] / 1000) ** 2, rel=0.03)
