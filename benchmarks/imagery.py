"""Imagery deep learning: speed, memory and (optionally) quality figures, printed as JSON.

Usage::

    python benchmarks/imagery.py                       # speed + memory on synthetic tiles
    python benchmarks/imagery.py --demo /tmp/deep-demo  # + demo training times
    python benchmarks/imagery.py --demo /tmp/deep-demo --quality   # + r² table vs the truth

Figures:

* ``matmul_gflops``: float32 2048 x 2048 matmul in tensorflow, best of 5, this process:
  the machine's practical compute ceiling.
* ``cnn``: FLOPs per tile of the default transfer CNN (counted from the layer shapes),
  embedding throughput (tiles/s, in memory, batches of 256) and the fraction of the matmul
  ceiling it reaches; training throughput (tiles/s, forward + backward ~ 3x the FLOPs).
* ``rcf``: the same for the random convolutional features (numpy).
* ``memory``: peak RSS of a fresh process that streams N and 4N cells from a raster into the
  embedding store (CNN and RCF): it should barely grow with N.
* ``demo`` (with ``--demo``): transfer CNN training time on the demo world with the default
  settings (and, with ``--quality``, a faster and a larger one), RCF fit + transform time.
* ``quality`` (with ``--quality``): r² of the truth's cell mean log consumption from
  nightlights, CNN and random features (ridge), overall and among dark cells, see
  ``docs/deep.md``.

Benchmarks never assert: they print what they measure. The machine's load average is
printed too, since other processes on a shared machine slow every figure down.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

TILE = 50  # demo: 1 km cells of 20 m pixels


def matmul_gflops() -> float:
    """Best-of-5 GFLOP/s of a 2048 x 2048 float32 matmul in tensorflow."""
    import tensorflow as tf

    a = tf.random.normal((2048, 2048), seed=0)
    f = tf.function(lambda x: tf.matmul(x, x))
    f(a).numpy()
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        f(a).numpy()
        best = min(best, time.perf_counter() - t)
    return 2 * 2048**3 / best / 1e9


def synthetic_tiles(n: int, seed: int = 0) -> np.ndarray:
    """``n`` uint8 model inputs (4 bands + validity) with some texture."""
    rng = np.random.default_rng(seed)
    x = rng.integers(20, 200, size=(n, TILE, TILE, 5), dtype=np.uint8)
    x[..., 4] = 1
    return x


def cnn_figures(peak: float) -> dict[str, Any]:
    """FLOPs, inference and training throughput of the default transfer CNN."""
    import keras
    import tensorflow as tf

    from povertymap.models.deep.cnn import build_cnn, cnn_flops, embedding_model
    from povertymap.models.deep.train import CNNSettings

    s = CNNSettings()
    model = build_cnn(
        (TILE, TILE),
        [80.0, 90.0, 60.0, 120.0],
        [30.0, 30.0, 30.0, 40.0],
        width=s.width,
        depth=s.depth,
        embedding_dim=s.embedding_dim,
        dropout=s.dropout,
    )
    flops = cnn_flops(model)
    emb = embedding_model(model)
    spec = tf.TensorSpec((None, TILE, TILE, 5), tf.float32)
    forward = tf.function(lambda x: emb(x, training=False), input_signature=[spec])
    x = tf.convert_to_tensor(synthetic_tiles(2048), dtype=tf.float32)
    forward(x[:256])
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        for i in range(0, 2048, 256):
            forward(x[i : i + 256]).numpy()
        best = min(best, time.perf_counter() - t)
    tiles_s = 2048 / best
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    y = np.random.default_rng(0).integers(0, 3, 2048)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(s.batch_size)
    model.fit(ds.take(2), epochs=1, shuffle=False, verbose=0)
    t = time.perf_counter()
    model.fit(ds, epochs=1, shuffle=False, verbose=0)
    train_tiles_s = 2048 / (time.perf_counter() - t)
    return {
        "tile": [TILE, TILE, 5],
        "settings": {"width": s.width, "depth": s.depth, "embedding_dim": s.embedding_dim},
        "flops_per_tile": flops,
        "embed_tiles_per_s": round(tiles_s, 1),
        "embed_gflops": round(tiles_s * flops / 1e9, 2),
        "embed_fraction_of_matmul": round(tiles_s * flops / 1e9 / peak, 3),
        "train_tiles_per_s": round(train_tiles_s, 1),
        "train_gflops": round(train_tiles_s * 3 * flops / 1e9, 2),
        "train_fraction_of_matmul": round(train_tiles_s * 3 * flops / 1e9 / peak, 3),
    }


def rcf_figures(
    peak: float, n_filters: int = 256, patch: int = 3, stride: int = 2
) -> dict[str, Any]:
    """Throughput of the random convolutional features (numpy) on standardised tiles."""
    from povertymap.models.deep.random_features import random_conv_features, sample_random_filters

    x = (synthetic_tiles(512)[..., :4].astype(np.float32) - 110.0) / 50.0
    valid = np.ones(x.shape[:3], bool)
    filters = sample_random_filters(x[:64], valid[:64], n_filters=n_filters, patch=patch)
    random_conv_features(x[:16], valid[:16], filters, stride=stride)
    t = time.perf_counter()
    random_conv_features(x, valid, filters, stride=stride)
    tiles_s = len(x) / (time.perf_counter() - t)
    positions = ((TILE - patch) // stride + 1) ** 2
    flops = 2 * positions * patch * patch * 4 * n_filters
    return {
        "n_filters": n_filters,
        "patch": patch,
        "stride": stride,
        "flops_per_tile": flops,
        "tiles_per_s": round(tiles_s, 1),
        "gflops": round(tiles_s * flops / 1e9, 2),
        "fraction_of_matmul": round(tiles_s * flops / 1e9 / peak, 3),
    }


# -- memory: a child process streams cells from a synthetic raster into the store ---------


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM): unlike ``ru_maxrss``, not inherited at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory_child(kind: str, side_cells: int, workdir: str) -> None:
    """Embed ``side_cells`` x ``side_cells`` cells of a synthetic raster; print peak RSS (MB)."""
    import rasterio
    from rasterio.transform import from_origin

    from povertymap.io.raster import open_raster
    from povertymap.models.deep.store import EmbeddingStore
    from povertymap.models.deep.tiles import TileGrid, iter_tile_blocks

    path = Path(workdir) / f"img{side_cells}.tif"
    px = side_cells * TILE
    profile = {
        "driver": "GTiff",
        "width": px,
        "height": px,
        "count": 4,
        "dtype": "uint8",
        "crs": "EPSG:32736",
        "transform": from_origin(700_000, 9_300_000, 20, 20),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as ds:  # written in strips: bounded memory
        for r in range(0, px, 256):
            h = min(256, px - r)
            ds.write(rng.integers(1, 200, (4, h, px), dtype=np.uint8), window=((r, r + h), (0, px)))
    base = _peak_rss_mb()
    src = open_raster(path)
    ix, iy = (
        a.ravel()
        for a in np.meshgrid(np.arange(700, 700 + side_cells), np.arange(9300 - side_cells, 9300))
    )
    store = EmbeddingStore(
        Path(workdir) / f"store-{kind}-{side_cells}", 64 if kind == "cnn" else 512, BLOCK
    )
    t = time.perf_counter()
    with src.reader() as r:
        grid = TileGrid(r.transform, 1000.0)
    if kind == "cnn":
        from povertymap.models.deep.cnn import build_cnn, embedding_model
        from povertymap.models.deep.train import embed_cells

        model = embedding_model(build_cnn((TILE, TILE), [100.0] * 4, [50.0] * 4))
        for idx, emb in embed_cells(model, src, None, grid, ix, iy, block_cells=BLOCK):
            store.put(ix[idx], iy[idx], emb)
    else:
        from povertymap.models.deep.random_features import (
            random_conv_features,
            sample_random_filters,
        )

        with src.reader() as r:
            first = next(iter_tile_blocks(r, grid, ix[:64], iy[:64]))[1]
            z = (first.pixels.astype(np.float32) - 100.0) / 50.0
            filters = sample_random_filters(z, first.valid, n_filters=256, patch=3)
            for idx, b in iter_tile_blocks(r, grid, ix, iy, block_cells=BLOCK):
                f = random_conv_features(
                    (b.pixels.astype(np.float32) - 100.0) / 50.0, b.valid, filters, stride=2
                )
                store.put(ix[idx], iy[idx], f)
    seconds = time.perf_counter() - t
    peak = _peak_rss_mb()
    print(
        json.dumps(
            {
                "cells": len(ix),
                "peak_rss_mb": round(peak, 1),
                "rss_before_mb": round(base, 1),
                "seconds": round(seconds, 1),
            }
        )
    )


BLOCK = 16  # cells per block side: N and 4N both span several blocks


def memory_figures(n_side: int = 32) -> dict[str, Any]:
    """Peak RSS for N = n_side² and 4N cells (4 and 16 blocks), each in a fresh process."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        for kind in ("rcf", "cnn"):
            rows = []
            for side in (n_side, 2 * n_side):
                res = subprocess.run(
                    [sys.executable, __file__, "--memory-child", kind, str(side), d],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ, "GDAL_CACHEMAX": "16"},  # bound GDAL's block cache (MB)
                )
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            out[kind] = rows
    return out


