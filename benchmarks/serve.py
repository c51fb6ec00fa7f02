"""Stepped load on the poverty-map service: p50, p99 and error rate per step, as JSON.

Starts ``povertymap serve`` on a run directory (loopback only), then drives open-loop
load at 50, 100, 200 and 400 requests/s (each step bounded in time and count) on point
queries, admin GeoJSON and cached tiles. The client runs on the same machine as the
server, so on a 2-core box the two compete: read the figures as an upper bound on the
latency a separate client would see.

    python benchmarks/serve.py --run runs/<run_id>       # default: a tiny run made on the fly
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tiny_run(folder: Path) -> Path:
    from povertymap.io.configfile import read_config
    from povertymap.pipeline import run
    from povertymap.world import generate

    study = generate("tiny", seed=7, out=folder / "tiny")
    return run(read_config(study), runs=folder / "runs").path


def _targets(run_dir: Path, n: int, seed: int = 0) -> tuple[str, list[dict[str, float]], list[str]]:
    """The map name, ``n`` points at cell centres, and tile paths covering the map."""
    from povertymap.rundir import open_run
    from povertymap.serve.tiles import tile_of

    run = open_run(run_dir)
    name = str(run.config_data().get("name"))
    cells = run.cells().to_crs(4326)
    centres = cells.geometry.representative_point()
    rng = random.Random(seed)
    idx = [rng.randrange(len(centres)) for _ in range(n)]
    points = [{"lon": float(centres.iloc[i].x), "lat": float(centres.iloc[i].y)} for i in idx]
    tiles = set()
    for p in points[:200]:
        for z in (10, 11, 12):
            x, y = tile_of(p["lon"], p["lat"], z)
            tiles.add(f"/v1/maps/{name}/tiles/{z}/{x}/{y}.png")
    return name, points, sorted(tiles)


async def _step(
    client: httpx.AsyncClient, make_request: Any, rate: float, seconds: float, max_requests: int
) -> dict[str, Any]:
    """Open-loop load at ``rate`` per second for ``seconds`` (at most ``max_requests``)."""
    n = min(max_requests, int(rate * seconds))
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()

    async def one(i: int) -> None:
        nonlocal errors
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter()
        try:
            url, params = make_request(i)
            r = await client.get(url, params=params)
            if r.status_code != 200:
                errors += 1
        except httpx.HTTPError:
            errors += 1
        latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    return {
        "rate": rate,
        "sent": n,
        "achieved_rps": round(n / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "error_rate": round(errors / n, 4),
    }


async def _drive(
    base: str,
    name: str,
    points: list[dict[str, float]],
    tiles: list[str],
    steps: list[float],
    seconds: float,
    max_requests: int,
) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0) as client:
        for path in tiles:  # warm the tile cache: the target is for cached tiles
            await client.get(path)
        endpoints = {
            "point": lambda i: (f"/v1/maps/{name}/point", points[i % len(points)]),
            "admin": lambda i: (f"/v1/maps/{name}/admin", None),
            "tiles": lambda i: (tiles[i % len(tiles)], None),
        }
        out = []
        for endpoint, make in endpoints.items():
            for rate in steps:
                result = await _step(client, make, rate, seconds, max_requests)
                out.append({"endpoint": endpoint, **result})
                await asyncio.sleep(0.5)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run directory (default: a tiny run made now)")
    parser.add_argument("--steps", default="50,100,200,400", help="requests/s per step")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each step")
    parser.add_argument("--max-requests", type=int, default=2000, help="cap per step")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="povertymap-bench-"))
    run_dir = args.run or _tiny_run(scratch)
    name, points, tiles = _targets(run_dir, 5000)
    port = _free_port()
    env = {
        **os.environ,
        "POVERTYMAP_DATABASE_URL": f"sqlite:///{scratch}/service.db",
        "POVERTYMAP_RATE_PUBLIC": "100000",
        "POVERTYMAP_LOG_REQUESTS": "false",
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "povertymap"),
            "serve",
            str(run_dir),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        while time.perf_counter() - started < 180:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise SystemExit("the service did not become ready in 180 s")
        ready_s = time.perf_counter() - started
        steps = [float(s) for s in args.steps.split(",")]
        results = asyncio.run(
            _drive(base, name, points, tiles, steps, args.seconds, args.max_requests)
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    saturation = {}
    for endpoint in ("point", "admin", "tiles"):
        rows = [r for r in results if r["endpoint"] == endpoint]
        bad = [
            r["rate"]
            for r in rows
            if r["p99_ms"] > 50 or r["error_rate"] > 0 or r["achieved_rps"] < 0.9 * r["rate"]
        ]
        saturation[endpoint] = min(bad) if bad else None
    print(
        json.dumps(
            {
                "run": str(run_dir),
                "cpus": os.cpu_count(),
                "workers": 1,
                "ready_seconds": round(ready_s, 1),
                "seconds_per_step": args.seconds,
                "steps": results,
                "first_step_over_p99_50ms_or_erroring": saturation,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
