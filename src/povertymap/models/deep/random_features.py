"""Random convolutional features (MOSAIKS, Rolf et al. 2021), in numpy.

``K`` filters are patches of ``p x p`` pixels (all bands) sampled at random from the
standardised imagery and ZCA-whitened with the covariance of a larger patch sample (so
filters respond to structure, not to the dominant colour direction). Each tile is convolved
with every filter; the responses go through ``ReLU(z - b)`` and ``ReLU(-z - b)`` and are
averaged over the tile's positions, giving ``2K`` features per tile. Nothing is trained:
the featurisation is fixed by ``random_state`` and the band statistics, and a ridge
regression on top learns the task.

Masking: positions whose patch holds an invalid pixel are left out of the average, so
clouds and nodata change which positions count, not the values; a tile with no fully valid
patch gets NaN features.

The convolution is a matrix product of the tile's patches ``(positions, p*p*bands)`` by the
filters ``(p*p*bands, K)``, done for a few tiles at a time so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "RandomFilters",
    "patch_matrix",
    "random_conv_features",
    "sample_patches",
    "sample_random_filters",
    "zca_matrix",
]


@dataclass(frozen=True)
class RandomFilters:
    """Whitened random filters ``(K, p, p, bands)`` and the ReLU bias."""

    weights: np.ndarray
    bias: float = 0.0

    @property
    def n_filters(self) -> int:
        """``K``; the transform gives ``2K`` features."""
        return int(self.weights.shape[0])

    @property
    def patch(self) -> int:
        """Filter edge ``p`` in pixels."""
        return int(self.weights.shape[1])


def patch_matrix(tiles: np.ndarray, patch: int) -> np.ndarray:
    """All ``patch x patch`` patches of ``tiles (n, H, W, C)`` as ``(n, H', W', p*p*C)``.

    Flattened in (row, col, band) order, the order of ``weights.reshape(K, -1)``.
    """
    v = sliding_window_view(tiles, (patch, patch), axis=(1, 2))  # (n, H', W', C, p, p)
    v = np.moveaxis(v, 3, -1)  # (n, H', W', p, p, C)
    n, h, w = v.shape[:3]
    return v.reshape(n, h, w, -1)


def _valid_positions(valid: np.ndarray, patch: int) -> np.ndarray:
    """Positions whose whole patch is valid: ``(n, H', W')`` bool."""
    v = sliding_window_view(valid, (patch, patch), axis=(1, 2))
    return np.asarray(v.all(axis=(-2, -1)))


def sample_patches(
    tiles: np.ndarray,
    valid: np.ndarray,
    n_patches: int,
    patch: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``n_patches`` fully valid patches ``(n, p*p*C)`` drawn uniformly from the tiles."""
    ok = _valid_positions(valid, patch)
    where = np.argwhere(ok)
    if len(where) == 0:
        raise ValueError("no fully valid patch in the tiles given")
    pick = where[rng.integers(0, len(where), size=n_patches)]
    out = np.empty((n_patches, patch * patch * tiles.shape[-1]), dtype=np.float64)
    for k, (t, r, c) in enumerate(pick):
        out[k] = tiles[t, r : r + patch, c : c + patch, :].reshape(-1)
    return out


def zca_matrix(patches: np.ndarray, eps: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """ZCA whitening ``(mean, W)`` of patch rows: ``(x - mean) @ W`` has ~identity covariance.

    ``eps`` (relative to the mean eigenvalue) keeps near-zero directions from being blown
    up into noise, as in Coates & Ng (2011).
    """
    x = np.asarray(patches, dtype=np.float64)
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 0.0)
    reg = eps * max(float(vals.mean()), 1e-12)
    w = (vecs * (1.0 / np.sqrt(vals + reg))) @ vecs.T
    return mean, w


def sample_random_filters(
    tiles: np.ndarray,
    valid: np.ndarray,
    *,
    n_filters: int,
    patch: int,
    whiten_patches: int = 10_000,
    eps: float = 1e-2,
    bias: float = 0.0,
    random_state: int = 0,
) -> RandomFilters:
    """Filters: ``n_filters`` random patches of standardised tiles, ZCA-whitened.

    The whitening matrix comes from ``whiten_patches`` other random patches. Each filter is
    scaled to unit norm, so the bias is on the scale of a patch's projection.
    """
    rng = np.random.default_rng(random_state)
    sample = sample_patches(tiles, valid, max(whiten_patches, n_filters), patch, rng)
    mean, w = zca_matrix(sample, eps)
    chosen = sample_patches(tiles, valid, n_filters, patch, rng)
    f = (chosen - mean) @ w
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    weights = f.reshape(n_filters, patch, patch, tiles.shape[-1]).astype(np.float32)
    return RandomFilters(weights=weights, bias=float(bias))


def random_conv_features(
    tiles: np.ndarray,
    valid: np.ndarray,
    filters: RandomFilters,
    *,
    stride: int = 1,
    tiles_per_step: int = 16,
) -> np.ndarray:
    """``(n, 2K)`` features: valid-position means of ``ReLU(z - b)`` then of ``ReLU(-z - b)``.

    ``tiles`` are standardised ``(n, H, W, C)`` float tiles (0 where invalid), ``valid`` the
    ``(n, H, W)`` mask. ``z`` is the correlation (no kernel flip, as in CNNs) of a tile with
    each filter at every ``stride``-th position where the filter fits inside the tile (a
    stride of 2 averages a quarter of the positions: 4x faster, the filters still see
    every pixel's neighbourhood at full resolution).
    """
    p = filters.patch
    k = filters.n_filters
    w = np.ascontiguousarray(filters.weights.reshape(k, -1).T, dtype=np.float32)  # (p*p*C, K)
    b = np.float32(filters.bias)
    n = len(tiles)
    out = np.full((n, 2 * k), np.nan, dtype=np.float32)
    for s in range(0, n, tiles_per_step):
        t = np.asarray(tiles[s : s + tiles_per_step], dtype=np.float32)
        m = len(t)
        ok = _valid_positions(valid[s : s + tiles_per_step], p)[:, ::stride, ::stride]
        ok = ok.reshape(m, -1).astype(np.float32)  # (m, P)
        n_ok = ok.sum(axis=1)
        patches = patch_matrix(t, p)[:, ::stride, ::stride].reshape(m * ok.shape[1], -1)
        z = (patches @ w).reshape(m, ok.shape[1], k)  # the convolution, one BLAS call
        weights = ok / np.maximum(n_ok, 1.0)[:, None]
        # ReLU(z - b) and ReLU(-z - b) = -min(z + b, 0), in place to spare memory.
        neg = np.minimum(z, -b)
        neg += b
        np.maximum(z, b, out=z)
        z -= b
        out[s : s + m, :k] = np.einsum("mp,mpk->mk", weights, z)
        out[s : s + m, k:] = -np.einsum("mp,mpk->mk", weights, neg)
        out[s : s + m][n_ok == 0] = np.nan
    return out
