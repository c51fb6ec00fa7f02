"""Execution engines: where the feature kernels run (local process or Spark)."""

from povertymap.engine.base import Engine, engine_for, get_engine
from povertymap.engine.local import LocalEngine
from povertymap.engine.spark import SparkEngine

__all__ = ["Engine", "LocalEngine", "SparkEngine", "engine_for", "get_engine"]
