"""Render the demo country in one figure: population, nightlights, imagery, true poverty.

    python docs/world_figure.py                       # generates the demo in a temp folder
    python docs/world_figure.py --world data/demo     # or draws an existing country

writes ``docs/img/demo-country.png`` (shown in the README and docs/world.md).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import geopandas as gpd
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import rasterio
from matplotlib.colors import LogNorm
from matplotlib.patches import Rectangle

from povertymap.world import generate

HERE = Path(__file__).resolve().parent


def _cells_image(cells: pd.DataFrame, column: str) -> tuple[np.ndarray, list[float]]:
    """A cell column as an image (row 0 north) and its extent in km of the working CRS."""
    ix0, ix1 = cells["ix"].min(), cells["ix"].max()
    iy0, iy1 = cells["iy"].min(), cells["iy"].max()
    img = np.full((iy1 - iy0 + 1, ix1 - ix0 + 1), np.nan)
    img[iy1 - cells["iy"], cells["ix"] - ix0] = cells[column]
    return img, [ix0, ix1 + 1, iy0, iy1 + 1]


def draw(world: Path, out: Path) -> Path:
    """Draw the four panels of ``world`` into ``out`` (PNG)."""
    cells = pd.read_parquet(world / "truth" / "cells.parquet")
    admin = gpd.read_file(world / "admin.geojson").to_crs("EPSG:32736")
    admin1 = gpd.read_file(world / "admin1.geojson").to_crs("EPSG:32736")
    water = gpd.read_file(world / "truth" / "water.geojson").to_crs("EPSG:32736")
    roads = gpd.read_file(world / "roads.geojson").to_crs("EPSG:32736")
    clusters = pd.read_csv(world / "clusters.csv")
    places = gpd.read_file(world / "truth" / "settlements.geojson").to_crs("EPSG:32736")
    km = 1000.0

    def outline(ax: plt.Axes, lw: float = 0.4) -> None:
        admin.boundary.scale(1 / km, 1 / km, origin=(0, 0)).plot(
            ax=ax, color="white", lw=lw, alpha=0.5
        )
        admin1.boundary.scale(1 / km, 1 / km, origin=(0, 0)).plot(ax=ax, color="white", lw=1.2)

    fig, axes = plt.subplots(2, 2, figsize=(13, 10.5), constrained_layout=True)
    bounds = admin.total_bounds / km
    lake = water[water["kind"] == "lake"].scale(1 / km, 1 / km, origin=(0, 0))

    # 1. population, 1 km cells from the 100 m raster
    ax = axes[0, 0]
    pop, extent = _cells_image(cells, "population")
    im = ax.imshow(np.where(pop > 0, pop, np.nan), extent=extent, cmap="magma",
                   norm=LogNorm(vmin=1, vmax=np.nanmax(pop)))  # fmt: skip
    lake.plot(ax=ax, color="#1d2b44")
    roads[roads["highway"].isin(["primary", "secondary"])].scale(
        1 / km, 1 / km, origin=(0, 0)
    ).plot(ax=ax, color="#8fd3ff", lw=0.6)
    outline(ax)
    fig.colorbar(im, ax=ax, shrink=0.8, label="people per km² (population.tif)")
    ax.set_title("Population, main roads, admin units")

    # 2. nightlights on their own WGS84 grid, shown in lon/lat
    ax = axes[0, 1]
    with rasterio.open(world / "nightlights.tif") as src:
        rad = src.read(1)
        b = src.bounds
    im = ax.imshow(np.log1p(rad), extent=[b.left, b.right, b.bottom, b.top], cmap="inferno")
    admin.to_crs("EPSG:4326").boundary.plot(ax=ax, color="white", lw=0.3, alpha=0.4)
    fig.colorbar(im, ax=ax, shrink=0.8, label="log(1 + radiance), nW/cm²/sr")
    dark = (cells.loc[cells["population"] > 0, "radiance"] < 0.6).mean()
    ax.set_title(f"VIIRS-like nightlights: {dark:.0%} of populated cells are dark")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")

    # 3. imagery: a 10 km crop around the largest town with its surroundings
    ax = axes[1, 0]
    towns = places[places["kind"] == "town"].copy()
    inner = admin.union_all().boundary
    towns["inland_km"] = towns.distance(inner) / km
    town = towns[towns["inland_km"] > 7].sort_values("population").iloc[-1]
    half = 5000.0
    with rasterio.open(world / "imagery.tif") as src:
        window = rasterio.windows.from_bounds(
            town.geometry.x - half, town.geometry.y - half, town.geometry.x + half,
            town.geometry.y + half, transform=src.transform,
        )  # fmt: skip
        rgb = src.read([1, 2, 3], window=window).astype(float)
    rgb = np.moveaxis(rgb, 0, -1)
    clear = rgb.mean(axis=2) < 150  # stretch on the ground, not on clouds
    lo, hi = np.percentile(rgb[clear], 0.5), np.percentile(rgb[clear], 99.8)  # one stretch
    rgb = np.clip((rgb - lo) / (hi - lo), 0, 1) ** 0.9
    crop = [(town.geometry.x - half) / km, (town.geometry.x + half) / km,
            (town.geometry.y - half) / km, (town.geometry.y + half) / km]  # fmt: skip
    ax.imshow(rgb, extent=crop)
    ax.set_title(f"Imagery (20 m, true colour) around {town['name']}")
    axes[0, 0].add_patch(Rectangle((crop[0], crop[2]), 2 * half / km, 2 * half / km,
                                   fill=False, ec="cyan", lw=1.2))  # fmt: skip

    # 4. true poverty rate, with the displaced survey clusters
    ax = axes[1, 1]
    rate, extent = _cells_image(cells, "poverty_rate")
    im = ax.imshow(rate, extent=extent, cmap="RdYlGn_r", vmin=0, vmax=1)
    lake.plot(ax=ax, color="#1d2b44")
    outline(ax)
    pts = gpd.GeoSeries(
        gpd.points_from_xy(clusters["lon"], clusters["lat"]), crs="EPSG:4326"
    ).to_crs("EPSG:32736")
    ax.scatter(pts.x / km, pts.y / km, s=4, c="black", label="survey clusters (displaced)")
    ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8, label="true share of people below the poverty line")
    ax.set_title("Ground truth: poverty rate per 1 km cell")

    for a in (axes[0, 0], axes[1, 1]):
        a.set_xlim(bounds[0] - 2, bounds[2] + 2)
        a.set_ylim(bounds[1] - 2, bounds[3] + 2)
        a.set_xlabel("easting, km (UTM 36S)")
        a.set_ylabel("northing, km")
    axes[1, 0].set_xlabel("easting, km")
    fig.suptitle("The synthetic demo country (povertymap.world, seed 7)", fontsize=14)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=None, help="an existing country folder")
    parser.add_argument("--out", type=Path, default=HERE / "img" / "demo-country.png")
    args = parser.parse_args()
    if args.world is not None:
        print(draw(args.world, args.out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "demo"
        generate("demo", seed=7, out=world)
        print(draw(world, args.out))


if __name__ == "__main__":
    main()
