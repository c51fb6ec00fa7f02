"""DHS surveys as distributed: a GPS shapefile and a Stata household recode, written here
in DHS's conventions, read into the canonical survey tables."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from builders import TinyStudy
from povertymap.config import DhsConfig, config_from_dict
from povertymap.errors import ConfigError, InputWarning, SurveyError, VectorError
from povertymap.io.dhs import read_dhs
from povertymap.studyarea import load_study_area
from povertymap.validation import validate

# four clusters inside TinyStudy's two admin units; cluster 3 has DHS's (0, 0) marker
GPS = {
    "DHSID": ["XX2020000001", "XX2020000002", "XX2020000003", "XX2020000004"],
    "DHSCLUST": [1.0, 2.0, 3.0, 4.0],  # a double, as in DHS's shapefiles
    "URBAN_RURA": ["U", "R", "R", "R"],
    "LATNUM": [-6.02, -6.05, 0.0, -6.08],
    "LONGNUM": [35.02, 35.05, 0.0, 35.14],
    "ADM1NAME": ["North", "North", "", "South"],
}
HR = {
    "hhid": [
        "   1  1",
        "   1  2",
        "   2  1",
        "   2  2",
        "   2  3",
        "   3  1",
        "   3  2",
        "   4  1",
    ],
    "hv001": np.array([1, 1, 2, 2, 2, 3, 3, 4], dtype=np.int32),
    "hv002": np.array([1, 2, 1, 2, 3, 1, 2, 1], dtype=np.int16),
    "hv005": np.array([1_500_000] * 2 + [800_000] * 3 + [1_000_000] * 2 + [2_000_000], np.int32),
    "hv009": np.array([2, 6, 1, 3, 4, 5, 5, 7], dtype=np.int8),
    "hv025": np.array([1, 1, 2, 2, 2, 2, 2, 2], dtype=np.int8),
    "hv271": np.array([120000, -20000, -50000, 10000, 25000, 0, 0, 33333], dtype=np.int32),
    "hv206": np.array([1, 0, 0, 0, 1, 0, 0, 1], dtype=np.int8),  # has electricity
}
# weighted means of hv271 / 1e5 with weight hv005 / 1e6 x members hv009, by hand:
# cluster 1: (3 x 1.2 + 9 x -0.2) / 12 = 0.15
# cluster 2: (0.8 x -0.5 + 2.4 x 0.1 + 3.2 x 0.25) / 6.4 = 0.1
# cluster 4: 0.33333
PERSON_MEANS = [0.15, 0.1, 0.33333]
HOUSEHOLD_MEANS = [0.5, -0.05, 0.33333]  # weight only (constant within each cluster)


def write_gps(folder: Path, gps: dict[str, Any] | None = None) -> Path:
    """The GPS dataset as unzipped from XXGE81FL.zip: folder/XXGE81FL.shp (+ .dbf ...)."""
    data = pd.DataFrame(GPS if gps is None else gps)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "XXGE81FL.shp"
    lat = data["LATNUM"] if "LATNUM" in data else data["LAT"]
    gpd.GeoDataFrame(data, geometry=shapely.points(data["LONGNUM"], lat), crs=4326).to_file(
        path, engine="pyogrio"
    )
    return path


def write_hr(path: Path, hr: dict[str, Any] | None = None) -> Path:
    """The household recode as Stata writes it, with DHS's value labels on hv025."""
    df = pd.DataFrame(HR if hr is None else hr)
    labels = {"hv025": {1: "urban", 2: "rural"}} if "hv025" in df else {}
    df.to_stata(path, write_index=False, version=118, value_labels=labels)
    return path


def dhs_config(gps: Path, households: Path, **households_options: Any) -> DhsConfig:
    return DhsConfig.model_validate(
        {"gps": gps, "households": {"path": households, **households_options}}
    )


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return write_gps(tmp_path / "XXGE81FL"), write_hr(tmp_path / "XXHR81FL.DTA")


