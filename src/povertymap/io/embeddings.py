"""The on-disk cache of the imagery embedding blocks: cell blocks, cached models, digests.

A cache folder (``<cache_dir>/<block>-<key>/``, see
:mod:`povertymap.features.embeddings`) holds

- ``cells/b<bx>_<by>.npz``: the embeddings of one aligned block of cells (``emb``, a dense
  ``(block_cells ** 2, dim)`` float32 array, and ``present``, a flag per cell), read and
  written by :class:`~povertymap.models.deep.store.EmbeddingStore` through
  :func:`read_embedding_block` and :func:`write_embedding_block`;
- ``model.keras`` and ``meta.json``: a trained CNN and its training record
  (:func:`write_cached_model`, :func:`cached_model`).

Every file is written to a temporary name and renamed, so a crash never leaves a partial
block, and the model is renamed into place last, so a folder with a ``model.keras`` is
complete. Folders without a ``cache_dir`` are private temporary folders
(:func:`private_temp_dir`), deleted with the object that owns them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras

__all__ = [
    "META_FILE",
    "MODEL_FILE",
    "DigestMemo",
    "cached_model",
    "file_digest",
    "private_temp_dir",
    "read_embedding_block",
    "write_cached_model",
    "write_embedding_block",
]

MODEL_FILE = "model.keras"
META_FILE = "meta.json"

#: ``(resolved path, size, mtime in ns)``: a file is hashed again only when one changes.
DigestMemo = MutableMapping[tuple[str, int, int], str]


def file_digest(path: Path, memo: DigestMemo | None = None, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks; memoised in the caller's ``memo`` when given.

    ``memo`` is keyed on ``(resolved path, size, mtime)``, so a file that changes is hashed
    again. The caller owns it (a block keeps one per instance): there is no global cache.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo is not None and key in memo:
        return memo[key]
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    digest = h.hexdigest()
    if memo is not None:
        memo[key] = digest
    return digest


def private_temp_dir(owner: object, prefix: str) -> Path:
    """A new temporary folder, deleted (with its content) when ``owner`` is garbage-collected."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    weakref.finalize(owner, shutil.rmtree, str(path), True)
    return path


def read_embedding_block(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(emb, present)`` of the block file ``path``, or None when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    with np.load(path) as z:
        return z["emb"], z["present"]


def write_embedding_block(path: Path, emb: np.ndarray, present: np.ndarray) -> Path:
    """Write a block file atomically (its folder is created). Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp.npz"
    try:
        np.savez(tmp, emb=emb, present=present)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def cached_model(root: Path) -> tuple[Path, dict[str, Any]] | None:
    """``(path of the model, its meta)`` of the model cached under ``root``, or None.

    Load the model with :func:`povertymap.models.deep.cnn.load_cnn`.
    """
    root = Path(root)
    model_path = root / MODEL_FILE
    if not model_path.exists():
        return None
    meta: dict[str, Any] = json.loads((root / META_FILE).read_text())
    return model_path, meta


def write_cached_model(root: Path, model: keras.Model, meta: Mapping[str, Any]) -> Path:
    """Cache ``model`` and its ``meta`` (JSON, ``str`` for other types) under ``root``.

    The meta is written first and the model renamed into place last, so
    :func:`cached_model` never sees a model without its meta. Returns the model's path.
    """
    from povertymap.io.keras import save_keras_model

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    meta_path = root / META_FILE
    tmp = root / f".{META_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(json.dumps(dict(meta), indent=1, default=str))
        tmp.replace(meta_path)
    finally:
        tmp.unlink(missing_ok=True)
    return save_keras_model(model, root / MODEL_FILE)
