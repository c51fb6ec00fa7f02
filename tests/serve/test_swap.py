"""Hot swap: a reload under load fails no request and changes X-Model-Version; a failed
reload keeps the old version serving."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from povertymap.io.artifacts import copy_tree
from povertymap.serve.maps import LoadedMap

Api = Any


def _new_version(source: Path, dest: Path) -> Path:
    """A copy of the run published under another run id (what a new run looks like)."""
    copy_tree(source, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["run_id"] = manifest["run_id"] + "-v2"
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


@pytest.mark.slow
def test_swap_under_load_fails_no_request(api: Api, loaded: LoadedMap, serve_run: Path) -> None:
    new_run = _new_version(serve_run, serve_run.parent / f"{serve_run.name}-v2")
    centre = loaded.cells.geometry.iloc[10].representative_point()
    params = {"lon": centre.x, "lat": centre.y}
    stop = threading.Event()
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def hammer() -> None:
        while not stop.is_set():
            r = api.client.get("/v1/maps/tiny/point", params=params)
            with lock:
                results.append((r.status_code, r.headers.get("X-Model-Version", "")))

    with api.client:
        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        while len(results) < 20:
            threading.Event().wait(0.01)
        r = api.client.post(
            "/v1/admin/maps/tiny/reload", json={"run_dir": str(new_run)}, headers=api.auth("admin")
        )
        n_at_swap = len(results)
        while len(results) < n_at_swap + 20:
            threading.Event().wait(0.01)
        stop.set()
        for t in threads:
            t.join()
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["old_version"] == loaded.version and body["new_version"].endswith(
        loaded.version.split("+")[1]
    )
    assert body["new_version"] != body["old_version"]
    assert [s for s, _ in results if s != 200] == []
    versions = [v for _, v in results]
    assert versions[0] == loaded.version and versions[-1] == body["new_version"]
    assert set(versions) == {loaded.version, body["new_version"]}
    first_new = versions.index(body["new_version"])
    assert all(v == body["new_version"] for v in versions[first_new + 4 :])  # 4 were in flight
    metrics = api.client.get("/metrics").text
    assert 'povertymap_model_swaps_total{map="tiny",outcome="swapped"} 1.0' in metrics
    assert f'povertymap_model_info{{map="tiny",version="{body["new_version"]}"}} 1.0' in metrics
    assert f'version="{loaded.version}"' not in metrics


def test_a_failed_reload_keeps_the_old_version(
    api: Api, loaded: LoadedMap, serve_run: Path
) -> None:
    missing = serve_run.parent / "no-such-run"
    r = api.client.post(
        "/v1/admin/maps/tiny/reload", json={"run_dir": str(missing)}, headers=api.auth("admin")
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    outside = api.client.post(
        "/v1/admin/maps/tiny/reload", json={"run_dir": "/etc"}, headers=api.auth("admin")
    )
    assert outside.status_code == 422
    point = api.client.get("/v1/maps/tiny/point", params={"lon": 35.0, "lat": -6.0})
    assert point.headers["X-Model-Version"] == loaded.version
    assert 'outcome="failed"} 1.0' in api.client.get("/metrics").text
