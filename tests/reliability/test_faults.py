"""Fault tests: processes killed with SIGKILL, and two processes writing one embedding cache.

Covered elsewhere (not repeated here): ``kill -9`` in the middle of ``compute_embeddings(cache=)``
(tests/engine/test_store.py::test_kill_9_in_the_middle_then_rerun_gives_identical_embeddings) and of
``napari-sam embed`` (tests/test_cli.py::test_embed_killed_halfway_then_rerun_gives_identical_embeddings).
"""

from __future__ import annotations

import re
import sys
import time

import numpy as np
import pytest
import tifffile

from tests._faults import assert_killed, finish, read_line, spawn
from tests.conftest import GOLDEN

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and flock are POSIX")

WEIGHTS = GOLDEN / "small_a" / "weights.pth"


def _arrays(path) -> dict[str, np.ndarray]:
    import zarr

    group = zarr.open_group(str(path), mode="r")
    return {name: np.asarray(group[name][...]) for name in ("embeddings", "done", "slice_hash")}


def _assert_same_cache(path, reference) -> None:
    from napari_sam.engine.embed.store import open_store

    store = open_store(path)
    assert store.is_complete
    assert all(store.verify_slice(z) for z in range(store.n_slices))  # every chunk's CRC
    got, want = _arrays(path), _arrays(reference)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# ---------------------------------------------------------------------------------------------- one cache


EMBED_WHEN_TOLD = """
    import sys, time
    from pathlib import Path
    import numpy as np
    from napari_sam.engine.embed import embeddings as E
    from napari_sam.engine.embed.pipeline import SliceEmbedder

    encoded = []
    original = SliceEmbedder._encode

    def slow_encode(self, inputs):  # slow enough for the two processes to overlap
        encoded.append(len(inputs))
        time.sleep(0.15)
        return original(self, inputs)

    SliceEmbedder._encode = slow_encode
    stack = np.load({stack!r})
    model = E.load_model({weights!r}, "cpu")
    print("ready", flush=True)
    while not Path({go!r}).exists():
        time.sleep(0.005)
    E.compute_embeddings(stack, model, cache={cache!r})
    print("encoded", sum(encoded), flush=True)
"""


def test_two_processes_embedding_one_new_cache_compute_each_slice_once(tmp_path):
    """Both finish; the second waits for slices the first is writing and reuses them: one cache,
    every slice computed by exactly one process, equal to a single-process run."""
    from napari_sam import compute_embeddings

    stack = np.random.default_rng(1).integers(0, 4000, (8, 32, 40), dtype=np.uint16)
    np.save(tmp_path / "stack.npy", stack)
    cache, go = tmp_path / "shared.zarr", tmp_path / "go"
    code = EMBED_WHEN_TOLD.format(
        stack=str(tmp_path / "stack.npy"), weights=str(WEIGHTS), go=str(go), cache=str(cache)
    )
    children = [spawn(code, tmp_path) for _ in range(2)]
    for child in children:
        read_line(child, "ready")
    go.touch()  # both create / open the cache at the same moment
    results = [finish(child) for child in children]
    for code_, _, err in results:
        assert code_ == 0, err
    counts = [int(out.split()[-1]) for _, out, _ in results]
    assert sum(counts) == len(stack), counts  # without the lock each process computes all 8

    compute_embeddings(stack, str(WEIGHTS), device="cpu", cache=tmp_path / "single.zarr")
    _assert_same_cache(cache, tmp_path / "single.zarr")


HOLD_SLICE = """
    from napari_sam.engine.embed.store import open_store

    store = open_store({cache!r}, mode="r+")
    store.begin_slice(2)
    print("locked", flush=True)
    import time
    time.sleep(120)
"""


