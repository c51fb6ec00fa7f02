"""Randomness for the simulator: named child generators and coordinate-hashed noise.

Every component draws from its own :class:`numpy.random.Generator`, derived from the seed
and the component's name (and, for work done window by window, the window's position), so
changing how one component uses randomness never shifts another, and a window's draws do
not depend on the order windows are processed in.

Fine textures (field parcels, clouds, within-cell population texture) use *hashed* noise:
values are a pure function of integer lattice coordinates in the working CRS and a key, so
any window of any size gives the same pixels and there are no seams between windows.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["Streams", "gaussian_field", "hash_uniform", "value_noise", "value_noise_grid"]

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_P1 = np.uint64(0xC2B2AE3D27D4EB4F)
_P2 = np.uint64(0x165667B19E3779F9)


class Streams:
    """Child generators of one seed, keyed by component name and integers.

    ``Streams(7).get("welfare", 3, 4)`` always returns a generator in the same state, and
    one independent of ``get("imagery", 3, 4)`` or ``get("welfare", 3, 5)``.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def get(self, name: str, *keys: int) -> np.random.Generator:
        """The generator of component ``name`` (and window ``keys``)."""
        spawn_key = (zlib.crc32(name.encode()), *(int(k) & 0xFFFFFFFF for k in keys))
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=spawn_key))

    def key(self, name: str) -> int:
        """A 64-bit key for hashed noise of component ``name``."""
        ss = np.random.SeedSequence(self.seed, spawn_key=(zlib.crc32(name.encode()),))
        return int(ss.generate_state(1, dtype=np.uint64)[0])


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (array of uint64)."""
    h = (h ^ (h >> np.uint64(30))) * _M2
    h = (h ^ (h >> np.uint64(27))) * _M3
    return h ^ (h >> np.uint64(31))


def hash_uniform(i: np.ndarray, j: np.ndarray, key: int) -> np.ndarray:
    """Uniform [0, 1) values that are a pure function of integer lattice point (i, j) and key."""
    ii = np.asarray(i, dtype=np.int64).view(np.uint64)
    jj = np.asarray(j, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(ii * _P1 + jj * _P2 + np.uint64(key & 0xFFFFFFFFFFFFFFFF) * _M1 + _M1)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def value_noise(
    x: np.ndarray, y: np.ndarray, scale: float, key: int, octaves: int = 1
) -> np.ndarray:
    """Smooth noise in [-1, 1] at coordinates x, y (same units as ``scale``).

    Uniform values on a square lattice of spacing ``scale``, blended with a smoothstep;
    further octaves halve the spacing and the amplitude. Broadcasts ``x`` against ``y``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    total = np.zeros(np.broadcast_shapes(x.shape, y.shape))
    amp, norm, s = 1.0, 0.0, float(scale)
    for octave in range(octaves):
        gx, gy = x / s, y / s
        i0, j0 = np.floor(gx), np.floor(gy)
        fx, fy = gx - i0, gy - j0
        fx = fx * fx * (3 - 2 * fx)
        fy = fy * fy * (3 - 2 * fy)
        i0 = i0.astype(np.int64)
        j0 = j0.astype(np.int64)
        k = key + 7919 * octave
        v00 = hash_uniform(i0, j0, k)
        v10 = hash_uniform(i0 + 1, j0, k)
        v01 = hash_uniform(i0, j0 + 1, k)
        v11 = hash_uniform(i0 + 1, j0 + 1, k)
        top = v00 + (v10 - v00) * fx
        bottom = v01 + (v11 - v01) * fx
        total = total + amp * (2.0 * (top + (bottom - top) * fy) - 1.0)
        norm += amp
        amp *= 0.5
        s *= 0.5
    return total / norm


def value_noise_grid(
    xs: np.ndarray, ys: np.ndarray, scale: float, key: int, octaves: int = 1
) -> np.ndarray:
    """:func:`value_noise` on the grid ``ys`` (rows) x ``xs`` (cols), shape (len(ys), len(xs)).

    Same values as ``value_noise(xs[None, :], ys[:, None], ...)`` (up to rounding), but the
    lattice is hashed once and interpolated separably: a few operations per pixel.
    """
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    total = np.zeros((ys.size, xs.size), np.float32)
    amp, norm, s = 1.0, 0.0, float(scale)
    for octave in range(octaves):
        gx, gy = xs / s, ys / s
        i0, j0 = np.floor(gx), np.floor(gy)
        fx, fy = gx - i0, gy - j0
        fx = (fx * fx * (3 - 2 * fx)).astype(np.float32)
        fy = (fy * fy * (3 - 2 * fy)).astype(np.float32)
        i0 = i0.astype(np.int64)
        j0 = j0.astype(np.int64)
        imin, jmin = int(i0.min()), int(j0.min())
        li = np.arange(imin, int(i0.max()) + 2)
        lj = np.arange(jmin, int(j0.max()) + 2)
        lattice = hash_uniform(li[None, :], lj[:, None], key + 7919 * octave).astype(np.float32)
        a = lattice[:, i0 - imin]
        along_x = a + (lattice[:, i0 - imin + 1] - a) * fx[None, :]
        top = along_x[j0 - jmin]
        value = top + (along_x[j0 - jmin + 1] - top) * fy[:, None]
        total += np.float32(amp) * (2.0 * value - 1.0)
        norm += amp
        amp *= 0.5
        s *= 0.5
    return total / np.float32(norm)


def gaussian_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """A stationary Gaussian random field with unit variance and correlation ~``sigma_px``.

    White noise smoothed by a Gaussian kernel (reflecting edges), rescaled to mean 0 and
    standard deviation 1 over the array.
    """
    noise = rng.standard_normal(shape)
    field = gaussian_filter(noise, sigma=max(sigma_px, 0.0), mode="reflect")
    sd = float(field.std())
    return (field - field.mean()) / (sd if sd > 0 else 1.0)
