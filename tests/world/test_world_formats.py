"""The generated country in real formats (DHS shapefile + .DTA, GADM GeoPackage, OSM XML)
loads into the same study area as its CSV/GeoJSON version."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import yaml

from povertymap.errors import InputWarning, RunDirError
from povertymap.io.configfile import read_config
from povertymap.studyarea import StudyArea, load_study_area
from povertymap.world.formats import FORMATS_DIR, REAL_FORMATS_CONFIG, write_real_formats


@pytest.fixture(scope="module")
def two_versions(
    world_tiny: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, StudyArea, StudyArea, list[str]]:
    world = tmp_path_factory.mktemp("formats") / "tiny"
    shutil.copytree(world_tiny, world)
    config = write_real_formats(world)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        real = load_study_area(read_config(config))
    csv = load_study_area(read_config(world / "study.yaml"))
    notes = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    return world, real, csv, notes


def test_files_as_users_download_them(
    two_versions: tuple[Path, StudyArea, StudyArea, list[str]],
) -> None:
    world, *_ = two_versions
    folder = world / FORMATS_DIR
    assert sorted(p.name for p in folder.iterdir()) == [
        "XXGE81FL", "XXHR81FL.DTA", "gadm41_XXX.gpkg", "xxx-latest.osm",
    ]  # fmt: skip
    hr = pd.read_stata(folder / "XXHR81FL.DTA", convert_categoricals=False)
    assert {"hhid", "hv001", "hv002", "hv005", "hv009", "hv024", "hv025", "hv271"} <= set(hr)
    assert hr["hv005"].dtype == np.int32 and set(hr["hv025"]) == {1, 2}
    gps = pyogrio.read_dataframe(folder / "XXGE81FL" / "XXGE81FL.shp", read_geometry=False)
    assert list(gps.columns[:7]) == [
        "DHSID", "DHSCC", "DHSYEAR", "DHSCLUST", "URBAN_RURA", "LATNUM", "LONGNUM",
    ]  # fmt: skip
    assert ((gps["LATNUM"] == 0) & (gps["LONGNUM"] == 0)).sum() == 3
    assert pyogrio.list_layers(folder / "gadm41_XXX.gpkg")[:, 0].tolist() == [
        "ADM_ADM_0", "ADM_ADM_1", "ADM_ADM_2",
    ]  # fmt: skip
    config = yaml.safe_load((world / REAL_FORMATS_CONFIG).read_text())
    assert config["survey"] == {
        "dhs": {"gps": "formats/XXGE81FL/XXGE81FL.shp", "households": "formats/XXHR81FL.DTA"}
    }
    assert config["boundaries"]["layer"] == "ADM_ADM_2"


def test_same_clusters_as_the_csv_survey(
    two_versions: tuple[Path, StudyArea, StudyArea, list[str]],
) -> None:
    _, real, csv, notes = two_versions
    a, b = real.clusters, csv.clusters
    assert list(a.index) == list(b.index)
    assert (a["urban"].to_numpy() == b["urban"].to_numpy()).all()
    np.testing.assert_allclose(a["target"], b["target"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(a["n_households"], b["n_households"])
    np.testing.assert_allclose(a["weight"], b["weight"], rtol=1e-6)  # hv005 is an integer
    np.testing.assert_allclose(a.geometry.x, b.geometry.x, atol=1e-6)
    assert list(a["admin_id"]) == list(b["admin_id"])
    # the (0, 0) clusters are dropped with their households, in one counted warning
    assert [n for n in notes if "(0, 0)" in n] == [
        f"{real.config.survey.clusters.path}: dropped 3 cluster(s) at (0, 0), DHS's marker "
        "for missing coordinates (cluster(s) 61, 62, 63), and their 75 household(s) in "
        "XXHR81FL.DTA"
    ]
    assert real.households is not None and csv.households is not None
    h, g = real.households, csv.households
    assert list(h["household_id"]) == list(g["household_id"])
    assert list(h["cluster_id"]) == list(g["cluster_id"])
    np.testing.assert_allclose(h["welfare"], g["welfare"], rtol=0, atol=1e-12)
    assert list(h["hh_size"]) == list(g["hh_size"])
    assert (h["roof"].to_numpy() == g["roof"].to_numpy()).all()  # PMT variables kept


def test_same_admin_units_and_layers(
    two_versions: tuple[Path, StudyArea, StudyArea, list[str]],
) -> None:
    _, real, csv, _ = two_versions
    assert real.admin is not None and csv.admin is not None
    assert list(real.admin.index) == list(csv.admin.index)
    assert list(real.admin["admin_name"]) == list(csv.admin["admin_name"])
    assert list(real.admin["parent_id"]) == list(csv.admin["parent_id"])
    np.testing.assert_allclose(real.admin.area, csv.admin.area, rtol=1e-9)
    assert len(real.grid) == len(csv.grid)
    for name in ("roads", "pois"):
        got, want = real.vectors[name], csv.vectors[name]
        assert sorted(got["class"]) == sorted(want["class"])
    np.testing.assert_allclose(
        real.vectors["roads"].length.sum(), csv.vectors["roads"].length.sum(), rtol=1e-6
    )


def test_written_twice_same_bytes(
    two_versions: tuple[Path, StudyArea, StudyArea, list[str]], tmp_path: Path
) -> None:
    world, *_ = two_versions
    copy = tmp_path / "again"
    shutil.copytree(world, copy, ignore=shutil.ignore_patterns(FORMATS_DIR, REAL_FORMATS_CONFIG))
    write_real_formats(copy)
    with pytest.raises(RunDirError, match="not empty"):
        write_real_formats(copy)  # an existing formats/ is replaced only with overwrite
    write_real_formats(copy, overwrite=True)
    files = sorted(p.relative_to(world) for p in (world / FORMATS_DIR).rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(copy) for p in (copy / FORMATS_DIR).rglob("*") if p.is_file()
    )
    for rel in [*files, Path(REAL_FORMATS_CONFIG)]:
        assert (world / rel).read_bytes() == (copy / rel).read_bytes(), rel
