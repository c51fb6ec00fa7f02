"""Turn the shared LSMS Africa benchmark into a povertymap study area (clusters + features).

Reads ``villages.csv`` and ``image_hists.npz`` from the shared data folder (see its
README) and writes three files into the output folder:

- ``clusters.csv``: one row per village-round: ``cluster_id`` (the ``row`` index into the
  npz, unique; ``ea_id`` repeats across rounds and is 0 for some villages), ``lon``, ``lat``,
  ``asset_index`` (the target), ``country``, ``year``, ``fold`` (the published spatially
  separated in-country folds A-E) and ``ea_id``. ``fold`` and ``country`` are the group
  columns for ``povertymap evaluate --cv group --group fold|country``.
- ``features.csv``: ``cluster_id`` plus numeric features computed per village from its own
  histograms and nightlights only (never from the target, never from other villages), plus
  the country one-hot and the survey year, which are known for every village.
- ``study.yaml``: a study-area config for ``povertymap evaluate`` with the model recipe.
- ``study-within.yaml``: the same with ``model.target_standardize_by: country``: the model
  is fitted on, and scored against, the index standardised within each country (mean 0,
  sd 1), the figure that leave-one-country-out can honestly speak to (an unseen country's
  level is not in its villages' features; see the README).

The histograms count the 50,176 pixels of a 6.7 km patch in 102 bins per band. The bins
are on a normalised scale (the nightlights of an unlit patch all fall in bin 49, the lowest
bin any nightlights pixel reaches; bin 101 collects everything above the range), so the
features below use the bin index as the value: means, spreads and quantiles are then
affine transforms of the true ones, which is all a tree model or a standardised ridge needs.

Run from the repository root::

    python examples/lsms-africa/prepare.py
    povertymap evaluate examples/lsms-africa/build/study.yaml --cv group --group fold
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

__all__ = [
    "LGBM_PARAMS",
    "RIDGE_PARAMS",
    "build_tables",
    "load_raw",
    "main",
    "model_section",
    "study_config",
    "village_features",
    "write_outputs",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "lsms-africa"
DEFAULT_OUT = Path(__file__).resolve().parent / "build"

#: Quantile levels read off each band's cumulative histogram.
QUANTILES: tuple[float, ...] = (0.02, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.98)
#: Nightlights bin that holds unlit pixels (the lowest bin any nightlights pixel reaches).
NL_DARK_BIN = 49
#: Nightlights bins from which a pixel counts as lit / brightly lit (bin index >=).
NL_LIT_BINS: tuple[int, ...] = (55, 60)
#: First year of VIIRS nightlights in the data (DMSP before): the two sensors differ in scale.
VIIRS_FROM_YEAR = 2012

#: LightGBM recipe: the point of the pre-declared grid in ``benchmark.py`` (num_leaves x
#: n_estimators x colsample_bytree) with the best fold A-E CV r^2 on all the data. The
#: nested figure in the README (grid re-chosen inside each training set) is the honest one.
LGBM_PARAMS: dict[str, Any] = {
    "n_estimators": 150,
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_child_samples": 20,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.6,
    "random_state": 0,
    "verbose": -1,
}
#: Ridge recipe: RidgeCV keyword arguments (after a StandardScaler); alpha by efficient LOO.
RIDGE_PARAMS: dict[str, Any] = {"alphas": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]}


def load_raw(data_dir: Path) -> tuple[pd.DataFrame, dict[str, npt.NDArray[Any]]]:
    """Read ``villages.csv`` and the arrays of ``image_hists.npz`` (no pickles).

    Checks that the two files line up (row i of the csv is row i of the arrays), because
    every feature is matched to its village by position.
    """
    villages = pd.read_csv(data_dir / "villages.csv")
    with np.load(data_dir / "image_hists.npz", allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    n = len(villages)
    if not np.array_equal(villages["row"].to_numpy(), np.arange(n)):
        raise ValueError(f"{data_dir / 'villages.csv'}: column 'row' must be 0..{n - 1} in order")
    for key in ("hists", "nl_center", "nl_mean"):
        if arrays[key].shape[0] != n:
            raise ValueError(
                f"{data_dir / 'image_hists.npz'}: {key} has {arrays[key].shape[0]} rows, "
                f"villages.csv has {n}"
            )
    return villages, arrays


def _normalised_difference(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> Any:
    """(a - b) / (a + b): the NDVI-style ratio, here on mean bin indices (all > 0)."""
    return (a - b) / (a + b)


def village_features(
    hists: npt.NDArray[np.integer[Any]],
    bands: Sequence[str],
    nl_center: npt.NDArray[np.floating[Any]],
    nl_mean: npt.NDArray[np.floating[Any]],
    country: pd.Series,
    year: pd.Series,
) -> pd.DataFrame:
    """Per-village features from that village's histograms and nightlights only.

    Why these: the raw 8 x 102 histogram is sparse and mostly zeros (LightGBM on it: fold
    CV r^2 about 0.62); summarising each band's distribution by its moments, quantiles,
    overflow share and entropy keeps the signal in 14 numbers per band. Spectral indices
    from the band means add vegetation (nir/red), built-up (swir1/nir) and water
    (green/swir1) contrasts. Nightlights add the centre and patch mean (clipped at 0 and
    log1p'ed, since their scale is heavy-tailed), the shares of dark and lit pixels, and a
    VIIRS flag because DMSP and VIIRS values are not on one scale. Country one-hot and year
    carry the between-country level of the pooled asset index, which imagery alone
    cannot (every village has them, so they are not a leak).

    Returns a DataFrame with one row per village, in the input order, float64 columns.
    """
    counts = hists.astype(np.float64)
    share = counts / counts.sum(axis=2, keepdims=True)
    cdf = np.cumsum(share, axis=2)
    bins = np.arange(hists.shape[2], dtype=np.float64)
    mean = (share * bins).sum(axis=2)
    centred = bins[None, None, :] - mean[..., None]
    sd = np.sqrt((share * centred**2).sum(axis=2))
    skew = (share * (centred / np.maximum(sd, 1e-9)[..., None]) ** 3).sum(axis=2)
    logs = np.log(np.where(share > 0, share, 1.0))
    entropy = -(share * logs).sum(axis=2)

    out: dict[str, npt.NDArray[np.float64]] = {}
    for i, band in enumerate(bands):
        out[f"{band}_mean"] = mean[:, i]
        out[f"{band}_sd"] = sd[:, i]
        out[f"{band}_skew"] = skew[:, i]
        for q in QUANTILES:
            # first bin where the cumulative share reaches q
            out[f"{band}_q{round(q * 100):02d}"] = np.argmax(cdf[:, i] >= q - 1e-12, axis=1) * 1.0
        out[f"{band}_overflow"] = share[:, i, -1]
        out[f"{band}_entropy"] = entropy[:, i]

    m = {band: mean[:, i] for i, band in enumerate(bands)}
    out["ndvi"] = _normalised_difference(m["nir"], m["red"])
    out["ndbi"] = _normalised_difference(m["swir1"], m["nir"])
    out["mndwi"] = _normalised_difference(m["green"], m["swir1"])
    out["nbr"] = _normalised_difference(m["nir"], m["swir2"])
    out["brightness"] = (m["blue"] + m["green"] + m["red"]) / 3.0
    out["nir_minus_red"] = m["nir"] - m["red"]
    out["swir1_minus_nir"] = m["swir1"] - m["nir"]
    out["blue_minus_red"] = m["blue"] - m["red"]

    nl = list(bands).index("nightlights")
    center = np.asarray(nl_center, dtype=np.float64)
    patch = np.asarray(nl_mean, dtype=np.float64)
    out["nl_center"] = center
    out["nl_mean"] = patch
    out["nl_center_log1p"] = np.log1p(np.clip(center, 0.0, None))
    out["nl_mean_log1p"] = np.log1p(np.clip(patch, 0.0, None))
    out["nl_dark_share"] = share[:, nl, : NL_DARK_BIN + 1].sum(axis=1)
    for b in NL_LIT_BINS:
        out[f"nl_share_bin{b}_up"] = share[:, nl, b:].sum(axis=1)
    years = year.to_numpy(dtype=np.float64)
    out["viirs"] = (years >= VIIRS_FROM_YEAR).astype(np.float64)
    for code in sorted(country.unique()):
        out[f"country_{code}"] = (country.to_numpy() == code).astype(np.float64)
    out["year"] = years
    return pd.DataFrame(out)


def build_tables(
    villages: pd.DataFrame, arrays: Mapping[str, npt.NDArray[Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``clusters`` table and the ``features`` table, both keyed by ``cluster_id``."""
    clusters = pd.DataFrame(
        {
            "cluster_id": villages["row"].astype(np.int64),
            "lon": villages["lon"],
            "lat": villages["lat"],
            "asset_index": villages["asset_index"],
            "country": villages["country"],
            "year": villages["year"].astype(np.int64),
            "fold": villages["fold"],
            "ea_id": villages["ea_id"].astype(np.int64),
        }
    )
    feats = village_features(
        arrays["hists"],
        [str(b) for b in arrays["bands"]],
        arrays["nl_center"],
        arrays["nl_mean"],
        villages["country"],
        villages["year"],
    )
    feats.insert(0, "cluster_id", clusters["cluster_id"].to_numpy())
    return clusters, feats


def model_section(name: str) -> dict[str, Any]:
    """The ``model`` block of the config for ``lightgbm``, ``ridge`` or ``stack``."""
    if name == "lightgbm":
        return {"name": "lightgbm", "params": dict(LGBM_PARAMS)}
    if name == "ridge":
        return {"name": "ridge", "params": dict(RIDGE_PARAMS)}
    if name == "stack":
        return {
            "name": "stack",
            "estimators": [model_section("lightgbm"), model_section("ridge")],
        }
    raise ValueError(f"unknown model {name!r}; expected lightgbm, ridge or stack")


def study_config(model: str = "lightgbm", standardize_by: str | None = None) -> dict[str, Any]:
    """The study-area config (paths relative to the config file, as povertymap expects).

    ``standardize_by`` (a clusters column, e.g. ``country``) sets
    ``model.target_standardize_by``: fit and score the index standardised within it.
    """
    section = model_section(model)
    if standardize_by is not None:
        section["target_standardize_by"] = standardize_by
    return {
        "name": "lsms-africa",
        "survey": {
            "clusters": {
                "path": "clusters.csv",
                "id": "cluster_id",
                "lon": "lon",
                "lat": "lat",
                "target": "asset_index",
            }
        },
        "tables": [{"path": "features.csv", "key": "cluster_id"}],
        "model": section,
    }


def write_outputs(
    out_dir: Path,
    clusters: pd.DataFrame,
    feats: pd.DataFrame,
    config: Mapping[str, Any],
    within: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write clusters.csv, features.csv and study.yaml (and study-within.yaml when
    ``within`` is given) into ``out_dir``; return the paths.

    Floats are written at full precision (shortest round-trip repr), so reading the csv
    back gives the very numbers the benchmark used, and reruns give identical files.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "clusters.csv", out_dir / "features.csv"]
    clusters.to_csv(paths[0], index=False)
    feats.to_csv(paths[1], index=False)
    configs = {"study.yaml": config, **({"study-within.yaml": within} if within else {})}
    for name, cfg in configs.items():
        header = (
            "# Written by examples/lsms-africa/prepare.py; rerun it rather than editing.\n"
            f"# povertymap evaluate {name} --cv group --group fold   (or --group country)\n"
        )
        body = yaml.safe_dump(dict(cfg), sort_keys=False, default_flow_style=None)
        (out_dir / name).write_text(header + body, encoding="utf-8")
        paths.append(out_dir / name)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python examples/lsms-africa/prepare.py [--data DIR] [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help=f"shared data folder ({DEFAULT_DATA})"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})"
    )
    parser.add_argument(
        "--model",
        choices=("lightgbm", "ridge", "stack"),
        default="lightgbm",
        help="model written into study.yaml (default: lightgbm)",
    )
    args = parser.parse_args(argv)
    villages, arrays = load_raw(args.data)
    clusters, feats = build_tables(villages, arrays)
    paths = write_outputs(
        args.out,
        clusters,
        feats,
        study_config(args.model),
        within=study_config(args.model, standardize_by="country"),
    )
    n_feat = feats.shape[1] - 1
    print(f"{len(clusters)} clusters, {n_feat} features, model {args.model}:")
    for path in paths:
        print(f"  {path}")


if __name__ == "__main__":
    main()
