"""The io modules behind the imagery blocks: embedding cache files, tile files, digests."""

from __future__ import annotations

import gc
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from povertymap.io.embeddings import (
    META_FILE,
    MODEL_FILE,
    cached_model,
    file_digest,
    private_temp_dir,
    read_embedding_block,
    write_embedding_block,
)
from povertymap.io.tiles import TileFile, TileFileWriter, temporary_tile_dir


def test_file_digest_is_the_sha256_and_the_memo_is_the_callers(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc" * 1000)
    expected = hashlib.sha256(b"abc" * 1000).hexdigest()
    assert file_digest(path, chunk=7) == expected
    memo: dict[tuple[str, int, int], str] = {}
    assert file_digest(path, memo) == expected and list(memo.values()) == [expected]
    # same size and mtime: the memo answers without reading the file
    st = path.stat()
    path.write_bytes(b"xyz" * 1000)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_digest(path, memo) == expected
    assert file_digest(path) == hashlib.sha256(b"xyz" * 1000).hexdigest()  # no memo: read
    # a changed file (new mtime) is hashed again
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert file_digest(path, memo) == hashlib.sha256(b"xyz" * 1000).hexdigest()
    assert len(memo) == 2


def test_embedding_blocks_round_trip_atomically(tmp_path: Path) -> None:
    path = tmp_path / "cells" / "b1_-2.npz"
    assert read_embedding_block(path) is None
    emb = np.arange(12, dtype=np.float32).reshape(4, 3)
    emb[2] = np.nan
    present = np.array([True, True, False, True])
    assert write_embedding_block(path, emb, present) == path
    got = read_embedding_block(path)
    assert got is not None
    np.testing.assert_array_equal(got[0], emb)
    np.testing.assert_array_equal(got[1], present)
    assert got[0].dtype == np.float32
    assert sorted(p.name for p in path.parent.iterdir()) == ["b1_-2.npz"]  # no temp file left


def test_no_cached_model_without_its_file(tmp_path: Path) -> None:
    assert cached_model(tmp_path) is None
    (tmp_path / META_FILE).write_text('{"history": {"loss": [1.0]}}')
    assert cached_model(tmp_path) is None  # meta alone: an interrupted write
    (tmp_path / MODEL_FILE).write_bytes(b"")
    found = cached_model(tmp_path)
    assert found == (tmp_path / MODEL_FILE, {"history": {"loss": [1.0]}})


def test_private_temp_dir_goes_with_its_owner() -> None:
    class Owner:
        pass

    owner = Owner()
    folder = private_temp_dir(owner, prefix="povertymap-test-")
    (folder / "f").write_text("x")
    assert folder.is_dir()
    del owner
    gc.collect()
    assert not folder.exists()


def test_tile_files_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (3, 4, 5, 2)).astype(np.uint8)
    b = rng.integers(0, 255, (2, 4, 5, 2)).astype(np.uint8)
    with temporary_tile_dir(tmp_path / "cache") as scratch:
        assert scratch.parent == tmp_path / "cache"
        with TileFileWriter(scratch / "sub" / "t.u8", (4, 5, 2), "uint8") as out:
            out.append(a)
            out.append(b)
            with pytest.raises(ValueError, match="expected"):
                out.append(np.zeros((1, 5, 4, 2), np.uint8))
        tiles = out.tiles
        assert tiles == TileFile(scratch / "sub" / "t.u8", 5, (4, 5, 2), "uint8")
        assert tiles.path.stat().st_size == 5 * 4 * 5 * 2
        np.testing.assert_array_equal(tiles.memmap(), np.concatenate([a, b]))
    assert not scratch.exists() and (tmp_path / "cache").is_dir()
    empty = TileFile(tmp_path / "none.u8", 0, (4, 5, 2), "uint8")
    assert empty.memmap().shape == (0, 4, 5, 2)
