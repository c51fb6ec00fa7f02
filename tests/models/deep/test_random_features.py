"""Random convolutional features: the transform on hand-made inputs, whitening, sampling."""

from __future__ import annotations

import numpy as np
import pytest

from povertymap.models.deep.random_features import (
    RandomFilters,
    patch_matrix,
    random_conv_features,
    sample_patches,
    sample_random_filters,
    zca_matrix,
)


def one_filter(weights: np.ndarray, bias: float = 0.0) -> RandomFilters:
    return RandomFilters(weights=np.asarray(weights, np.float32)[None], bias=bias)


def test_output_shape_and_halves() -> None:
    rng = np.random.default_rng(0)
    tiles = rng.normal(size=(5, 9, 7, 3)).astype(np.float32)
    filters = RandomFilters(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), bias=0.2)
    out = random_conv_features(tiles, np.ones((5, 9, 7), bool), filters, tiles_per_step=2)
    assert out.shape == (5, 8) and out.dtype == np.float32
    assert (out >= 0).all()


def test_constant_image_gives_the_filter_sum_on_one_half() -> None:
    w = np.arange(9, dtype=np.float32).reshape(3, 3, 1) - 3.0  # sums to 9
    tiles = np.full((2, 6, 6, 1), 2.0, np.float32)
    tiles[1] *= -1
    out = random_conv_features(tiles, np.ones((2, 6, 6), bool), one_filter(w))
    np.testing.assert_allclose(out, [[18.0, 0.0], [0.0, 18.0]], rtol=1e-6)


def test_known_filter_is_a_correlation_averaged_over_positions() -> None:
    """Filter picking the pixel right of the centre: z(r, c) = x[r + 1, c + 2]."""
    w = np.zeros((3, 3, 1), np.float32)
    w[1, 2, 0] = 1.0
    x = np.arange(20, dtype=np.float32).reshape(1, 4, 5, 1) - 8.0
    out = random_conv_features(x, np.ones((1, 4, 5), bool), one_filter(w))
    z = x[0, 1:3, 2:5, 0]  # positions (0..1, 0..2) -> pixels rows 1-2, cols 2-4
    np.testing.assert_allclose(out[0], [np.maximum(z, 0).mean(), np.maximum(-z, 0).mean()])


def test_bias_and_sign_symmetry() -> None:
    """Negating the image swaps the halves, for any bias."""
    rng = np.random.default_rng(1)
    tiles = rng.normal(size=(3, 8, 8, 2)).astype(np.float32)
    filters = RandomFilters(rng.normal(size=(6, 3, 3, 2)).astype(np.float32), bias=0.3)
    valid = np.ones((3, 8, 8), bool)
    a = random_conv_features(tiles, valid, filters)
    b = random_conv_features(-tiles, valid, filters)
    np.testing.assert_allclose(a[:, :6], b[:, 6:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a[:, 6:], b[:, :6], rtol=1e-5, atol=1e-6)
    # with bias b: relu(z - b) = relu(z) - b where z > b
    w = np.ones((1, 1, 1), np.float32)
    x = np.array([[[[3.0], [0.5], [-2.0]]]], np.float32)
    out = random_conv_features(x, np.ones((1, 1, 3), bool), one_filter(w, bias=1.0))
    np.testing.assert_allclose(out[0], [(2.0 + 0 + 0) / 3, (0 + 0 + 1.0) / 3])


def test_invalid_pixels_remove_every_position_whose_patch_touches_them() -> None:
    w = np.ones((2, 2, 1), np.float32)
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    valid = np.ones((1, 3, 4), bool)
    valid[0, 0, 0] = False  # only the patch at (0, 0) touches it
    out = random_conv_features(x, valid, one_filter(w))
    sums = np.array([[x[0, r : r + 2, c : c + 2].sum() for c in range(3)] for r in range(2)])
    np.testing.assert_allclose(out[0, 0], sums.ravel()[1:].mean(), rtol=1e-6)
    none_valid = random_conv_features(x, np.zeros((1, 3, 4), bool), one_filter(w))
    assert np.isnan(none_valid).all()


def test_stride_averages_every_other_position() -> None:
    w = np.ones((1, 1, 1), np.float32)
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    out = random_conv_features(x, np.ones((1, 4, 4), bool), one_filter(w), stride=2)
    assert out[0, 0] == pytest.approx(np.mean([0, 2, 8, 10]))


def test_patch_matrix_order_matches_filter_flattening() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 5, 5, 3))
    w = rng.normal(size=(3, 3, 3))
    pm = patch_matrix(x, 3)
    assert pm.shape == (1, 3, 3, 27)
    direct = (x[0, 1:4, 2:5, :] * w).sum()
    assert pm[0, 1, 2] @ w.reshape(-1) == pytest.approx(direct)


def test_zca_whitens() -> None:
    rng = np.random.default_rng(3)
    mix = rng.normal(size=(5, 5))
    x = rng.normal(size=(20_000, 5)) @ mix + 4.0
    mean, w = zca_matrix(x, eps=1e-6)
    cov = np.cov((x - mean) @ w, rowvar=False)
    np.testing.assert_allclose(cov, np.eye(5), atol=2e-3)
    np.testing.assert_allclose(w, w.T, atol=1e-10)  # ZCA: symmetric, stays close to the data


def test_sampled_patches_avoid_invalid_pixels() -> None:
    tiles = np.zeros((2, 6, 6, 1))
    tiles[0, :3, :3] = 1.0
    valid = np.zeros((2, 6, 6), bool)
    valid[0, :3, :3] = True  # exactly one fully valid 3 x 3 patch
    p = sample_patches(tiles, valid, 10, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(p, np.ones((10, 9)))
    with pytest.raises(ValueError, match="no fully valid patch"):
        sample_patches(tiles, np.zeros_like(valid), 1, 3, np.random.default_rng(0))


def test_filters_are_reproducible_unit_norm_and_seed_dependent() -> None:
    rng = np.random.default_rng(4)
    tiles = rng.normal(size=(4, 12, 12, 4)).astype(np.float32)
    valid = np.ones((4, 12, 12), bool)
    kw = {"n_filters": 16, "patch": 3, "whiten_patches": 500}
    a = sample_random_filters(tiles, valid, random_state=5, **kw)
    b = sample_random_filters(tiles, valid, random_state=5, **kw)
    c = sample_random_filters(tiles, valid, random_state=6, **kw)
    assert a.weights.shape == (16, 3, 3, 4)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.allclose(a.weights, c.weights)
    np.testing.assert_allclose(np.linalg.norm(a.weights.reshape(16, -1), axis=1), 1.0, rtol=1e-5)
