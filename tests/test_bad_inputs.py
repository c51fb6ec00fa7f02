"""Every bad input of the foundation issue: a typed error naming the file, the place and
the fix; `povertymap validate` prints it as one line and exits 2; nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin
from typer.testing import CliRunner

from builders import TinyStudy, write_tif
from povertymap.cli import app
from povertymap.errors import (
    ConfigError,
    InputError,
    InputNotFoundError,
    RasterError,
    SurveyError,
    VectorError,
)
from povertymap.io.configfile import read_config
from povertymap.validation import validate


def _csv_edit(t: TinyStudy, fn: Callable[[list[str]], list[str]]) -> None:
    path = t.root / "clusters.csv"
    path.write_text("\n".join(fn(path.read_text().splitlines())) + "\n")


def _set_cell(t: TinyStudy, row: int, col: str, value: object) -> None:
    df = t.clusters.copy()
    df[col] = df[col].astype(object)
    df.loc[row, col] = value
    df.to_csv(t.root / "clusters.csv", index=False)


def raster_without_crs(t: TinyStudy) -> None:
    write_tif(
        t.root / "nightlights.tif",
        np.ones((16, 16), "float32"),
        crs=None,
        transform=from_origin(34.99, -5.99, 0.0125, 0.0125),
    )


def truncated_geotiff(t: TinyStudy) -> None:
    path = t.root / "population.tif"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def not_a_raster(t: TinyStudy) -> None:
    (t.root / "nightlights.tif").write_text("this is a text file, not an image\n")


def undeclared_sentinel(t: TinyStudy) -> None:
    pop = np.full((28, 50), 10.0, dtype="float32")
    pop[0] = -99999.0
    write_tif(
        t.root / "population.tif",
        pop,
        crs="EPSG:32736",
        transform=from_origin(719000, 9338000, 500, 500),
        nodata=None,
    )


def geojson_cut_off(t: TinyStudy) -> None:
    path = t.root / "roads.geojson"
    text = path.read_text()
    path.write_text(text[: len(text) * 2 // 3])


def swapped_latlon(t: TinyStudy) -> None:
    df = t.clusters.rename(columns={"lon": "lat", "lat": "lon"})
    df.to_csv(t.root / "clusters.csv", index=False)


def duplicate_ids(t: TinyStudy) -> None:
    _set_cell(t, 3, "cluster_id", "c2")


def missing_column(t: TinyStudy) -> None:
    t.clusters.drop(columns=["wealth"]).to_csv(t.root / "clusters.csv", index=False)


def non_numeric_target(t: TinyStudy) -> None:
    _set_cell(t, 2, "wealth", "high")


def non_utf8(t: TinyStudy) -> None:
    _csv_edit(t, lambda lines: [*lines[:3], lines[3].replace("R", "R\u00e9"), *lines[4:]])
    path = t.root / "clusters.csv"
    path.write_bytes(path.read_bytes().replace("\u00e9".encode(), b"\xe9"))


def null_island(t: TinyStudy) -> None:
    _set_cell(t, 4, "lon", 0.0)
    _set_cell(t, 4, "lat", 0.0)
    t.clusters.loc[4, ["lon", "lat"]] = 0.0
    t.clusters.to_csv(t.root / "clusters.csv", index=False)


def latitude_123(t: TinyStudy) -> None:
    _set_cell(t, 1, "lat", 123.0)


def negative_households(t: TinyStudy) -> None:
    _set_cell(t, 5, "n_households", -3)


BAD_FILES = {
    # case: (mutation, error type, substrings the one-line message must contain)
    "raster without CRS": (raster_without_crs, RasterError, ["nightlights.tif", "no CRS", "Fix:"]),
    "truncated GeoTIFF": (truncated_geotiff, RasterError, ["population.tif", "truncated", "Fix:"]),
    "not a raster": (not_a_raster, RasterError, ["nightlights.tif", "not a raster", "Fix:"]),
    "undeclared -99999": (
        undeclared_sentinel,
        RasterError,
        ["population.tif", "band 1", "-99999", "nodata: -99999"],
    ),
    "GeoJSON cut off": (geojson_cut_off, VectorError, ["roads.geojson", "cannot be read", "Fix:"]),
    "lat/lon swapped": (swapped_latlon, SurveyError, ["clusters.csv", "outside", "swapped"]),
    "duplicate cluster ids": (
        duplicate_ids,
        SurveyError,
        ["clusters.csv", "'c2'", "more than once"],
    ),
    "missing column": (missing_column, SurveyError, ["clusters.csv", "'wealth'", "missing column"]),
    "non-numeric target": (
        non_numeric_target,
        SurveyError,
        ["clusters.csv", "line 4", "'wealth'", "'high'"],
    ),
    "non-UTF-8 bytes": (non_utf8, SurveyError, ["clusters.csv", "line 4", "not UTF-8", "iconv"]),
    "(0, 0) location": (null_island, SurveyError, ["clusters.csv", "line 6", "(0, 0)", "DHS"]),
    "latitude 123": (latitude_123, SurveyError, ["clusters.csv", "line 3", "123", "'lat'"]),
    "negative households": (
        negative_households,
        SurveyError,
        ["clusters.csv", "line 7", "'n_households'", "positive"],
    ),
}


def _listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_is_a_typed_error_and_exit_2(tiny: TinyStudy, case: str) -> None:
    mutate, error, parts = BAD_FILES[case]
    mutate(tiny)
    config = tiny.write()
    with pytest.raises(error) as info:
        validate(read_config(config))
    message = str(info.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    assert isinstance(info.value, ValueError)  # typed errors mix in the built-in

    before = _listing(tiny.root)
    result = CliRunner().invoke(app, ["validate", str(config)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert _listing(tiny.root) == before  # nothing written


def test_debug_flag_shows_the_traceback(tiny: TinyStudy) -> None:
    latitude_123(tiny)
    result = CliRunner().invoke(app, ["--debug", "validate", str(tiny.write())])
    assert result.exit_code != 0
    assert isinstance(result.exception, SurveyError)


def test_config_typo_suggests_the_key(tiny: TinyStudy) -> None:
    cfg = tiny.config()
    cfg["survey"]["clusters"]["targt"] = cfg["survey"]["clusters"].pop("target")
    path = tiny.write(cfg)
    with pytest.raises(ConfigError) as info:
        read_config(path)
    msg = str(info.value)
    assert "study.yaml" in msg and "survey.clusters.targt" in msg and "'target'" in msg
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1


def test_config_typo_at_top_level(tiny: TinyStudy) -> None:
    cfg = tiny.config()
    cfg["raster"] = cfg.pop("rasters")
    with pytest.raises(ConfigError, match="did you mean 'rasters'"):
        read_config(tiny.write(cfg))


def test_config_path_that_does_not_exist(tiny: TinyStudy) -> None:
    cfg = tiny.config()
    cfg["rasters"]["population"]["path"] = "pop/missing.tif"
    path = tiny.write(cfg)
    with pytest.raises(InputNotFoundError) as info:
        read_config(path)
    msg = str(info.value)
    assert "rasters.population.path" in msg and "missing.tif" in msg
    assert isinstance(info.value, FileNotFoundError)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2


def test_self_intersecting_polygon_is_repaired_with_a_warning(tiny: TinyStudy) -> None:
    import geopandas as gpd
    from shapely.geometry import Polygon

    admin = gpd.read_file(tiny.root / "admin.geojson")
    x0, y0, x1, y1 = admin.geometry[0].bounds
    bowtie = Polygon([(x0, y1), (x1, y0), (x1, y1), (x0, y0)])  # crosses itself
    admin.loc[0, "geometry"] = bowtie
    admin.to_file(tiny.root / "admin.geojson")
    report = validate(read_config(tiny.write()))
    assert any("repaired 1 invalid geometry" in p for p in report.problems)
    assert report.area.admin.geometry.is_valid.all()
    # the bow-tie's two triangles survive the repair: half the original square
    area_deg = report.area.admin.to_crs(4326).geometry.iloc[0].area
    assert area_deg == pytest.approx((x1 - x0) * (y1 - y0) / 2, rel=1e-6)
    result = CliRunner().invoke(app, ["validate", str(tiny.write())])
    assert result.exit_code == 0 and "repaired" in result.stdout


def test_valid_study_area_validates(tiny: TinyStudy) -> None:
    report = validate(read_config(tiny.write()))
    assert [s.key for s in report.sources] == [
        "boundaries",
        "survey.clusters",
        "survey.households",
        "rasters.nightlights",
        "rasters.population",
        "vectors.roads",
        "vectors.pois",
        "tables[0]",
    ]
    assert report.problems == []
    result = CliRunner().invoke(app, ["validate", str(tiny.write())])
    assert result.exit_code == 0, result.stderr
    assert "no problems" in result.stdout


def test_every_error_is_a_povertymap_error() -> None:
    from povertymap.errors import PovertyMapError

    for error in (ConfigError, InputError, RasterError, SurveyError, VectorError):
        assert issubclass(error, PovertyMapError)
