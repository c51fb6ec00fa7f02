"""The study-area config: defaults, relative paths, refused keys and values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from builders import TinyStudy
from povertymap.config import StudyAreaConfig, config_from_dict
from povertymap.errors import ConfigError
from povertymap.io.configfile import read_config


def test_paths_resolve_relative_to_the_config_file(tiny: TinyStudy, tmp_path: Path) -> None:
    cfg = read_config(tiny.write())
    assert cfg.boundaries.path == (tiny.root / "admin.geojson").resolve()
    assert cfg.rasters["population"].path.is_absolute()
    assert cfg.base_dir == tiny.root.resolve()
    # the same config read from another working directory gives the same paths
    sub = tiny.root / "configs"
    sub.mkdir()
    data = tiny.config()
    for section in ("boundaries",):
        data[section]["path"] = "../" + data[section]["path"]
    data["survey"]["clusters"]["path"] = "../clusters.csv"
    data["survey"]["households"]["path"] = "../households.csv"
    for group in ("rasters", "vectors"):
        for item in data[group].values():
            item["path"] = "../" + item["path"]
    data["tables"][0]["path"] = "../features.csv"
    (sub / "study.yaml").write_text(yaml.safe_dump(data))
    assert read_config(sub / "study.yaml").files() == cfg.files()


def test_defaults_are_documented_values(tiny: TinyStudy) -> None:
    data = tiny.config()
    del data["grid"], data["crs"]
    data["survey"]["clusters"] = {"path": "clusters.csv", "target": "wealth"}
    cfg = read_config(tiny.write(data))
    assert cfg.grid.cell_size_m == 1000.0
    assert cfg.crs is None
    assert cfg.survey.clusters.id == "cluster_id" and cfg.survey.clusters.urban is None
    assert cfg.rasters["population"].nodata is None


def test_reference_documents_every_key_and_matches_docs() -> None:
    from povertymap.config import StudyAreaConfig, reference_markdown

    text = reference_markdown()
    assert "| `" in text
    for name, field in StudyAreaConfig.model_fields.items():
        if name != "base_dir":
            assert field.description, name
            assert f"| `{field.alias or name}` |" in text
    docs = Path(__file__).parents[1] / "docs" / "config.md"
    assert docs.read_text() == text, "docs/config.md is stale: regenerate it (see its header)"


def test_nodata_accepts_number_or_none_word(tiny: TinyStudy) -> None:
    data = tiny.config()
    data["rasters"]["population"]["nodata"] = -99999
    data["rasters"]["nightlights"]["nodata"] = "none"
    cfg = read_config(tiny.write(data))
    assert cfg.rasters["population"].nodata == -99999.0
    assert cfg.rasters["nightlights"].nodata == "none"
    data["rasters"]["population"]["nodata"] = "missing"
    with pytest.raises(ConfigError, match="rasters.population.nodata"):
        read_config(tiny.write(data))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["grid"].update(cell_size_m=-5), "grid.cell_size_m"),
        (lambda d: d.pop("survey"), "key survey: required key is missing"),
        (
            lambda d: d["vectors"].update(rivers=d["vectors"]["roads"]),
            "unknown vector layer 'rivers'",
        ),
        (lambda d: d.update(name="my area"), "without spaces"),
        (lambda d: d["survey"]["clusters"].update(lat=5), "survey.clusters.lat"),
    ],
)
def test_bad_values_name_the_key(tiny: TinyStudy, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    data = tiny.config()
    edit(data)
    with pytest.raises(ConfigError) as info:
        read_config(tiny.write(data))
    assert expected in str(info.value)


def test_yaml_syntax_error_gives_line(tiny: TinyStudy) -> None:
    path = tiny.root / "broken.yaml"
    path.write_text("name: x\nsurvey:\n  clusters: {path: a.csv\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: line \d+"):
        read_config(path)


def test_non_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        config_from_dict(["a", "b"], base_dir=tmp_path)


def test_files_lists_every_input(tiny: TinyStudy) -> None:
    cfg: StudyAreaConfig = read_config(tiny.write())
    assert sorted(cfg.files()) == sorted(
        [
            "boundaries",
            "survey.clusters",
            "survey.households",
            "rasters.nightlights",
            "rasters.population",
            "vectors.roads",
            "vectors.pois",
            "tables[0]",
        ]
    )
