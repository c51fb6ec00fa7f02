"""The Keras model: input standardisation, save/load round trip, FLOPs, precision policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from povertymap.models.deep.device import choose_precision

pytestmark = pytest.mark.dl


@pytest.fixture(scope="module")
def keras():  # type: ignore[no-untyped-def]
    return pytest.importorskip("keras")


def test_auto_precision_is_float32_without_a_gpu_and_mixed_on_tensor_cores() -> None:
    assert choose_precision("auto", []) == "float32"
    assert choose_precision("mixed_float16", []) == "float32"  # float16 on CPU is emulated
    assert choose_precision("auto", [(8, 0)]) == "mixed_float16"  # A100
    assert choose_precision("auto", [(9, 0), (6, 1)]) == "float32"  # a Pascal card among them
    assert choose_precision("float32", [(9, 0)]) == "float32"
    assert choose_precision("mixed_float16", [(6, 1)]) == "mixed_float16"
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("bfloat16", [])


def test_masked_standardize(keras) -> None:  # type: ignore[no-untyped-def]
    from povertymap.models.deep.cnn import MaskedStandardize

    layer = MaskedStandardize([10.0, 0.0], [2.0, 4.0])
    x = np.array([[[[12.0, 8.0, 1.0], [99.0, 99.0, 0.0]]]], np.float32)  # (1, 1, 2, 3)
    out = np.asarray(layer(x))
    np.testing.assert_allclose(out, [[[[1.0, 2.0, 1.0], [0.0, 0.0, 0.0]]]])


def _tiny_model(policy: str = "float32"):  # type: ignore[no-untyped-def]
    from povertymap.models.deep.cnn import build_cnn

    return build_cnn(
        (12, 12),
        [100.0, 90.0, 80.0, 120.0],
        [20.0, 20.0, 20.0, 30.0],
        width=4,
        depth=2,
        embedding_dim=6,
        n_outputs=3,
        dtype_policy=policy,
        seed=3,
    )


def test_save_load_round_trip_gives_identical_outputs(keras, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from povertymap.models.deep.cnn import embedding_model

    model = _tiny_model()
    x = np.random.default_rng(0).uniform(0, 255, (5, 12, 12, 5)).astype(np.float32)
    x[..., -1] = x[..., -1] > 30  # validity channel
    # one training step so batch-norm statistics and weights are not their initial values
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, np.array([0, 1, 2, 1, 0]), epochs=1, verbose=0)
    path = tmp_path / "cnn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    emb, emb_loaded = embedding_model(model), embedding_model(loaded)
    np.testing.assert_array_equal(emb.predict(x, verbose=0), emb_loaded.predict(x, verbose=0))
    assert emb.outputs[0].shape[-1] == 6
    assert loaded.get_layer("standardize").get_config()["std"] == [20.0, 20.0, 20.0, 30.0]


def test_io_saves_loads_and_pickles_the_cnn(keras, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from povertymap.io.keras import keras_model_bytes, save_keras_model
    from povertymap.models.deep.cnn import cnn_from_bytes, load_cnn

    model = _tiny_model()
    x = np.random.default_rng(1).uniform(0, 255, (4, 12, 12, 5)).astype(np.float32)
    path = save_keras_model(model, tmp_path / "sub" / "cnn.keras")
    assert sorted(p.name for p in path.parent.iterdir()) == ["cnn.keras"]  # no temp file left
    for loaded in (load_cnn(path), cnn_from_bytes(keras_model_bytes(model))):
        np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
        assert loaded.get_layer("standardize").get_config()["mean"] == [100.0, 90.0, 80.0, 120.0]


def test_flops_are_counted_from_the_layer_shapes(keras) -> None:  # type: ignore[no-untyped-def]
    from povertymap.models.deep.cnn import cnn_flops

    # 12x12x5 -> stem 5x5 stride 2 -> 6x6x4; conv1 3x3 -> 6x6x8; pool -> 3x3; conv2 -> 3x3x16;
    # gap -> 16 -> dense 6 -> dense 3
    expected = 2 * (6 * 6 * 4 * 25 * 5 + 6 * 6 * 8 * 9 * 4 + 3 * 3 * 16 * 9 * 8 + 16 * 6 + 6 * 3)
    assert cnn_flops(_tiny_model()) == expected


def test_mixed_precision_keeps_the_head_and_the_input_in_float32(keras) -> None:  # type: ignore[no-untyped-def]
    model = _tiny_model("mixed_float16")
    assert model.get_layer("conv1").compute_dtype == "float16"
    assert model.get_layer("conv1").variable_dtype == "float32"
    assert model.get_layer("standardize").compute_dtype == "float32"
    assert model.get_layer("proxy").compute_dtype == "float32"
    x = np.ones((2, 12, 12, 5), np.float32)
    assert str(model(x).dtype) in ("float32", "<dtype: 'float32'>")
