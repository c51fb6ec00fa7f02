"""povertymap: high-resolution poverty maps from surveys and open geospatial data.

The package is a library first: each stage (``io``, ``features``, ``models``,
``estimate``, ``predict``, ``target``) is a function with typed inputs and outputs, and
the CLI (``povertymap``), the pipeline and the service only compose them. Importing the
package is light: deep learning, Spark, MLflow and the web service load only when used.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from povertymap.errors import PovertyMapError

try:
    __version__ = version("povertymap")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["PovertyMapError", "__version__"]
