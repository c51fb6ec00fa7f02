"""Files a run keeps besides its maps: digests, JSON and text, pickled fitted objects.

Pickles (joblib) run code when loaded: load only models you made or trust. Every reader
refuses a missing file with :class:`~povertymap.errors.RunDirError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from povertymap.errors import RunDirError

__all__ = [
    "copy_tree",
    "digest_tree",
    "file_sha256",
    "read_json",
    "read_pickle",
    "read_table",
    "read_text",
    "write_pickle",
]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (inputs can be gigabytes)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest_tree(folder: Path, *, skip: str = "") -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``folder`` by POSIX relative path (``skip``:
    a file name left out, e.g. the manifest itself)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != skip:
            out[p.relative_to(folder).as_posix()] = {
                "sha256": file_sha256(p),
                "bytes": p.stat().st_size,
            }
    return out


def _require(path: Path) -> None:
    if not path.exists():
        raise RunDirError(f"{path} does not exist; the run directory is incomplete or damaged")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a damaged file is a RunDirError."""
    _require(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path} is not valid JSON ({exc}); the run is damaged") from exc
    if not isinstance(data, dict):
        raise RunDirError(f"{path} holds a JSON {type(data).__name__}, not an object")
    return data


def read_text(path: Path) -> str:
    """A UTF-8 text file."""
    _require(path)
    return path.read_text(encoding="utf-8")


#: Id columns of the tables a run writes: always read as text ("007" stays "007").
ID_COLUMNS = ("cluster_id", "cell_id", "admin_id", "parent_id", "household_id")


def read_table(path: Path) -> pd.DataFrame:
    """A table a run wrote (CSV or Parquet), numbers as numbers and ids as text."""
    _require(path)
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={c: str for c in ID_COLUMNS})


def write_pickle(obj: Any, path: Path) -> Path:
    """``obj`` pickled with joblib (compressed), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    joblib.dump(obj, tmp, compress=3)
    tmp.replace(path)
    return path


def read_pickle(path: Path) -> Any:
    """An object pickled by :func:`write_pickle`."""
    _require(path)
    return joblib.load(path)


def copy_tree(source: Path, target: Path) -> None:
    """Copy a folder's content into ``target`` (created or merged)."""
    shutil.copytree(source, target, dirs_exist_ok=True)
