"""Typed errors.

Every error a user can cause derives from :class:`PovertyMapError` and mixes in the
built-in it resembles, so ``except ValueError`` keeps working for callers that do not
know this package. Messages are one line: what is wrong, where (file, row, field, band),
the value received, and the fix.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ConfigError",
    "DependencyError",
    "InputError",
    "InputNotFoundError",
    "InputWarning",
    "ModelError",
    "PovertyMapError",
    "RasterError",
    "RunDirError",
    "SurveyError",
    "VectorError",
]


class PovertyMapError(Exception):
    """Root of every error raised on purpose by povertymap."""


class InputError(PovertyMapError, ValueError):
    """An input file or value is unusable.

    Parameters
    ----------
    problem:
        What is wrong, naming the value received.
    path:
        The file concerned, if any.
    where:
        The row, field, band or key inside the file.
    fix:
        What the user should do.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | Path | None = None,
        where: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = Path(path) if path is not None else None
        self.where = where
        self.fix = fix
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        if self.path is not None:
            parts.append(str(self.path))
        if self.where:
            parts.append(self.where)
        head = ": ".join([*parts, self.problem])
        return f"{head}. Fix: {self.fix}" if self.fix else head


class InputNotFoundError(InputError, FileNotFoundError):
    """A file named by the config or the command line does not exist."""


class ConfigError(InputError):
    """The study-area config is malformed (unknown key, wrong type, bad value)."""


class RasterError(InputError):
    """A raster cannot be read or is ambiguous (no CRS, undeclared nodata, corrupt)."""


class VectorError(InputError):
    """A vector layer cannot be read or holds unusable geometries."""


class SurveyError(InputError):
    """A survey table (clusters or households) breaks its schema."""


class ModelError(InputError):
    """A model cannot be fitted or applied with the data given (too few clusters, ...)."""


class RunDirError(PovertyMapError, OSError):
    """A run directory is missing, incomplete, or its files do not match the manifest."""


class DependencyError(PovertyMapError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class InputWarning(UserWarning):
    """An input was usable after a repair the user should know about (e.g. invalid polygons)."""
