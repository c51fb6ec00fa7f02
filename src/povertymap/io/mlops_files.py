"""The files of the model lifecycle (:mod:`povertymap.mlops`): folders for the tracking
store, the DVC pipeline's YAML documents, ``drift.json`` and small tables.

Only :mod:`povertymap.io` touches paths; the lifecycle modules build mappings and frames
and hand them here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from povertymap.errors import InputNotFoundError

__all__ = ["drift_report_files", "ensure_folder", "is_file", "read_yaml"]


def ensure_folder(path: Path) -> Path:
    """Create ``path`` (and its parents) if missing. Returns ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_file(path: Path) -> bool:
    """Whether ``path`` is an existing file."""
    return Path(path).is_file()


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping (an empty file reads as ``{}``)."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path} does not exist", fix="pass an existing YAML file")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise InputNotFoundError(f"{path} is not a YAML mapping", fix="pass a mapping")
    return data


def drift_report_files(folder: Path, name: str = "drift.json") -> list[Path]:
    """The drift reports in ``folder``: its own ``name`` and those of its sub-folders (one
    per ``povertymap monitor --out``), sorted; none when the folder does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in [folder / name, *folder.glob(f"*/{name}")] if p.is_file())
