"""Cell embeddings cached on disk, one file per aligned block of cells.

Embeddings are computed once per cell and written to ``<root>/b<bx>_<by>.npz`` (a dense
``block_cells x block_cells`` array of the block's cells, NaN where the imagery is invalid,
with a ``present`` flag per cell), so memory holds one block at a time and a second
transform (cluster buffers, then grid cells, then another run) reads them back instead of
recomputing. The files are read and written by :mod:`povertymap.io.embeddings` (atomically:
a crash never leaves a partial block). ``root`` is named by :func:`cache_key` of everything
the embeddings depend on (imagery digest, model or filter config, grid), so a stale cache is
never read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from povertymap.io.embeddings import read_embedding_block, write_embedding_block
from povertymap.models.deep.tiles import cell_blocks

__all__ = ["EmbeddingStore", "cache_key"]


def cache_key(parts: Mapping[str, Any]) -> str:
    """16 hex digits of the sha256 of ``parts`` as canonical JSON."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class EmbeddingStore:
    """Per-cell embeddings of width ``dim`` under ``root``, in blocks of ``block_cells``."""

    def __init__(self, root: Path, dim: int, block_cells: int = 32) -> None:
        self.root = Path(root)
        self.dim = int(dim)
        self.block_cells = int(block_cells)

    def _path(self, bx: int, by: int) -> Path:
        return self.root / f"b{bx}_{by}.npz"

    def _local(self, ix: np.ndarray, iy: np.ndarray, bx: int, by: int) -> np.ndarray:
        b = self.block_cells
        return np.asarray((iy - by * b) * b + (ix - bx * b), dtype=np.int64)

    def _load(self, bx: int, by: int) -> tuple[np.ndarray, np.ndarray]:
        block = read_embedding_block(self._path(bx, by))
        if block is None:
            n = self.block_cells**2
            return np.full((n, self.dim), np.nan, np.float32), np.zeros(n, bool)
        return block

    def get(self, ix: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings (n, dim), present (n,))``; rows of absent cells are NaN."""
        ix = np.asarray(ix, dtype=np.int64)
        iy = np.asarray(iy, dtype=np.int64)
        emb = np.full((len(ix), self.dim), np.nan, np.float32)
        present = np.zeros(len(ix), bool)
        for idx in cell_blocks(ix, iy, self.block_cells):
            bx = int(ix[idx[0]] // self.block_cells)
            by = int(iy[idx[0]] // self.block_cells)
            block_emb, block_present = self._load(bx, by)
            local = self._local(ix[idx], iy[idx], bx, by)
            emb[idx] = block_emb[local]
            present[idx] = block_present[local]
        return emb, present

    def missing(self, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
        """Boolean mask of the cells that have no stored embedding yet."""
        return ~self.get(ix, iy)[1]

    def put(self, ix: np.ndarray, iy: np.ndarray, emb: np.ndarray) -> None:
        """Store embeddings of cells ``(ix, iy)`` (merged into their blocks' files)."""
        ix = np.asarray(ix, dtype=np.int64)
        iy = np.asarray(iy, dtype=np.int64)
        emb = np.asarray(emb, dtype=np.float32)
        if emb.shape != (len(ix), self.dim):
            raise ValueError(f"embeddings of shape {emb.shape}, expected ({len(ix)}, {self.dim})")
        for idx in cell_blocks(ix, iy, self.block_cells):
            bx = int(ix[idx[0]] // self.block_cells)
            by = int(iy[idx[0]] // self.block_cells)
            block_emb, block_present = self._load(bx, by)
            block_emb = np.array(block_emb)
            block_present = np.array(block_present)
            local = self._local(ix[idx], iy[idx], bx, by)
            block_emb[local] = emb[idx]
            block_present[local] = True
            write_embedding_block(self._path(bx, by), block_emb, block_present)