# -- the demo world -------------------------------------------------------------------


#: Demo settings compared: the defaults, a faster one and a larger one.
SETTINGS: dict[str, dict[str, Any]] = {
    "cnn": {},
    "cnn_fast": {"width": 8, "epochs": 4},
    "cnn_large": {"width": 32, "epochs": 15, "patience": 4},
}


def demo_figures(demo: Path, quality: bool) -> dict[str, Any]:
    """Training/embedding times on the demo world, and the r² table with ``quality``."""
    import pandas as pd

    from povertymap.engine.local import LocalEngine
    from povertymap.features.embeddings import RandomConvFeatures, TransferCNNFeatures
    from povertymap.io.configfile import read_config
    from povertymap.models.deep.labels import cell_means
    from povertymap.studyarea import load_study_area

    area = load_study_area(read_config(demo / "study.yaml"))
    engine = LocalEngine()
    grid = area.grid
    out: dict[str, Any] = {"cells": len(grid)}
    feats: dict[str, pd.DataFrame] = {}
    with area.rasters["nightlights"].reader(crs=area.crs) as r:
        rad = cell_means(r, area.cell_size, grid["ix"].to_numpy(), grid["iy"].to_numpy())
    feats["nl"] = pd.DataFrame({"nl": rad, "nl_log1p": np.log1p(rad)}, index=grid.index)
    with tempfile.TemporaryDirectory() as tmp:
        for tag, kw in SETTINGS.items():
            if tag != "cnn" and not quality:
                continue
            block = TransferCNNFeatures(cloud_min=150.0, cache_dir=Path(tmp), **kw)
            t = time.perf_counter()
            block.fit(area, engine=engine)
            fit_s = time.perf_counter() - t
            t = time.perf_counter()
            f = block.transform(area, grid, engine=engine)
            out[tag] = {
                "settings": kw or "defaults",
                "train_s": round(block.train_seconds_, 1),
                "fit_s": round(fit_s, 1),
                "epochs": len(block.history_["loss"]),
                "best_val_loss": round(min(block.history_.get("val_loss", [np.nan])), 3),
                "embed_s": round(time.perf_counter() - t, 1),
                "embed_tiles_per_s": round(len(grid) / (time.perf_counter() - t), 1),
            }
            feats[tag] = f.drop(columns=f"{block.name}_valid")
            if quality:
                feats[f"{tag}_ctx2km"] = _context(block, area, engine)
        block_r = RandomConvFeatures(cloud_min=150.0, cache_dir=Path(tmp))
        t = time.perf_counter()
        block_r.fit(area, engine=engine)
        f = block_r.transform(area, grid, engine=engine)
        out["rcf"] = {
            "fit_transform_s": round(time.perf_counter() - t, 1),
            "features": f.shape[1] - 1,
        }
        feats["rcf"] = f.drop(columns="rcf_valid")
        if quality:
            feats["rcf_ctx2km"] = _context(block_r, area, engine)
    if quality:
        out["quality"] = quality_table(feats, pd.read_parquet(demo / "truth" / "cells.parquet"))
    return out


