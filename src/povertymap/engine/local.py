"""The default engine: run kernels one after another in this process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import pandas as pd

from povertymap.engine.base import ProgressCallback

__all__ = ["LocalEngine"]

T = TypeVar("T")


class LocalEngine:
    """Sequential execution; memory holds one item's data at a time."""

    name = "local"

    def map(
        self,
        func: Callable[[T], pd.DataFrame],
        items: Sequence[T],
        *,
        label: str = "",
        progress: ProgressCallback | None = None,
    ) -> pd.DataFrame:
        """Apply ``func`` to each item in order and concatenate the results."""
        parts = []
        for i, item in enumerate(items):
            parts.append(func(item))
            if progress is not None:
                progress(label, i + 1, len(items))
        return pd.concat(parts) if parts else pd.DataFrame()
