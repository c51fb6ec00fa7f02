"""CPU or GPU, and which numeric precision to train in.

The same code runs on both: tensorflow places ops on a visible GPU by itself. What changes
is the precision: on GPUs with tensor cores (compute capability 7.0 and up) ``mixed_float16``
(float16 compute, float32 weights, loss scaling) is 2-3x faster; on CPUs and older GPUs it is
slower or unsupported, so ``float32`` stays. The choice is made once per fit by
:func:`choose_precision`, a pure function of what devices are visible, so it is tested
without a GPU; the model's output layer always computes in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = ["PRECISIONS", "Precision", "choose_precision", "visible_gpus"]

Precision = Literal["auto", "float32", "mixed_float16"]
PRECISIONS: tuple[str, ...] = ("auto", "float32", "mixed_float16")

#: Compute capability from which float16 tensor cores make mixed precision worth it (Volta).
TENSOR_CORE_CAPABILITY = (7, 0)


def choose_precision(
    requested: Precision | str, gpu_capabilities: Sequence[tuple[int, int]]
) -> Literal["float32", "mixed_float16"]:
    """The Keras dtype policy name for ``requested`` given the visible GPUs' capabilities.

    ``"auto"`` picks ``mixed_float16`` only when every visible GPU has tensor cores, else
    ``float32`` (always on CPU). An explicit ``"float32"`` or ``"mixed_float16"`` is kept,
    except that ``mixed_float16`` without any GPU falls back to ``float32`` (float16 on CPU
    is emulated and several times slower).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "float32" or not gpu_capabilities:
        return "float32"
    if requested == "mixed_float16":
        return "mixed_float16"
    if all(tuple(c) >= TENSOR_CORE_CAPABILITY for c in gpu_capabilities):
        return "mixed_float16"
    return "float32"


def visible_gpus() -> list[tuple[int, int]]:
    """Compute capabilities ``(major, minor)`` of the GPUs tensorflow sees (imports it)."""
    from povertymap._options import require

    tf = require("tensorflow")
    out = []
    for dev in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(dev)
        cap = details.get("compute_capability") or (0, 0)
        out.append((int(cap[0]), int(cap[1])))
    return out
