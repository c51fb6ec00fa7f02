"""The engine interface: map a pure kernel over independent work items.

Feature kernels are written once as functions ``item -> DataFrame`` (an item is a chunk of
zones with everything needed to compute it, such as a raster path and polygons). An engine
only decides where they run: in this process (:class:`~povertymap.engine.local.LocalEngine`)
or on Spark executors (``mapInPandas``). Both must give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import pandas as pd

from povertymap.errors import ConfigError

__all__ = ["Engine", "ProgressCallback", "get_engine"]

T = TypeVar("T")
ProgressCallback = Callable[[str, int, int], None]


class Engine(Protocol):
    """Runs ``func`` on every item and concatenates the resulting DataFrames in item order."""

    name: str

    def map(
        self,
        func: Callable[[T], pd.DataFrame],
        items: Sequence[T],
        *,
        label: str = "",
        progress: ProgressCallback | None = None,
    ) -> pd.DataFrame:
        """Apply ``func`` to each item; report ``progress(label, done, total)``."""
        ...


def get_engine(name: str) -> Engine:
    """The engine called ``name`` ("local" or "spark")."""
    if name == "local":
        from povertymap.engine.local import LocalEngine

        return LocalEngine()
    if name == "spark":
        from povertymap.engine.spark import SparkEngine

        return SparkEngine()
    raise ConfigError(f"unknown engine {name!r}", fix="use 'local' or 'spark'")
