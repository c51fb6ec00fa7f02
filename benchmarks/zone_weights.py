"""Benchmark of the share matrix of map neighbourhoods (issue 16): polygon overlaps of
every disk with every cell it touches (``overlap_weights``) against one kernel per radius
(``zone_weights``), on square grids of cells with 2 km (urban) and 5 km (rural) disks, in
the same run, with the largest difference between the two matrices.

Prints one JSON object. Run: ``.venv/bin/python benchmarks/zone_weights.py [--sides 40,100]``.
"""

from __future__ import annotations

import argparse
import json
import time

import geopandas as gpd
import numpy as np
import shapely

from povertymap.features.zonal import cells_under, overlap_weights, zone_weights

CELL = 1000.0


def neighbourhoods(side: int) -> gpd.GeoDataFrame:
    """``side x side`` cell-centred disks, one in ten urban (2 km), the rest rural (5 km)."""
    ix, iy = np.meshgrid(np.arange(side), np.arange(side))
    centres = gpd.points_from_xy((ix.ravel() + 0.5) * CELL, (iy.ravel() + 0.5) * CELL)
    radius = np.where(np.arange(side * side) % 10 == 0, 2000.0, 5000.0)
    return gpd.GeoDataFrame(
        {"radius_m": radius}, geometry=shapely.buffer(centres, radius, quad_segs=16)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sides", default="40,100", help="grid sides to time (cells)")
    args = parser.parse_args()
    rows = []
    for side in (int(s) for s in args.sides.split(",")):
        zones = neighbourhoods(side)
        cells = cells_under(zones, CELL)
        start = time.perf_counter()
        slow = overlap_weights(zones, cells)
        polygons_s = time.perf_counter() - start
        start = time.perf_counter()
        fast = zone_weights(zones, cells, CELL)
        kernel_s = time.perf_counter() - start
        rows.append(
            {
                "zones": len(zones),
                "cells": len(cells),
                "nonzeros": int(slow.nnz),
                "polygons_s": round(polygons_s, 3),
                "kernel_s": round(kernel_s, 3),
                "speedup": round(polygons_s / kernel_s, 1),
                "max_abs_difference": float(abs(slow - fast).max()),
            }
        )
    print(json.dumps({"benchmark": "zone_weights", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
