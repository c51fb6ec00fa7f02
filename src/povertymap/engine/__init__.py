"""Execution engines: where the feature kernels run (local process or Spark)."""

from povertymap.engine.base import Engine, get_engine
from povertymap.engine.local import LocalEngine

__all__ = ["Engine", "LocalEngine", "get_engine"]
