"""Run directories: ``runs/<run_id>/`` written atomically with a manifest of digests.

A run is written into a hidden temporary folder next to its final place and renamed into
place only when every stage has succeeded, so a failed run leaves nothing behind and a
run directory that exists is complete. ``manifest.json`` lists every file with its sha256
and size, and the digests of every input file and of the resolved config, so a map can be
traced to the exact data that made it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from povertymap.errors import RunDirError
from povertymap.io.writers import atomic_directory, write_json, write_text

__all__ = [
    "MANIFEST",
    "RunDirectory",
    "file_sha256",
    "new_run_id",
    "update_run",
    "write_run",
]

MANIFEST = "manifest.json"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (inputs can be gigabytes)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def new_run_id(name: str, config_text: str, now: datetime | None = None) -> str:
    """``<name>-<UTC timestamp>-<6 hex of the config digest>``: sortable and traceable."""
    now = now or datetime.now(UTC)
    digest = hashlib.sha256(config_text.encode()).hexdigest()[:6]
    return f"{name}-{now:%Y%m%dT%H%M%SZ}-{digest}"


@contextmanager
def write_run(
    root: Path,
    run_id: str,
    *,
    config_text: str,
    inputs: Mapping[str, Path],
    extra: Mapping[str, Any] | None = None,
) -> Iterator[Path]:
    """Yield a temporary folder to write a run into; publish it as ``root/run_id`` on success.

    On success the manifest is written and the folder renamed atomically. On any exception
    the temporary folder is removed and the exception propagates. ``extra`` is stored in the
    manifest as is (e.g. the package version, the command line).
    """
    final = Path(root) / run_id
    if final.exists():
        raise RunDirError(f"run directory {final} already exists; choose another run id")
    with atomic_directory(final) as tmp:
        write_text(config_text, tmp / "config.yaml")
        yield tmp
        manifest = {
            "run_id": run_id,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
            "inputs": {
                key: {"path": str(p), "sha256": file_sha256(p), "bytes": p.stat().st_size}
                for key, p in sorted(inputs.items())
            },
            "files": _digest_tree(tmp),
            **(dict(extra) if extra else {}),
        }
        write_json(manifest, tmp / MANIFEST)


@contextmanager
def update_run(path: Path) -> Iterator[Path]:
    """Yield a copy of the run directory to change; swap it in with a fresh manifest.

    The run directory is replaced atomically on success and untouched on failure, so a
    run stays complete and its manifest true (used by ``povertymap target``).
    """
    run = RunDirectory.open(path)
    with atomic_directory(run.path, overwrite=True) as tmp:
        shutil.copytree(run.path, tmp, dirs_exist_ok=True)
        yield tmp
        manifest = {
            **run.manifest,
            "files": _digest_tree(tmp),
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json(manifest, tmp / MANIFEST)


def _digest_tree(folder: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[p.relative_to(folder).as_posix()] = {
                "sha256": file_sha256(p),
                "bytes": p.stat().st_size,
            }
    return out


@dataclass(frozen=True)
class RunDirectory:
    """A finished run directory and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> RunDirectory:
        """Open a run directory; refuses a folder without a readable manifest."""
        path = Path(path)
        mf = path / MANIFEST
        if not path.is_dir():
            raise RunDirError(f"{path} is not a directory; pass a run directory (runs/<run_id>)")
        if not mf.exists():
            raise RunDirError(
                f"{path} has no {MANIFEST}: it is not a finished run directory "
                "(runs are published only when complete)"
            )
        try:
            manifest = json.loads(mf.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{mf} is not valid JSON ({exc}); the run is damaged") from exc
        return cls(path, manifest)

    @property
    def run_id(self) -> str:
        """The run's id."""
        return str(self.manifest.get("run_id", self.path.name))

    def verify(self) -> list[str]:
        """Files that are missing or whose sha256 differs from the manifest (empty if intact)."""
        bad = []
        for rel, meta in self.manifest.get("files", {}).items():
            p = self.path / rel
            if not p.exists():
                bad.append(f"{rel} (missing)")
            elif file_sha256(p) != meta["sha256"]:
                bad.append(f"{rel} (changed)")
        return bad

    def json(self, name: str) -> dict[str, Any]:
        """A JSON file of the run, e.g. ``metrics.json``."""
        p = self.path / name
        if not p.exists():
            raise RunDirError(f"{p} does not exist in this run")
        data: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
        return data
