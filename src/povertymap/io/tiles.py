"""Raw tile files: the flat on-disk arrays the CNN's training pipeline reads by memmap.

A tile file holds ``n`` tiles ``(rows, cols, channels)`` of one dtype, C order, no header:
:class:`TileFileWriter` appends blocks of tiles as they are cut from the imagery (memory
holds one block), :meth:`TileFile.memmap` maps them back read-only. They live in a
scratch folder (:func:`temporary_tile_dir`) deleted after training.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

__all__ = ["TileFile", "TileFileWriter", "temporary_tile_dir"]


@dataclass(frozen=True)
class TileFile:
    """``n`` model-input tiles ``(rows, cols, channels)`` of ``dtype`` in a raw file."""

    path: Path
    n: int
    shape: tuple[int, int, int]
    dtype: str

    def memmap(self) -> np.ndarray:
        """Read-only memmap ``(n, rows, cols, channels)`` (an empty array when ``n == 0``)."""
        if self.n == 0:
            return np.zeros((0, *self.shape), self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.n, *self.shape))


class TileFileWriter:
    """Append tiles of ``shape`` and ``dtype`` to a new raw file ``path`` (its folder is made).

    Use as a context manager; :attr:`tiles` describes what was written so far::

        with TileFileWriter(path, (rows, cols, channels), "uint8") as out:
            out.append(block)          # (k, rows, cols, channels)
        tiles = out.tiles
    """

    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: str) -> None:
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.dtype = str(dtype)
        self.n = 0
        self._f: IO[bytes] | None = None

    def __enter__(self) -> TileFileWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("wb")
        return self

    def append(self, tiles: np.ndarray) -> None:
        """Write ``tiles (k, rows, cols, channels)`` (cast to the file's dtype) at the end."""
        if self._f is None:
            raise RuntimeError(f"{self.path}: append() called outside the 'with' block")
        x = np.asarray(tiles).astype(self.dtype, copy=False)
        if x.shape[1:] != self.shape:
            raise ValueError(f"tiles of shape {x.shape[1:]}, expected {self.shape}")
        self._f.write(np.ascontiguousarray(x).tobytes())
        self.n += len(x)

    @property
    def tiles(self) -> TileFile:
        """The tiles written so far."""
        return TileFile(self.path, self.n, self.shape, self.dtype)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


@contextlib.contextmanager
def temporary_tile_dir(parent: Path | None = None, prefix: str = "tiles-") -> Iterator[Path]:
    """A scratch folder for tile files, under ``parent`` (created) or the system's temp folder.

    The folder and its files are deleted on exit.
    """
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=prefix) as tmp:
        yield Path(tmp)
