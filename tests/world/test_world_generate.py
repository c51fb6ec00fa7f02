"""generate(): determinism, atomic writes, refusal to overwrite, progress, specs, imports."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from povertymap.errors import ConfigError, PovertyMapError, RunDirError
from povertymap.world import PRESETS, WorldSpec, generate, resolve_spec
from povertymap.world.randomness import Streams, hash_uniform, value_noise, value_noise_grid


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_and_other_seed_other_country(
    world_tiny: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    generate("tiny", seed=7, out=again)
    first, second = _digests(world_tiny), _digests(again)
    assert len(first) >= 20
    assert first == second
    other = tmp_path / "other"
    generate("tiny", seed=8, out=other)
    third = _digests(other)
    assert third.keys() == first.keys()
    changed = [k for k in first if first[k] != third[k]]
    # every data file changes with the seed (the spec-only world.json fields aside)
    assert len(changed) == len(first), sorted(set(first) - set(changed))


def test_refuses_a_non_empty_folder_and_overwrites_on_request(tmp_path: Path) -> None:
    out = tmp_path / "w"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty"):
        generate("tiny", seed=1, out=out)
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]
    study = generate("tiny", seed=1, out=out, overwrite=True)
    assert study == out / "study.yaml" and study.exists()
    assert not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_a_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []

    def explode(step: str, done: int, total: int) -> None:
        calls.append((step, done, total))
        if step == "households":
            raise KeyboardInterrupt  # as when a user presses Ctrl-C mid-run

    with pytest.raises(KeyboardInterrupt):
        generate("tiny", seed=1, out=tmp_path / "w", progress=explode)
    assert list(tmp_path.iterdir()) == []
    assert ("geography", 0, 1) in calls


def test_progress_reports_every_long_step(tmp_path: Path) -> None:
    seen: dict[str, tuple[int, int]] = {}

    def record(step: str, done: int, total: int) -> None:
        assert 0 <= done <= total
        seen[step] = (done, total)

    generate("tiny", seed=3, out=tmp_path / "w", progress=record)
    assert {"geography", "welfare", "households", "nightlights"} <= set(seen)
    assert all(done == total for done, total in seen.values())


def test_presets_and_spec_validation() -> None:
    assert set(PRESETS) == {"tiny", "demo", "large"}
    assert resolve_spec("demo") is PRESETS["demo"]
    spec = PRESETS["tiny"].with_(n_clusters=40)
    assert resolve_spec(spec).n_clusters == 40
    assert PRESETS["large"].imagery_res_m is None and PRESETS["large"].registry_fraction < 1
    with pytest.raises(ConfigError, match="unknown world preset"):
        resolve_spec("huge")
    with pytest.raises(ConfigError, match="does not divide"):
        PRESETS["tiny"].with_(imagery_res_m=30.0)
    with pytest.raises(ConfigError, match="unknown WorldSpec field"):
        PRESETS["tiny"].with_(clusters=3)
    with pytest.raises(ConfigError, match="poverty_headcount"):
        WorldSpec(name="x", width_km=20, height_km=20, n_admin1=1, n_admin2=2, n_cities=1,
                  n_towns=1, n_villages=5, n_clusters=10, poverty_headcount=1.5)  # fmt: skip


def test_a_custom_spec_sets_the_headcount(tmp_path: Path) -> None:
    import json

    spec = PRESETS["tiny"].with_(name="custom", poverty_headcount=0.25, imagery_res_m=None)
    generate(spec, seed=5, out=tmp_path / "w")
    info = json.loads((tmp_path / "w" / "truth" / "world.json").read_text())
    assert info["national_headcount"] == pytest.approx(0.25, abs=0.005)
    assert not (tmp_path / "w" / "imagery.tif").exists()
    assert "imagery" not in (tmp_path / "w" / "study.yaml").read_text()


def test_streams_are_independent_and_reproducible() -> None:
    a = Streams(7).get("welfare", 1, 2).random(3)
    assert np.array_equal(a, Streams(7).get("welfare", 1, 2).random(3))
    assert not np.array_equal(a, Streams(7).get("welfare", 1, 3).random(3))
    assert not np.array_equal(a, Streams(7).get("imagery", 1, 2).random(3))
    assert not np.array_equal(a, Streams(8).get("welfare", 1, 2).random(3))


def test_hashed_noise_is_window_independent() -> None:
    key = Streams(7).key("clouds")
    u = hash_uniform(np.arange(1000), np.zeros(1000, int), key)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.05
    xs = 700_010.0 + 20.0 * np.arange(300)
    ys = 9_300_010.0 - 20.0 * np.arange(200)
    grid = value_noise_grid(xs, ys, 3000.0, key, octaves=3)
    part = value_noise_grid(xs[100:], ys[50:], 3000.0, key, octaves=3)
    np.testing.assert_allclose(grid[50:, 100:], part, atol=1e-6)
    points = value_noise(xs[None, :], ys[:, None], 3000.0, key, octaves=3)
    np.testing.assert_allclose(grid, points, atol=1e-5)


def test_import_pulls_in_no_tensorflow() -> None:
    code = (
        "import sys, povertymap.world; "
        "print(any(m.startswith(('tensorflow', 'keras')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_errors_are_typed() -> None:
    assert issubclass(RunDirError, PovertyMapError)
    with pytest.raises(ConfigError):
        generate("no-such-preset", out=Path("/nonexistent/never-created"))
