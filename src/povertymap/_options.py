"""Lazy imports of optional heavy dependencies.

``import povertymap`` must stay light (no tensorflow, pyspark, mlflow or fastapi), so code
that needs one of them calls :func:`require` at the point of use and gets a
:class:`~povertymap.errors.DependencyError` naming the extra to install when it is absent.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from povertymap.errors import DependencyError

#: The extra of ``pyproject.toml`` that provides each optional top-level module.
EXTRAS: dict[str, str] = {
    "tensorflow": "dl",
    "keras": "dl",
    "pyspark": "spark",
    "mlflow": "mlops",
    "dvc": "mlops",
    "fastapi": "serve",
    "uvicorn": "serve",
    "prometheus_client": "serve",
    "playwright": "e2e",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise a DependencyError that says which extra provides it."""
    if module.split(".")[0] in ("tensorflow", "keras"):
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = EXTRAS.get(top)
        hint = f"pip install 'povertymap[{extra}]'" if extra else f"pip install {top}"
        raise DependencyError(f"{module} is not installed; install it with: {hint}") from exc