def test_canonical_tables_with_weighted_cluster_means(files: tuple[Path, Path]) -> None:
    with pytest.warns(InputWarning, match=r"dropped 1 cluster\(s\) at \(0, 0\).*their 2 house"):
        survey = read_dhs(dhs_config(*files))
    c, h = survey.clusters, survey.households
    assert list(c.columns[:7]) == [
        "cluster_id", "lon", "lat", "urban", "target", "n_households", "weight",
    ]  # fmt: skip
    assert list(c["cluster_id"]) == ["1", "2", "4"]  # 1.0 in the shapefile reads as "1"
    assert list(c["urban"]) == [True, False, False]
    np.testing.assert_allclose(c["target"], PERSON_MEANS, rtol=0, atol=1e-12)
    assert list(c["n_households"]) == [2.0, 3.0, 1.0]
    np.testing.assert_allclose(c["weight"], [1.5, 0.8, 2.0])
    assert list(c["lon"]) == [35.02, 35.05, 35.14] and list(c["lat"]) == [-6.02, -6.05, -6.08]
    assert list(c["DHSID"]) == ["XX2020000001", "XX2020000002", "XX2020000004"]  # kept
    assert c.attrs["target_name"] == "hv271"
    # households of the (0, 0) cluster are gone; weights / 1e6, welfare / 1e5
    assert list(h["cluster_id"]) == ["1", "1", "2", "2", "2", "4"]
    assert list(h["household_id"]) == ["1  1", "1  2", "2  1", "2  2", "2  3", "4  1"]
    np.testing.assert_allclose(h["weight"], [1.5, 1.5, 0.8, 0.8, 0.8, 2.0])
    np.testing.assert_allclose(h["welfare"], [1.2, -0.2, -0.5, 0.1, 0.25, 0.33333])
    assert list(h["hh_size"]) == [2.0, 6.0, 1.0, 3.0, 4.0, 7.0]
    assert list(h["hv206"]) == [1, 0, 0, 0, 1, 1]  # other columns kept, codes as numbers
    assert list(h["hv025"]) == [1, 1, 2, 2, 2, 2]  # value labels not applied


def test_household_weighted_means(files: tuple[Path, Path]) -> None:
    with pytest.warns(InputWarning):
        survey = read_dhs(dhs_config(*files), person_weighted=False)
    np.testing.assert_allclose(survey.clusters["target"], HOUSEHOLD_MEANS, rtol=0, atol=1e-12)


def test_zip_files_as_downloaded_read_alike(tmp_path: Path, files: tuple[Path, Path]) -> None:
    shp, dta = files
    gps_zip, hr_zip = tmp_path / "XXGE81FL.zip", tmp_path / "XXHR81DT.zip"
    with zipfile.ZipFile(gps_zip, "w") as z:
        for part in sorted(shp.parent.iterdir()):
            z.write(part, part.name)
        z.writestr("XXGE81FL.pdf", "documentation")
    with zipfile.ZipFile(hr_zip, "w") as z:
        z.write(dta, "XXHR81FL.DTA")
        z.writestr("XXHR81FL.DO", "* Stata do-file")
    with pytest.warns(InputWarning):
        expected = read_dhs(dhs_config(shp, dta))
    for gps, hr in [(gps_zip, hr_zip), (shp.parent, dta), (shp.with_suffix(".dbf"), dta)]:
        with pytest.warns(InputWarning, match=r"dropped 1 cluster"):
            got = read_dhs(dhs_config(gps, hr))
        pd.testing.assert_frame_equal(got.clusters, expected.clusters)
        pd.testing.assert_frame_equal(got.households, expected.households)


def test_columns_option_keeps_only_those(files: tuple[Path, Path]) -> None:
    with pytest.warns(InputWarning):
        h = read_dhs(dhs_config(*files, columns=["hv206"])).households
    assert sorted(h.columns) == sorted(
        ["cluster_id", "household_id", "welfare", "weight", "hh_size", "hv025", "hv206"]
    )


def test_urban_from_households_when_gps_has_none(tmp_path: Path) -> None:
    gps = {k: v for k, v in GPS.items() if k != "URBAN_RURA"}
    shp, dta = write_gps(tmp_path / "g", gps), write_hr(tmp_path / "h.dta")
    cfg = DhsConfig.model_validate({"gps": {"path": shp, "urban": None}, "households": dta})
    with pytest.warns(InputWarning):
        c = read_dhs(cfg).clusters
    assert list(c["urban"]) == [True, False, False]


