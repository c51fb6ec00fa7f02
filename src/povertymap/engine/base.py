"""The engine interface: map a pure kernel over independent work items.

Work is written once as functions ``item -> DataFrame``: a feature kernel over a chunk of
zones, one cross-validation fold, one out-of-area refit. An item carries everything needed
to compute it (a raster path and polygons; a fold's training and test rows). An engine only
decides where the items run: in this process or in local worker processes
(:class:`~povertymap.engine.local.LocalEngine`), or as tasks on Spark executors
(:class:`~povertymap.engine.spark.SparkEngine`).

Invariant: the result is the concatenation of the items' DataFrames in item order, and the
numbers do not depend on the engine or on how many workers it uses. Kernels must therefore
be pure (no state shared between items, seeds taken from the item or the config) and
picklable (module-level functions or :func:`functools.partial` of them, items of plain
data), and a kernel whose numbers could depend on a thread count (BLAS, OpenMP) runs under
:func:`fixed_threads`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, TypeVar

import pandas as pd

from povertymap.errors import ConfigError

if TYPE_CHECKING:
    from povertymap.config import FeaturesConfig

__all__ = [
    "ENGINES",
    "Engine",
    "ProgressCallback",
    "engine_for",
    "fixed_threads",
    "get_engine",
]

T = TypeVar("T")

#: ``progress(label, done, total)``: the one progress signature of the package.
ProgressCallback = Callable[[str, int, int], None]

#: Engines available in this version.
ENGINES = ("local", "spark")


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


def get_engine(name: str, n_jobs: int = 1, *, master: str | None = None) -> Engine:
    """The engine called ``name``: "local" with ``n_jobs`` workers, or "spark" on ``master``.

    ``master`` (Spark only) defaults to ``$POVERTYMAP_SPARK_MASTER``, else ``local[*]``
    (see :func:`povertymap.engine.spark.spark_master`); ``n_jobs`` is the local engine's
    and is ignored by Spark, whose parallelism is the cluster's. Asking for "spark" where
    pyspark or Java is missing raises a ConfigError that names the fix, before any work.
    """
    if name == "local":
        from povertymap.engine.local import LocalEngine

        return LocalEngine(n_jobs=n_jobs)
    if name == "spark":
        from povertymap.engine.spark import SparkEngine

        return SparkEngine(master=master)
    raise ConfigError(
        f"unknown engine {name!r}",
        where="key features.engine",
        fix=f"use one of {', '.join(ENGINES)}",
    )


def engine_for(features: FeaturesConfig) -> Engine:
    """The engine a study config's ``features:`` section asks for (engine, n_jobs, master)."""
    return get_engine(features.engine, n_jobs=features.n_jobs, master=features.spark_master)


@contextmanager
def fixed_threads(n: int = 1) -> Iterator[None]:
    """Run the block with ``n`` BLAS and OpenMP threads, whatever the process defaults.

    Sums split over threads are added in a different order, so a ridge fit on a wide
    matrix can differ in the last bits between a 16-thread parent process and a worker
    that got 8 threads. Tasks that must give the same numbers on every engine pin the
    thread count with this. Libraries loaded inside the block are not pinned: import them
    (e.g. build the model) before entering it.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        yield