def test_a_writer_that_waits_too_long_fails_cleanly_and_a_killed_holder_frees_the_cache(
    tmp_path, monkeypatch
):
    from napari_sam import compute_embeddings, open_embeddings
    from napari_sam.engine.embed.store import EmbeddingStore, open_store
    from napari_sam.errors import CacheLockedError

    stack = np.random.default_rng(2).integers(0, 4000, (4, 32, 40), dtype=np.uint16)
    cache = tmp_path / "c.zarr"
    reference = compute_embeddings(stack, str(WEIGHTS), device="cpu", cache=cache)
    holder = spawn(HOLD_SLICE.format(cache=str(cache)), tmp_path)
    try:
        read_line(holder, "locked")
        store = EmbeddingStore.open(cache, mode="r+", lock_timeout=0.3)
        with pytest.raises(
            CacheLockedError,
            match=rf"slice 2 of the embedding cache at {re.escape(str(cache))}.*pid {holder.pid}",
        ):
            store.begin_slice(2, content_hash=123)
        with pytest.raises(
            CacheLockedError, match=rf"{re.escape(str(cache))} is being written by pid {holder.pid}.*\[2\]"
        ):
            EmbeddingStore.create(cache, store.meta, overwrite=True, lock_timeout=0.3)
        monkeypatch.setenv("NAPARI_SAM_LOCK_TIMEOUT", "0.3")  # the same through compute_embeddings
        with pytest.raises(CacheLockedError, match=rf"slice 2 .*pid {holder.pid}"):
            compute_embeddings(stack, str(WEIGHTS), device="cpu", cache=cache)
        monkeypatch.delenv("NAPARI_SAM_LOCK_TIMEOUT")
        # nothing was changed by the refused writers, and readers need no lock
        assert open_store(cache).done_mask().tolist() == [True, True, False, True]
        vol = open_embeddings(cache)
        np.testing.assert_array_equal(vol[3].features.numpy(), reference[3].features.numpy())
        kept = store.begin_slice(0, content_hash=int(open_store(cache).stored_hash(0)))
        assert kept.all()  # other slices are free, and a done slice of that content is reused
        store.release_locks()
    finally:
        holder.kill()
        holder.wait()
    start = time.monotonic()
    store.begin_slice(2, content_hash=123)  # the dead holder's lock went with it
    assert time.monotonic() - start < 1.0
    store.release_locks()
    again = compute_embeddings(stack, str(WEIGHTS), device="cpu", cache=cache)  # slice 2 recomputed
    assert open_store(cache).is_complete
    np.testing.assert_array_equal(again[2].features.numpy(), reference[2].features.numpy())


KILLED_WHILE_CREATING = """
    import numpy as np
    import zarr
    from napari_sam import compute_embeddings

    created = []
    original = zarr.Group.create_array

    def create_array(self, *args, **kwargs):
        created.append(1)
        if len(created) == 3:
            die()
        return original(self, *args, **kwargs)

    zarr.Group.create_array = create_array
    compute_embeddings(np.load({stack!r}), {weights!r}, device="cpu", cache={cache!r})
"""


def test_kill_9_while_creating_the_cache_then_rerun(tmp_path):
    """The remains of a creation that was killed are recognised as ours and replaced (not refused as
    a foreign folder)."""
    from napari_sam import compute_embeddings
    from napari_sam.engine.embed.store import is_embedding_store

    stack = np.random.default_rng(3).integers(0, 4000, (3, 32, 40), dtype=np.uint16)
    np.save(tmp_path / "stack.npy", stack)
    cache = tmp_path / "c.zarr"
    code = KILLED_WHILE_CREATING.format(
        stack=str(tmp_path / "stack.npy"), weights=str(WEIGHTS), cache=str(cache)
    )
    assert_killed(spawn(code, tmp_path))
    assert cache.is_dir() and not is_embedding_store(cache) and (cache / "embeddings").is_dir()
    compute_embeddings(stack, str(WEIGHTS), device="cpu", cache=cache)
    compute_embeddings(stack, str(WEIGHTS), device="cpu", cache=tmp_path / "ref.zarr")
    _assert_same_cache(cache, tmp_path / "ref.zarr")


# ---------------------------------------------------------------------------------------------- batch


SEGMENT_KILLED_WHILE_WRITING = """
    from pathlib import Path
    import napari_sam.io.writing as io
    from napari_sam.cli import main

    written = []
    original = io._write_tif

    def write_tif(path, labels):
        written.append(path)
        original(path, labels)
        if len(written) == 2:  # the second output: half written, then the process dies
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
            die()

    io._write_tif = write_tif
    main({argv!r})
"""


