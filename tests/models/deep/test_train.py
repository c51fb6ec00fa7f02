"""Training on the proxy task: spatial hold-out, targets, the tf.data pipeline, a tiny fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.deep.deep_builders import TINY_SETTINGS, Trained
from povertymap.models.deep.train import proxy_targets, spatial_holdout
from povertymap.studyarea import StudyArea


def test_spatial_holdout_takes_whole_blocks() -> None:
    ix, iy = (a.ravel() for a in np.meshgrid(np.arange(-10, 30), np.arange(0, 20)))
    val = spatial_holdout(ix, iy, block_cells=5, fraction=0.2, random_state=1)
    assert 0.1 <= val.mean() <= 0.3
    block = (np.floor_divide(ix, 5), np.floor_divide(iy, 5))
    keys = block[0] * 1000 + block[1]
    for k in np.unique(keys):  # every block is entirely in or entirely out
        assert len(set(val[keys == k])) == 1
    again = spatial_holdout(ix, iy, block_cells=5, fraction=0.2, random_state=1)
    np.testing.assert_array_equal(val, again)
    assert not np.array_equal(val, spatial_holdout(ix, iy, block_cells=5, fraction=0.2))


def test_class_weights_balance_the_classes() -> None:
    radiance = np.r_[np.zeros(70), np.linspace(1, 30, 30), np.nan]
    train = np.ones(101, bool)
    y, w, n_out, classes = proxy_targets(radiance, train, "classes")
    assert n_out == 3 and classes is not None
    totals = [w[y == c].sum() for c in range(3)]
    np.testing.assert_allclose(totals, [100 / 3] * 3, rtol=1e-6)
    assert y[-1] == -1 and w[-1] == 0
    y, w, n_out, _ = proxy_targets(radiance, train, "regression")
    assert n_out == 1
    np.testing.assert_allclose(y[:100], np.log1p(radiance[:100]), rtol=1e-6)
    with pytest.raises(ValueError, match="task must be"):
        proxy_targets(radiance, train, "ordinal")


@pytest.mark.dl
def test_augmentation_is_a_symmetry_of_the_square() -> None:
    pytest.importorskip("tensorflow")
    from povertymap.models.deep.data import augment_batch

    x = np.arange(2 * 4 * 4 * 2).reshape(2, 4, 4, 2)
    out = augment_batch(x, np.array([3, 4]))
    symmetries = []
    for k in range(4):
        r = np.rot90(x[0], k, axes=(0, 1))
        symmetries += [r, r[:, ::-1]]
    assert any(np.array_equal(out[0], s) for s in symmetries)
    np.testing.assert_array_equal(np.sort(out.ravel()), np.sort(x.ravel()))
    np.testing.assert_array_equal(out, augment_batch(x, np.array([3, 4])))
    seen = {augment_batch(x, np.array([s, 0]))[0].tobytes() for s in range(40)}
    assert len(seen) == 8


@pytest.mark.dl
def test_tile_pipeline_visits_every_tile_once_per_epoch(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from povertymap.models.deep.data import TileFile, tile_pipeline

    tiles = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 3, 3, 2), np.uint8)
    path = tmp_path / "t.u8"
    path.write_bytes(tiles.tobytes())
    tf_ = TileFile(path, 10, (3, 3, 2), "uint8")
    rows = np.array([9, 2, 5, 7])
    ds = tile_pipeline(
        tf_, rows, np.array([0, 1, 2, 1]), np.ones(4), batch_size=3, random_state=0, augment=False
    )
    epochs = []
    for _ in range(3):
        xs, ys = [], []
        for x, y, _w in ds:
            assert x.dtype.name == "float32"
            xs.append(x.numpy()[:, 0, 0, 0])
            ys.append(y.numpy())
        epochs.append((np.concatenate(xs), np.concatenate(ys)))
    for xs, ys in epochs:
        assert sorted(xs.tolist()) == [2, 5, 7, 9]
        label = {9: 0, 2: 1, 5: 2, 7: 1}
        assert [label[int(v)] for v in xs] == ys.tolist()  # targets follow their tiles
    assert len({tuple(e[0]) for e in epochs}) > 1  # a new permutation each epoch


@pytest.mark.dl
@pytest.mark.slow
def test_training_lowers_the_loss_and_embeds_every_valid_cell(
    trained: Trained, imagery_area: StudyArea
) -> None:
    from povertymap.models.deep.cnn import embedding_model
    from povertymap.models.deep.train import embed_cells

    result = trained.result
    loss = result.history["loss"]  # type: ignore[attr-defined]
    assert len(loss) >= 2 and loss[-1] < loss[0]
    assert "val_loss" in result.history  # type: ignore[attr-defined]
    assert result.n_val > 0 and result.n_train > result.n_val  # type: ignore[attr-defined]
    model = embedding_model(result.model)  # type: ignore[attr-defined]
    out = np.full((len(trained.ix), 8), -1.0, np.float32)
    for idx, emb in embed_cells(
        model,
        imagery_area.rasters["imagery"],
        imagery_area.crs,
        trained.grid,
        trained.ix,
        trained.iy,
        block_cells=4,
        cloud_min=0.94,
    ):
        out[idx] = emb
    assert out.shape == (len(trained.ix), 8)
    cloudy = np.isnan(out).all(axis=1)
    assert np.isfinite(out[~cloudy]).all()
    # the cloud covers 2 x 2 km: at least the 4 cells inside it, few others
    assert 4 <= cloudy.sum() <= 9
    assert (out[~cloudy].std(axis=0) > 0).all()  # no dead unit: every feature varies


@pytest.mark.dl
@pytest.mark.slow
def test_training_is_reproducible_on_cpu(trained: Trained, imagery_area: StudyArea) -> None:
    from povertymap.models.deep.train import CNNSettings, train_transfer_cnn

    again = train_transfer_cnn(
        imagery_area.rasters["imagery"],
        imagery_area.crs,
        trained.grid,  # type: ignore[arg-type]
        trained.ix,
        trained.iy,
        trained.radiance,
        CNNSettings(**TINY_SETTINGS),  # type: ignore[arg-type]
        random_state=0,
    )
    first = trained.result
    assert again.history == first.history  # type: ignore[attr-defined]
    for a, b in zip(again.model.get_weights(), first.model.get_weights(), strict=True):  # type: ignore[attr-defined]
        np.testing.assert_array_equal(a, b)
