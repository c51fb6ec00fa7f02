"""Survey tables: canonical columns, flags, households linked to clusters."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from builders import TinyStudy
from povertymap.config import ClustersConfig, HouseholdsConfig
from povertymap.errors import SurveyError
from povertymap.io.survey import read_clusters, read_households


def _clusters(tmp_path: Path, df: pd.DataFrame, suffix: str = ".csv", **cfg: str) -> pd.DataFrame:
    path = tmp_path / f"c{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path, index=False)
    return read_clusters(ClustersConfig(path=path, target="y", **cfg))


BASE = pd.DataFrame(
    {
        "cluster_id": [1, 2, 3],
        "lon": [35.0, 35.1, 35.2],
        "lat": [-6.0, -6.1, -6.2],
        "y": [0.5, -0.1, 2.0],
        "fold": ["A", "B", "A"],
    }
)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_canonical_columns_and_extra_columns_kept(tmp_path: Path, suffix: str) -> None:
    df = _clusters(tmp_path, BASE, suffix)
    assert list(df["cluster_id"]) == ["1", "2", "3"]
    assert list(df["target"]) == [0.5, -0.1, 2.0]
    assert list(df["fold"]) == ["A", "B", "A"]
    assert df.attrs["target_name"] == "y"
    assert "urban" not in df


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["U", "R", "u"], [True, False, True]),
        ([1, 0, 0], [True, False, False]),
        (["true", "False", "TRUE"], [True, False, True]),
        (["urban", "rural", "Rural"], [True, False, False]),
    ],
)
def test_urban_flags(tmp_path: Path, values: list[object], expected: list[bool]) -> None:
    df = _clusters(tmp_path, BASE.assign(u=values), urban="u")
    assert list(df["urban"]) == expected


def test_bad_urban_flag(tmp_path: Path) -> None:
    with pytest.raises(SurveyError, match=r"line 3, column 'u'.*'maybe'|'maybe'.*line 3"):
        _clusters(tmp_path, BASE.assign(u=["U", "maybe", "R"]), urban="u")


def test_missing_target_value_is_refused_not_dropped(tmp_path: Path) -> None:
    df = BASE.copy()
    df.loc[1, "y"] = None
    with pytest.raises(SurveyError, match="line 3.*'y'|missing"):
        _clusters(tmp_path, df)


def test_households_link_to_clusters(tiny: TinyStudy) -> None:
    cfg = HouseholdsConfig(
        path=tiny.root / "households.csv", cluster="cluster_id", welfare="logc", size="size"
    )
    hh = read_households(cfg, pd.Index(["c1", "c2", "c3", "c4", "c5", "c6"]))
    assert len(hh) == 12 and hh["welfare"].iloc[-1] == 8.0 and set(hh["hh_size"]) == {4.0, 5.0}
    with pytest.raises(SurveyError, match="not in the clusters file.*'c3'"):
        read_households(cfg, pd.Index(["c1", "c2"]))