def test_segment_batch_killed_while_writing_an_output_then_rerun(tmp_path):
    """No half-written labels file is left under an output name; the rerun skips the finished file,
    completes the others, and every output equals an uninterrupted run's."""
    from napari_sam.cli import main
    from napari_sam.data.synthetic import nuclei_2d

    images = tmp_path / "images"
    images.mkdir()
    rows = ["file,min_row,min_col,max_row,max_col"]
    for i in range(3):
        image, _ = nuclei_2d((64, 72), n_objects=3, seed=10 + i)
        tifffile.imwrite(images / f"cells{i}.tif", image)
        rows.append(f"cells{i}.tif,5,5,40,50")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("\n".join(rows) + "\n")

    def argv(name):
        out, cache = tmp_path / name, tmp_path / f"{name}-cache"
        options = ["--model", str(WEIGHTS), "--device", "cpu", "-q", "--cache", str(cache)]
        return ["segment", str(images), "--boxes", str(boxes), "--out", str(out), *options]

    assert_killed(spawn(SEGMENT_KILLED_WHILE_WRITING.format(argv=argv("killed")), tmp_path))
    outputs = sorted(p.name for p in (tmp_path / "killed").iterdir() if not p.name.startswith("."))
    # the torn file only exists under a temporary name; the finished one has its record beside it
    assert outputs == ["cells0_labels.tif", "cells0_labels.tif.napari-sam.json"]
    assert main(argv("killed")) == 0
    assert main(argv("whole")) == 0
    for i in range(3):
        name = f"cells{i}_labels.tif"
        got = tifffile.imread(tmp_path / "killed" / name)
        np.testing.assert_array_equal(got, tifffile.imread(tmp_path / "whole" / name), err_msg=name)
        assert got.max() >= 1


# ---------------------------------------------------------------------------------------------- training


TRAIN = """
    import torch
    from napari_sam.engine.training import train as T
    from napari_sam.engine.training.data import folder_source
    from napari_sam.model import build_sam

    original = T.Trainer.train_step

    def train_step(self, canvases, rng):
        figures = original(self, canvases, rng)
        if self.step == {kill_at}:  # a step after the last checkpoint, not saved
            die()
        return figures

    T.Trainer.train_step = train_step
    torch.manual_seed(0)
    cfg = T.TrainConfig(**{cfg!r})
    run = T.TrainRun(out_dir={out!r})
    T.train_model(build_sam("nano"), folder_source({data!r}), cfg, run, progress=False)
"""


def test_training_killed_after_a_checkpoint_resumes_to_identical_weights(tmp_path):
    import torch

    from napari_sam.data.synthetic import nuclei_2d
    from napari_sam.engine.training.data import folder_source
    from napari_sam.engine.training.train import TrainConfig, TrainRun, train_model
    from napari_sam.model import build_sam

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        image, labels = nuclei_2d((64, 64), n_objects=4, seed=20 + i)
        tifffile.imwrite(data / f"img{i}.tif", image)
        tifffile.imwrite(data / f"img{i}_labels.tif", labels)
    cfg = {
        "steps": 4,
        "batch_images": 1,
        "objects_per_image": 1,
        "crop_size": 64,
        "warmup_steps": 2,
        "log_every": 1,
        "checkpoint_every": 2,
    }
    killed = tmp_path / "killed"
    code = TRAIN.format(kill_at=3, cfg=cfg, data=str(data), out=str(killed))
    assert_killed(spawn(code, tmp_path))
    saved = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the child
    try:
        torch.manual_seed(123)  # the resumed run takes everything from the checkpoint
        resumed = train_model(
            build_sam("nano"),
            folder_source(data),
            TrainConfig(**cfg),
            TrainRun(out_dir=killed),
            progress=False,
        )
        torch.manual_seed(0)
        whole = train_model(
            build_sam("nano"),
            folder_source(data),
            TrainConfig(**cfg),
            TrainRun(out_dir=tmp_path / "whole"),
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    assert resumed.step == whole.step == 4
    got = torch.load(killed / "checkpoint.pt", weights_only=True)
    want = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    for name, value in want["model"].items():
        assert torch.equal(got["model"][name], value), name

    def figures(history):
        return [(h["step"], h["loss"], h["iou"]) for h in history]

    assert figures(resumed.history) == figures(whole.history)
