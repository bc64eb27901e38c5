"""Several users of one SAM 2 frame store: creation and replacement are exclusive, frames are written
under a shared hold of the store's lock, and a store replaced with other parameters is refused by a
writer that opened the old one (never written into)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam.engine.embed.filelock import FileLock
from napari_sam.engine.embed.sam2_frames import open_frames
from napari_sam.engine.embed.store_locks import LOCK_FILE
from napari_sam.errors import CacheLockedError, CacheMismatchError


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.normal(200, 20, (3, 32, 40)).astype(np.float32)


def test_two_openers_of_a_new_store_share_it(tiny_sam2, stack, tmp_path):
    cache = tmp_path / "frames.zarr"
    opened, errors = [], []

    def open_one() -> None:
        try:
            opened.append(open_frames(stack, tiny_sam2, cache=cache))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(opened) == 4
    opened[0](0)  # one writes frame 0, another reads it back without encoding
    assert opened[1](0).image_embed.shape == opened[0](0).image_embed.shape
    assert opened[1].encoder_calls == 0 and opened[1].store is not None and opened[1].store.is_done(0)


def test_a_writer_refuses_a_store_replaced_with_other_parameters(tiny_sam2, stack, tmp_path):
    cache = tmp_path / "frames.zarr"
    first = open_frames(stack, tiny_sam2, cache=cache)
    first(0)
    open_frames(stack, tiny_sam2, cache=cache, overwrite=True, cache_dtype="float32")  # replaced
    with pytest.raises(CacheMismatchError, match="replaced by another process"):
        first(1)


def test_a_replacement_waits_for_a_frame_being_written(tiny_sam2, stack, tmp_path, monkeypatch):
    cache = tmp_path / "frames.zarr"
    frames = open_frames(stack, tiny_sam2, cache=cache)
    frames(0)
    writer = FileLock(cache / LOCK_FILE, shared=True)  # as a frame being written elsewhere holds it
    assert writer.acquire(0)
    monkeypatch.setenv("NAPARI_SAM_LOCK_TIMEOUT", "0.2")
    try:
        with pytest.raises(CacheLockedError):
            open_frames(stack, tiny_sam2, cache=cache, overwrite=True, cache_dtype="float32")
    finally:
        writer.release()
    assert frames.store is not None and frames.store.is_done(0)  # untouched


def test_foreign_folders_are_refused_untouched_even_with_a_lock_file(tiny_sam2, stack, tmp_path):
    for with_lock in (False, True):
        folder = tmp_path / f"mine-{with_lock}"
        folder.mkdir()
        (folder / "notes.txt").write_text("a user's file")
        if with_lock:
            (folder / LOCK_FILE).write_text("")
        with pytest.raises(FileExistsError, match="is not a SAM 2 frame store"):
            open_frames(stack, tiny_sam2, cache=folder)
        assert (folder / "notes.txt").read_text() == "a user's file"
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["notes.txt", *([LOCK_FILE] if with_lock else [])]
        )