def test_missing_dhs_column_is_named(tmp_path: Path) -> None:
    shp = write_gps(tmp_path / "g")
    dta = write_hr(tmp_path / "h.dta", {k: v for k, v in HR.items() if k != "hv271"})
    with pytest.raises(SurveyError, match=r"missing column 'hv271'.*survey\.dhs\.households"):
        read_dhs(dhs_config(shp, dta))
    gps = {("LAT" if k == "LATNUM" else k): v for k, v in GPS.items()}
    shp = write_gps(tmp_path / "g2", gps)
    with pytest.raises(SurveyError, match=r"missing column 'LATNUM'.*survey\.dhs\.gps") as info:
        read_dhs(dhs_config(shp, write_hr(tmp_path / "h2.dta")))
    assert str(shp) in str(info.value)


def test_missing_welfare_names_the_observation(tmp_path: Path) -> None:
    hr = {**HR, "hv271": HR["hv271"].astype(float)}
    hr["hv271"][1] = np.nan  # Stata's missing value
    shp, dta = write_gps(tmp_path / "g"), write_hr(tmp_path / "h.dta", hr)
    with pytest.raises(SurveyError, match=r"observation 2, column 'hv271': value is missing"):
        read_dhs(dhs_config(shp, dta))


@pytest.mark.filterwarnings("ignore::povertymap.errors.InputWarning")
def test_files_of_different_surveys_are_refused(tmp_path: Path) -> None:
    shp = write_gps(tmp_path / "g")
    other = {**HR, "hv001": HR["hv001"] + 100}
    with pytest.raises(SurveyError, match="no household belongs to a cluster.*same survey"):
        read_dhs(dhs_config(shp, write_hr(tmp_path / "h.dta", other)))
    flipped = {**HR, "hv025": np.array([2, 2, 2, 2, 2, 2, 2, 2], np.int8)}
    with pytest.raises(SurveyError, match="cluster '1' is urban in the GPS file"):
        read_dhs(dhs_config(shp, write_hr(tmp_path / "h2.dta", flipped)))


def test_unmatched_rows_are_dropped_and_counted(tmp_path: Path) -> None:
    gps = {k: [*v, v[0]] for k, v in GPS.items()}
    gps["DHSCLUST"][-1] = 9.0  # a GPS row without households
    hr = pd.DataFrame(HR)
    hr = pd.concat([hr, hr.tail(1).assign(hv001=8, hhid="   8  1")], ignore_index=True)
    # (the last household's cluster has no GPS row)
    shp, dta = write_gps(tmp_path / "g", gps), write_hr(tmp_path / "h.dta", dict(hr))
    with pytest.warns(InputWarning) as caught:
        survey = read_dhs(dhs_config(shp, dta))
    messages = [str(w.message) for w in caught]
    assert any("dropped 1 cluster(s) without households" in m for m in messages)
    assert any("dropped 1 household(s) of 1 cluster(s) that have no row" in m for m in messages)
    assert list(survey.clusters["cluster_id"]) == ["1", "2", "4"]
    assert "8" not in set(survey.households["cluster_id"])


def test_not_stata_and_not_a_shapefile(tmp_path: Path, files: tuple[Path, Path]) -> None:
    shp, _ = files
    fake = tmp_path / "XXHR81FL.DTA"
    fake.write_bytes(b"not a stata file at all")
    with pytest.raises(SurveyError, match="cannot be read as a Stata file"):
        read_dhs(dhs_config(shp, fake))
    sav = tmp_path / "XXHR81FL.SAV"
    sav.write_bytes(b"x")
    with pytest.raises(SurveyError, match="Stata version of the recode"):
        read_dhs(dhs_config(shp, sav))
    (tmp_path / "two").mkdir()
    for name in ("a", "b"):
        write_gps(tmp_path / "two" / name).rename(tmp_path / "two" / f"{name}.shp")
    with pytest.raises(VectorError, match=r"exactly one shapefile \(found"):
        read_dhs(dhs_config(tmp_path / "two", files[1]))


# -- in a study area -------------------------------------------------------------------------


