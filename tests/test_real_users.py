"""The failures a new user met on a study area the project had never seen (issue 11),
each reproduced on generated data: clusters near the border, a small country under the
national CV default, households without welfare, and targeting an asset index."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from builders import TinyStudy
from povertymap.config import CVConfig
from povertymap.errors import ConfigError, InputWarning, SurveyError
from povertymap.estimate.headcount import relative_line
from povertymap.io.configfile import read_config
from povertymap.models.evaluate import _fitting_blocks
from povertymap.runplan import plan_run
from povertymap.studyarea import load_study_area
from povertymap.target.allocate import allocate
from povertymap.target.budget import Budget


def _moved(tiny: TinyStudy, cluster: str, lat: float) -> Path:
    clusters = tiny.clusters.copy()
    clusters.loc[clusters["cluster_id"] == cluster, "lat"] = lat
    clusters.to_csv(tiny.root / "clusters.csv", index=False)
    return tiny.write()


def test_a_cluster_3_km_outside_the_border_is_kept(tiny: TinyStudy) -> None:
    # the area's northern edge is lat -6.0; -5.973 is 3.0 km north of it
    with pytest.warns(InputWarning, match=r"1 of 6 clusters lie outside .* up to 3\.0 km"):
        area = load_study_area(read_config(_moved(tiny, "c1", -5.973)))
    assert len(area.clusters) == 6
    # kept in the nearest unit: c1 is at lon 35.02, over the western unit A1
    assert area.clusters.loc["c1", "admin_id"] == "A1"


def test_a_cluster_beyond_the_largest_displacement_is_refused(tiny: TinyStudy) -> None:
    with pytest.raises(SurveyError, match="1 of 6 clusters lie more than 10 km outside"):
        load_study_area(read_config(_moved(tiny, "c1", -5.85)))


def test_too_few_blocks_fall_back_with_a_warning() -> None:
    # an 80 x 60 km country: 50 km blocks give 4 blocks for 5 folds
    rng = np.random.default_rng(0)
    xy = np.column_stack([rng.uniform(0, 80_000, 220), rng.uniform(0, 60_000, 220)])
    cv = CVConfig(block_size_m=50_000)
    notes: list[str] = []
    with pytest.warns(InputWarning, match="4 blocks of 50 km, fewer than the 5 folds"):
        matched = _fitting_blocks(cv, xy, (xy, np.ones(len(xy))), notes)
    assert matched.block_size_m == "auto" and len(notes) == 1
    with pytest.warns(InputWarning, match="4 folds are used"):
        fewer = _fitting_blocks(cv, xy, None, [])
    assert fewer.folds == 4 and fewer.block_size_m == 50_000
    assert _fitting_blocks(CVConfig(block_size_m=10_000), xy, None, []).folds == 5
    assert CVConfig().block_size_m == "auto"  # the default matches the map


def _variant(study: Path, name: str, **changes: object) -> Path:
    """The tiny world's study.yaml with top-level keys changed (None removes one)."""
    config = yaml.safe_load(study.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path = study.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _no_welfare(study: Path) -> dict[str, object]:
    survey = yaml.safe_load(study.read_text())["survey"]
    survey["households"].pop("welfare")
    return survey


def test_households_without_welfare_skip_their_stages_at_second_zero(tiny_world: Path) -> None:
    study = _variant(tiny_world, "no-welfare", survey=_no_welfare(tiny_world), poverty_line=None)
    area = load_study_area(read_config(study))
    assert area.households is not None and "welfare" not in area.households
    plan = plan_run(area)
    skipped = {s.name: s.why_not for s in plan.skipped}
    assert "sampling noise of cluster means" in skipped
    assert "no welfare column" in skipped["direct estimates and Fay-Herriot per admin-2"]
    assert "targeting plan" in skipped and "cross-validation" not in skipped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan.warn()
    assert len(caught) == len(plan.skipped)


def test_cluster_means_with_a_declared_within_sd_keep_the_noise_step(tiny_world: Path) -> None:
    survey = yaml.safe_load(tiny_world.read_text())["survey"]
    survey.pop("households")
    bare = _variant(tiny_world, "means", survey=survey, poverty_line=None, registry=None)
    skipped = {s.name: s.why_not for s in plan_run(load_study_area(read_config(bare))).skipped}
    assert "estimate.within_sd" in skipped["sampling noise of cluster means"]
    estimate = yaml.safe_load(tiny_world.read_text()).get("estimate", {})
    estimate["within_sd"] = {"urban": 0.6, "rural": 0.5}
    declared = _variant(
        tiny_world, "means-sd", survey=survey, poverty_line=None, registry=None, estimate=estimate
    )
    plan = plan_run(load_study_area(read_config(declared)))
    skipped = {s.name for s in plan.skipped}
    assert "sampling noise of cluster means" not in skipped
    assert "intervals of the realised cell mean" in skipped  # still needs households


def test_a_poverty_line_without_welfare_is_an_error_before_any_work(tiny_world: Path) -> None:
    study = _variant(tiny_world, "line-no-welfare", survey=_no_welfare(tiny_world))
    area = load_study_area(read_config(study))
    with pytest.raises(ConfigError, match="poverty_line is set, but the households table has"):
        plan_run(area)


def test_pmt_targeting_without_a_registry_is_an_error_at_validate(tiny_world: Path) -> None:
    study = _variant(tiny_world, "pmt-no-registry", registry=None, targeting={"method": "pmt"})
    with pytest.raises(ConfigError, match=r"'pmt' needs a household registry"):
        plan_run(load_study_area(read_config(study)))


def test_a_relative_poverty_line_is_the_weighted_share_of_people() -> None:
    households = pd.DataFrame(
        {
            "cluster_id": ["a"] * 4,
            "welfare": [1.0, 2.0, 3.0, 4.0],
            "weight": [1.0, 1.0, 1.0, 1.0],
            "hh_size": [4, 2, 2, 2],  # 10 people: 40% live at welfare 1.0
        }
    )
    assert relative_line(households, 0.40) == 1.0
    assert relative_line(households, 0.41) == 2.0
    assert relative_line(households, 0.40, person_weighted=False) == 2.0
    with pytest.raises(ValueError, match="not a share"):
        relative_line(households, 1.5)


def test_the_config_takes_a_share_of_people_as_poverty_line(tiny: TinyStudy) -> None:
    config = tiny.config()
    assert read_config(tiny.write({**config, "poverty_line": "40%"})).poverty_line == "40%"
    assert read_config(tiny.write({**config, "poverty_line": 6.5})).poverty_line == 6.5
    with pytest.raises(ConfigError, match="poverty_line"):
        read_config(tiny.write({**config, "poverty_line": "forty percent"}))


def test_an_asset_index_map_is_targeted_by_its_estimate() -> None:
    units = pd.DataFrame(
        {"population": [100.0, 100.0, 100.0, 100.0], "estimate": [0.5, -1.0, 0.2, -0.3]},
        index=pd.Index(["k1", "k2", "k3", "k4"], name="cell_id"),
    )
    plan = allocate(units, Budget.parse("50%"), rank_by="estimate")
    assert list(plan.index[plan["selected"]]) == ["k2", "k4"]  # the two poorest
    assert plan["poverty_rate"].isna().all()
    with pytest.raises(ValueError, match="poverty_rate"):
        allocate(units, Budget.parse("50%"))  # a headcount ranking needs headcounts