def _context(block: Any, area: Any, engine: Any) -> Any:
    """Features of each cell's 5 x 5 km neighbourhood (the cell square widened by 2 km)."""
    from povertymap.models.deep.zones import cell_context_zones

    f = block.transform(area, cell_context_zones(area.grid, 2000.0), engine=engine)
    return f.drop(columns=f"{block.name}_valid").add_suffix("_ctx")


def quality_table(
    feats: dict[str, Any], truth: Any, n_train: int = 400, repeats: int = 5
) -> dict[str, Any]:
    """Ridge r² on held-out populated cells: train on ``n_train`` random cells (a survey),
    test on the rest, ``repeats`` draws; overall and on dark cells (truth ``lit`` false).
    Targets: the cell mean log consumption (with household sampling noise) and the noise-free
    latent ``expected_mean_log_consumption``."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    truth = truth.set_index("cell_id")
    pop = truth[truth["mean_log_consumption"].notna()]
    dark = ~pop["lit"].to_numpy(bool)
    combos = dict(feats)
    for name in list(feats):
        if name != "nl":
            combos[f"nl+{name}"] = feats["nl"].join(feats[name])
    table: dict[str, Any] = {
        "protocol": f"ridge (RidgeCV, standardised, mean-imputed) on {n_train} random populated "
        f"cells, tested on the other {len(pop) - n_train}; mean over {repeats} draws",
        "cells": len(pop),
        "dark_cells": int(dark.sum()),
    }
    for target in ("mean_log_consumption", "expected_mean_log_consumption"):
        y = pop[target].to_numpy()
        rows = {}
        for name, frame in combos.items():
            x = frame.reindex(pop.index).to_numpy(float)
            scores = []
            for r in range(repeats):
                rng = np.random.default_rng(r)
                train = np.zeros(len(y), bool)
                train[rng.choice(len(y), n_train, replace=False)] = True
                model = make_pipeline(
                    SimpleImputer(), StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 30))
                )
                model.fit(x[train], y[train])
                pred = model.predict(x[~train])
                d = dark[~train]
                scores.append((r2_score(y[~train], pred), r2_score(y[~train][d], pred[d])))
            s = np.asarray(scores)
            rows[name] = {
                "r2": round(float(s[:, 0].mean()), 3),
                "r2_dark": round(float(s[:, 1].mean()), 3),
                "r2_dark_sd": round(float(s[:, 1].std()), 3),
            }
        table[target] = rows
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, help="folder of a generated demo world")
    parser.add_argument("--quality", action="store_true", help="also the r² table (slow)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--memory-child", nargs=3, metavar=("KIND", "SIDE", "DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.memory_child:
        kind, side, d = args.memory_child
        _memory_child(kind, int(side), d)
        return
    out: dict[str, Any] = {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    peak = matmul_gflops()
    out["matmul_gflops"] = round(peak, 1)
    out["cnn"] = cnn_figures(peak)
    out["rcf"] = rcf_figures(peak)
    if not args.skip_memory:
        out["memory"] = memory_figures()
    if args.demo is not None:
        out["demo"] = demo_figures(args.demo, args.quality)
    out["load_average_at_end"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
