"""Tiny imagery for the deep-learning tests: the tiny study area plus imagery and lights.

``imagery.tif`` (UTM 36S, 50 m pixels, 4 uint8 bands) and ``lights_utm.tif`` (UTM, 500 m)
cover the tiny area. Lights fall off from the west edge; imagery has more bright "roofs"
and a brighter background where it is lit, plus texture noise, so a CNN can learn the link
in one or two epochs. A 2 x 2 km cloud (all bands 250) sits in the east.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.transform import from_origin

from builders import UTM, TinyStudy, write_tif

IMG_X0, IMG_Y1, IMG_RES = 720_000.0, 9_338_000.0, 50.0
IMG_W, IMG_H = 440, 260
CLOUD = (736_000.0, 9_330_000.0, 738_000.0, 9_332_000.0)  # xmin, ymin, xmax, ymax


def light_level(x: np.ndarray) -> np.ndarray:
    """Nightlight radiance as a function of the UTM x coordinate."""
    return np.where(x < 733_000, 30.0 * np.exp(-(x - 721_000) / 3000.0), 0.0)


def write_imagery_area(root: Path, seed: int = 0) -> Path:
    """Write the tiny area with imagery and UTM nightlights; return the config path."""
    tiny = TinyStudy(root)
    rng = np.random.default_rng(seed)
    xs = IMG_X0 + (np.arange(IMG_W) + 0.5) * IMG_RES
    ys = IMG_Y1 - (np.arange(IMG_H) + 0.5) * IMG_RES
    level = np.broadcast_to(np.log1p(light_level(xs))[None, :] / np.log1p(30.0), (IMG_H, IMG_W))
    roofs = rng.random((IMG_H, IMG_W)) < 0.05 + 0.4 * level
    img = np.empty((4, IMG_H, IMG_W), dtype=np.float64)
    for b, base in enumerate((60.0, 70.0, 50.0, 120.0)):
        img[b] = base + 30.0 * level + rng.normal(0, 8, (IMG_H, IMG_W)) + 90.0 * roofs
    img[3] -= 60.0 * level  # less vegetation where it is lit
    cx = (xs >= CLOUD[0]) & (xs < CLOUD[2])
    cy = (ys >= CLOUD[1]) & (ys < CLOUD[3])
    img[:, cy[:, None] & cx[None, :]] = 250.0
    write_tif(
        root / "imagery.tif",
        np.clip(img, 1, 250).astype(np.uint8),
        crs=UTM,
        transform=from_origin(IMG_X0, IMG_Y1, IMG_RES, IMG_RES),
        nodata=0,
        descriptions=["red", "green", "blue", "nir"],
    )
    lx = 719_000.0 + (np.arange(50) + 0.5) * 500.0
    lights = np.broadcast_to(light_level(lx)[None, :], (28, 50)).astype("float32")
    write_tif(
        root / "lights_utm.tif",
        np.ascontiguousarray(lights),
        crs=UTM,
        transform=from_origin(719_000, 9_338_000, 500, 500),
    )
    cfg = tiny.config()
    cfg["rasters"]["imagery"] = {"path": "imagery.tif", "bands": ["red", "green", "blue", "nir"]}
    cfg["rasters"]["nightlights"] = {"path": "lights_utm.tif"}
    return tiny.write(cfg)


#: CNN settings small enough to train in seconds on the tiny area.
TINY_SETTINGS = {
    "width": 8,
    "depth": 2,
    "embedding_dim": 8,
    "epochs": 3,
    "patience": 3,
    "batch_size": 32,
    "val_block_cells": 4,
    "stats_tiles": 64,
    "cloud_min": 0.94,
}


@dataclass
class Trained:
    """A tiny CNN trained on the tiny area (a ``TrainResult``), with what it was trained on."""

    result: object
    grid: object
    ix: np.ndarray
    iy: np.ndarray
    radiance: np.ndarray
