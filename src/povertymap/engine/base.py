"""The engine interface: map a pure kernel over independent work items.

Work is written once as functions ``item -> DataFrame``: a feature kernel over a chunk of
zones, one cross-validation fold, one out-of-area refit. An item carries everything needed
to compute it (a raster path and polygons; a fold's training and test rows). An engine only
decides where the items run: in this process or in local worker processes
(:class:`~povertymap.engine.local.LocalEngine`), later on Spark executors
(``mapInPandas``).

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
from typing import Protocol, TypeVar

import pandas as pd

from povertymap.errors import ConfigError

__all__ = ["ENGINES", "Engine", "ProgressCallback", "fixed_threads", "get_engine"]

T = TypeVar("T")

#: ``progress(label, done, total)``: the one progress signature of the package.
ProgressCallback = Callable[[str, int, int], None]

#: Engines available in this version.
ENGINES = ("local",)


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


def get_engine(name: str, n_jobs: int = 1) -> Engine:
    """The engine called ``name`` (only "local" in this version) with ``n_jobs`` workers."""
    if name == "local":
        from povertymap.engine.local import LocalEngine

        return LocalEngine(n_jobs=n_jobs)
    if name == "spark":
        raise ConfigError(
            "engine 'spark' is not available in this version",
            where="key features.engine",
            fix="use engine: local (with features.n_jobs for parallel workers)",
        )
    raise ConfigError(
        f"unknown engine {name!r}", where="key features.engine", fix="use engine: local"
    )


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
