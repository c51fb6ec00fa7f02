"""The default engine: run items in this process, or in local worker processes.

``LocalEngine(n_jobs=1)`` runs items one after another in this process, holding one item's
data at a time. With ``n_jobs > 1`` items run in a pool of worker processes (joblib's loky
backend; the pool is reused between calls) and come back in item order.

Invariant: the returned DataFrame is the same, to the bit, whatever ``n_jobs``: results are
concatenated in item order, progress is reported in item order, and kernels are pure (see
:mod:`povertymap.engine.base`). Functions and items must be picklable with cloudpickle
(module-level functions, :func:`functools.partial`, plain data; no open file handles).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import pandas as pd

from povertymap.engine.base import ProgressCallback
from povertymap.errors import ConfigError

__all__ = ["LocalEngine"]

T = TypeVar("T")


class LocalEngine:
    """Sequential execution (``n_jobs=1``) or ``n_jobs`` local worker processes."""

    name = "local"

    def __init__(self, n_jobs: int = 1) -> None:
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
            raise ConfigError(
                f"n_jobs must be a whole number of worker processes >= 1, got {n_jobs!r}",
                where="key features.n_jobs",
                fix="use 1 (run in this process) or the number of cores to use",
            )
        self.n_jobs = n_jobs

    def __repr__(self) -> str:
        return f"LocalEngine(n_jobs={self.n_jobs})"

    def map(
        self,
        func: Callable[[T], pd.DataFrame],
        items: Sequence[T],
        *,
        label: str = "",
        progress: ProgressCallback | None = None,
    ) -> pd.DataFrame:
        """Apply ``func`` to each item and concatenate the results in item order."""
        total = len(items)
        parts = []
        for i, part in enumerate(self._results(func, items)):
            parts.append(part)
            if progress is not None:
                progress(label, i + 1, total)
        return pd.concat(parts) if parts else pd.DataFrame()

    def _results(
        self, func: Callable[[T], pd.DataFrame], items: Sequence[T]
    ) -> Iterable[pd.DataFrame]:
        """The results one by one, in item order (lazily, so progress follows the work)."""
        if self.n_jobs == 1 or len(items) < 2:
            return (func(item) for item in items)
        from joblib import Parallel, delayed

        # the pool keeps n_jobs workers for every call: resizing it would respawn workers
        run = Parallel(n_jobs=self.n_jobs, backend="loky", return_as="generator")
        return run(delayed(func)(item) for item in items)
