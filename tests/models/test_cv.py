"""Cross-validation folds: the buffer, balance, reproducibility, groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from sklearn.linear_model import LinearRegression

from povertymap.errors import ModelError
from povertymap.models.cv import group_folds, out_of_fold, random_folds, spatial_folds


def _points(n: int = 300, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 200_000, size=(n, 2))


def test_spatial_folds_respect_the_buffer() -> None:
    xy = _points()
    folds = spatial_folds(xy, n_folds=5, block_size=50_000, buffer=10_000, random_state=0)
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(len(xy)))
    for f in folds:
        assert len(np.intersect1d(f.train, f.test)) == 0
        assert cdist(xy[f.train], xy[f.test]).min() > 10_000
        assert f.dropped > 0  # some neighbours of the test blocks were dropped


def test_spatial_folds_keep_blocks_whole_and_balanced() -> None:
    xy = _points(1000)
    folds = spatial_folds(xy, n_folds=5, block_size=50_000, buffer=0, random_state=0)
    block = [tuple(b) for b in np.floor(xy / 50_000).astype(int)]
    for f in folds:
        test_blocks = {block[i] for i in f.test}
        train_blocks = {block[i] for i in f.train}
        assert not test_blocks & train_blocks
    sizes = [len(f.test) for f in folds]
    assert max(sizes) - min(sizes) < 0.25 * np.mean(sizes)


def test_spatial_folds_are_reproducible() -> None:
    xy = _points()
    a = spatial_folds(xy, n_folds=4, block_size=40_000, buffer=5_000, random_state=7)
    b = spatial_folds(xy, n_folds=4, block_size=40_000, buffer=5_000, random_state=7)
    assert all(np.array_equal(x.test, y.test) for x, y in zip(a, b, strict=True))


def test_too_few_blocks() -> None:
    with pytest.raises(ModelError, match="spatial blocks"):
        spatial_folds(_points(50) / 100, n_folds=5, block_size=50_000, buffer=0)


def test_group_folds_leave_one_group_out() -> None:
    groups = pd.Series(["b", "a", "c", "a", "b", "c"], name="fold")
    folds = group_folds(groups)
    assert [sorted(f.test.tolist()) for f in folds] == [[1, 3], [0, 4], [2, 5]]
    with pytest.raises(ModelError, match="single value"):
        group_folds(pd.Series(["a", "a"], name="g"))
    with pytest.raises(ModelError, match="missing values"):
        group_folds(pd.Series(["a", None, "b"], name="g"))


def test_random_folds_partition_rows() -> None:
    folds = random_folds(103, n_folds=5, random_state=0)
    tests = np.concatenate([f.test for f in folds])
    assert sorted(tests.tolist()) == list(range(103))
    assert {len(f.test) for f in folds} <= {20, 21}


def test_out_of_fold_predicts_each_row_once_without_its_own_label() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=100)})
    y = 3 * X["x"].to_numpy() + 1
    folds = random_folds(100, n_folds=4, random_state=0)
    pred, fold = out_of_fold(LinearRegression, X, y, folds)
    assert np.allclose(pred, y) and set(fold) == {0, 1, 2, 3}
    y_noise = rng.normal(size=100)  # pure noise: out-of-fold r² must not be positive
    pred, _ = out_of_fold(LinearRegression, X, y_noise, folds)
    assert 1 - np.sum((y_noise - pred) ** 2) / np.sum((y_noise - y_noise.mean()) ** 2) < 0.05