def _dhs_study(root: Path, survey: dict[str, Any]) -> dict[str, Any]:
    study = TinyStudy(root)
    write_gps(root / "XXGE81FL")
    write_hr(root / "XXHR81FL.DTA")
    data = study.config()
    data["survey"] = survey
    data.pop("tables")  # keyed by the CSV survey's cluster ids
    return data


def test_study_area_reads_dhs_like_csv(tmp_path: Path) -> None:
    data = _dhs_study(
        tmp_path, {"dhs": {"gps": "XXGE81FL/XXGE81FL.shp", "households": "XXHR81FL.DTA"}}
    )
    cfg = config_from_dict(data, base_dir=tmp_path)
    assert cfg.survey.clusters.target == "hv271"  # what the run records as its target
    assert set(cfg.files()) >= {"survey.dhs.gps", "survey.dhs.households"}
    assert cfg.files()["survey.dhs.gps"] == tmp_path / "XXGE81FL" / "XXGE81FL.dbf"
    report = validate(cfg)  # records the warnings as problems of their source
    area = report.area
    assert list(area.clusters.index) == ["1", "2", "4"]
    np.testing.assert_allclose(area.clusters["target"], PERSON_MEANS, atol=1e-12)
    assert list(area.clusters["admin_id"]) == ["A1", "A1", "A2"]
    assert area.clusters.crs.to_string() == "EPSG:32736"
    assert area.households is not None and len(area.households) == 6
    rows = {s.key: s for s in report.sources}
    assert rows["survey.dhs.gps"].kind == "DHS GPS dataset"
    assert rows["survey.dhs.gps"].problems == [
        "dropped 1 cluster(s) at (0, 0), DHS's marker for missing coordinates (cluster(s) 3), "
        "and their 2 household(s) in XXHR81FL.DTA"
    ]
    assert "6 households" in rows["survey.dhs.households"].rows
    assert "hv271 / 100,000" in rows["survey.dhs.households"].rows
    # the resolved config a run stores reads back (the paths are under "path" keys)
    dumped = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["survey"]["dhs"]["gps"]["path"] == str(tmp_path / "XXGE81FL" / "XXGE81FL.shp")
    again = config_from_dict(dumped, base_dir=tmp_path)
    assert again.survey.dhs == cfg.survey.dhs


def test_person_weighting_follows_the_estimation_setting(tmp_path: Path) -> None:
    data = _dhs_study(tmp_path, {"dhs": {"gps": "XXGE81FL", "households": "XXHR81FL.DTA"}})
    data["estimate"] = {"person_weighted": False}
    with pytest.warns(InputWarning):
        area = load_study_area(config_from_dict(data, base_dir=tmp_path))
    np.testing.assert_allclose(area.clusters["target"], HOUSEHOLD_MEANS, atol=1e-12)


@pytest.mark.parametrize(
    ("survey", "match"),
    [
        (
            {
                "dhs": {"gps": "XXGE81FL", "households": "XXHR81FL.DTA"},
                "clusters": {"path": "clusters.csv", "target": "wealth"},
            },
            r"key survey: survey.clusters and survey.dhs are both given.*Fix: keep clusters",
        ),
        ({}, r"key survey: the survey has neither clusters nor dhs.*Fix: add clusters"),
        (
            {
                "dhs": {"gps": "XXGE81FL", "households": "XXHR81FL.DTA"},
                "households": {"path": "households.csv"},
            },
            r"survey.households cannot be combined with survey.dhs",
        ),
        (
            {"dhs": {"gps": "XXGE81FL", "households": {"path": "XXHR81FL.DTA", "wieght": "x"}}},
            r"key survey.dhs.households.wieght: unknown key.*did you mean 'weight'",
        ),
    ],
)
def test_survey_config_errors(tmp_path: Path, survey: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict(_dhs_study(tmp_path, survey), base_dir=tmp_path)


def test_missing_dhs_file_names_the_key(tmp_path: Path) -> None:
    data = _dhs_study(tmp_path, {"dhs": {"gps": "XXGE81FL", "households": "XXHR71FL.DTA"}})
    with pytest.raises(FileNotFoundError, match=r"key survey\.dhs\.households\.path"):
        config_from_dict(data, base_dir=tmp_path)
