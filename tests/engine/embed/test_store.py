"""The zarr embedding cache: round trip, resume, content hashes, mismatches, damage, laziness."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_sam.engine.embed.pipeline as emb_mod
from napari_sam.engine.embed.embeddings import VolumeEmbeddings, compute_embeddings, open_embeddings
from napari_sam.engine.embed.store import EmbeddingStore, is_embedding_store, open_store
from napari_sam.engine.types import Embeddings
from napari_sam.errors import CacheMismatchError, Cancelled, CorruptSliceError
from tests.conftest import GOLDEN, Golden


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    rng = np.random.default_rng(1)
    vol = rng.normal(500, 40, (4, 40, 48))
    for z in range(4):
        vol[z, 10 + z : 25 + z, 12:30] += 3000 + 500 * z
    return np.clip(vol, 0, 65535).astype(np.uint16)


@pytest.fixture
def encoded(monkeypatch) -> list[int]:
    """Counts the images passed through the encoder (one entry per forward pass)."""
    calls: list[int] = []
    real = emb_mod.encode_images

    def counting(sam, inputs, **kwargs):
        calls.append(int(inputs.shape[0]))
        return real(sam, inputs, **kwargs)

    monkeypatch.setattr(emb_mod, "encode_images", counting)
    return calls


def _features(vol: VolumeEmbeddings) -> np.ndarray:
    return np.stack([vol[z].features[0].cpu().numpy() for z in range(len(vol))])


def _chunk_file(cache: Path, z: int) -> Path:
    files = [p for p in (cache / "embeddings" / "c" / str(z)).rglob("*") if p.is_file()]
    assert len(files) == 1
    return files[0]


def test_round_trip_is_float16_one_chunk_per_slice(tmp_path, volume, small_model):
    memory = compute_embeddings(volume, small_model)
    cached = compute_embeddings(volume, small_model, cache=tmp_path / "c.zarr")
    assert isinstance(memory, VolumeEmbeddings) and isinstance(cached, VolumeEmbeddings)
    assert len(cached) == 4 and cached.shape == (4, 40, 48) and cached.is_complete
    expected = _features(memory)
    np.testing.assert_array_equal(_features(cached), expected.astype(np.float16).astype(np.float32))

    store = open_store(tmp_path / "c.zarr")
    arr = store.array("embeddings")
    assert arr.dtype == np.float16
    assert arr.shape == (4, *small_model.embedding_shape)
    assert arr.chunks == (1, *small_model.embedding_shape)
    meta = store.meta
    assert meta["format_version"] == 1
    assert meta["model"]["weights_sha256"] == cached[0].weights_sha256
    assert meta["image"]["shape"] == [4, 40, 48] and meta["image"]["dtype"] == "<u2"
    assert meta["preprocessing"]["normalize"] == "percentile"
    assert meta["tiling"] is None and meta["library_version"]
    rec = store.read_slice(2)
    assert tuple(rec["original_size"]) == (40, 48)
    assert rec["features"].shape == small_model.embedding_shape
    # per-slice percentile limits are recorded and differ between slices
    assert cached[0].preprocessing.contrast_limits != cached[3].preprocessing.contrast_limits
    assert cached[3].preprocessing == memory[3].preprocessing


def test_float32_cache_is_exact(tmp_path, volume, small_model):
    memory = compute_embeddings(volume, small_model)
    cached = compute_embeddings(volume, small_model, cache=tmp_path / "c.zarr", cache_dtype="float32")
    np.testing.assert_array_equal(_features(cached), _features(memory))
    reopened = open_embeddings(tmp_path / "c.zarr", small_model)
    np.testing.assert_array_equal(_features(reopened), _features(memory))


def test_2d_image_is_one_slice_and_is_reused(tmp_path, volume, small_model, encoded):
    first = compute_embeddings(volume[0], small_model, cache=tmp_path / "c.zarr")
    assert isinstance(first, Embeddings) and sum(encoded) == 1
    second = compute_embeddings(volume[0], small_model, cache=tmp_path / "c.zarr")
    assert sum(encoded) == 1  # read back, not recomputed
    torch.testing.assert_close(first.features, second.features, rtol=0, atol=0)
    assert open_store(tmp_path / "c.zarr").array("embeddings").shape[0] == 1


def test_interrupted_run_resumes_where_it_stopped(tmp_path, volume, small_model, encoded):
    cache = tmp_path / "c.zarr"

    def stop_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compute_embeddings(volume, small_model, cache=cache, progress=stop_after_two)
    np.testing.assert_array_equal(open_store(cache).done_mask(), [True, True, False, False])
    encoded.clear()
    resumed = compute_embeddings(volume, small_model, cache=cache)
    assert sum(encoded) == 2
    reference = compute_embeddings(volume, small_model, cache=tmp_path / "ref.zarr")
    np.testing.assert_array_equal(_features(resumed), _features(reference))


def test_a_slice_whose_flag_is_false_is_recomputed(tmp_path, volume, small_model, encoded):
    cache = tmp_path / "c.zarr"
    compute_embeddings(volume, small_model, cache=cache)
    store = open_store(cache, mode="r+")
    store.begin_slice(1)  # as left by a process killed while rewriting slice 1 …
    store.release_locks()  # … whose locks died with it
    encoded.clear()
    vol = compute_embeddings(volume, small_model, cache=cache)
    assert sum(encoded) == 1 and vol.is_complete


def test_only_changed_slices_are_recomputed(tmp_path, volume, small_model, encoded):
    cache = tmp_path / "c.zarr"
    before = _features(compute_embeddings(volume, small_model, cache=cache))
    changed = volume.copy()
    changed[2, 5:15, 5:15] = 9000
    encoded.clear()
    after = _features(compute_embeddings(changed, small_model, cache=cache, batch_size=4))
    assert encoded == [1]
    np.testing.assert_array_equal(after[[0, 1, 3]], before[[0, 1, 3]])
    assert not np.array_equal(after[2], before[2])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "small_b"}, "model weights"),
        ({"percentiles": (2.0, 98.0)}, "preprocessing"),
        ({"contrast_limits": (0, 4000)}, "preprocessing"),
        ({"shape": (3, 40, 48)}, "image shape"),
        ({"dtype": np.float32}, "image dtype"),
        ({"tile": (32, 4)}, "tile size"),
        ({"cache_dtype": "float32"}, "cache dtype"),
    ],
)
def test_another_model_preprocessing_or_image_is_refused(tmp_path, volume, small_model, change, message):
    cache = tmp_path / "c.zarr"
    compute_embeddings(volume, small_model, cache=cache)
    image, kwargs = volume, {}
    model = small_model
    if "model" in change:
        model = Golden(GOLDEN / change["model"]).model()
    if "shape" in change:
        image = volume[: change["shape"][0]]
    if "dtype" in change:
        image = volume.astype(change["dtype"])
    kwargs.update({k: v for k, v in change.items() if k not in ("model", "shape", "dtype")})
    with pytest.raises(CacheMismatchError, match=message):
        compute_embeddings(image, model, cache=cache, **kwargs)
    assert open_store(cache).is_complete  # the old cache is left intact
    replaced = compute_embeddings(image, model, cache=cache, overwrite=True, **kwargs)
    assert replaced.is_complete and len(replaced) == len(image)


def test_truncated_chunk_is_detected_and_recomputed(tmp_path, volume, small_model, encoded):
    cache = tmp_path / "c.zarr"
    original = _features(compute_embeddings(volume, small_model, cache=cache))
    chunk = _chunk_file(cache, 1)
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])  # a write cut short
    store = open_store(cache)
    assert store.done_mask().all()
    assert not store.verify_slice(1) and store.verify_slice(0)
    with pytest.raises(CorruptSliceError, match="slice 1"):
        open_embeddings(cache, small_model)[1]
    encoded.clear()
    repaired = compute_embeddings(volume, small_model, cache=cache)
    assert sum(encoded) == 1
    np.testing.assert_array_equal(_features(repaired), original)


def test_missing_chunk_and_torn_flag_are_detected(tmp_path, volume, small_model, encoded):
    cache = tmp_path / "c.zarr"
    compute_embeddings(volume, small_model, cache=cache)
    _chunk_file(cache, 0).unlink()
    flag = next(p for p in (cache / "done" / "c" / "3").parent.rglob("3") if p.is_file())
    flag.write_bytes(flag.read_bytes()[:1])
    store = open_store(cache)
    np.testing.assert_array_equal(store.done_mask(), [True, True, True, False])
    assert not store.verify_slice(0)
    encoded.clear()
    compute_embeddings(volume, small_model, cache=cache)
    assert sum(encoded) == 2


def test_reads_one_slice_at_a_time(tmp_path, volume, small_model, monkeypatch):
    class Recording:
        """A lazy array that records which slices are read."""

        def __init__(self, data):
            self.data, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, []

        def __getitem__(self, index):
            self.reads.append(index)
            assert isinstance(index, tuple) and isinstance(index[0], int), index
            return self.data[index]

        def __array__(self, *args, **kwargs):
            raise AssertionError("the whole stack was read")

    source = Recording(volume)
    vol = compute_embeddings(source, small_model, cache=tmp_path / "c.zarr")
    assert [r[0] for r in source.reads] == [0, 1, 2, 3]

    reads: list[int] = []
    real = EmbeddingStore.read_slice

    def recording_read(self, z, tile=None):
        reads.append(z)
        return real(self, z, tile)

    monkeypatch.setattr(EmbeddingStore, "read_slice", recording_read)
    lazy = open_embeddings(tmp_path / "c.zarr", small_model)
    assert reads == []
    assert lazy[2].original_size == (40, 48)
    assert set(reads) == {2}
    np.testing.assert_array_equal(lazy[2].features.numpy(), vol[2].features.numpy())


def test_dask_and_zarr_stacks(tmp_path, volume, small_model):
    import dask.array as da
    import zarr

    z_arr = zarr.create_array(
        tmp_path / "img.zarr", shape=volume.shape, chunks=(1, 40, 48), dtype=volume.dtype
    )
    z_arr[:] = volume
    reference = _features(compute_embeddings(volume, small_model))
    from_zarr = compute_embeddings(z_arr, small_model, cache=tmp_path / "a.zarr", cache_dtype="float32")
    from_dask = compute_embeddings(da.from_array(volume, chunks=(1, 40, 48)), small_model)
    np.testing.assert_array_equal(_features(from_zarr), reference)
    np.testing.assert_array_equal(_features(from_dask), reference)


def test_only_requested_slices_are_computed_then_the_rest_lazily(tmp_path, volume, small_model, encoded):
    vol = compute_embeddings(volume, small_model, cache=tmp_path / "c.zarr", slices=[1, 3])
    np.testing.assert_array_equal(vol.computed(), [False, True, False, True])
    assert sum(encoded) == 2 and not vol.is_complete
    assert vol[0].original_size == (40, 48)  # computed on first access
    assert sum(encoded) == 3
    np.testing.assert_array_equal(open_store(tmp_path / "c.zarr").done_mask(), [True, True, False, True])
    assert vol.compute().is_complete and sum(encoded) == 4


def test_cancel_keeps_finished_slices(tmp_path, volume, small_model):
    cancel = threading.Event()

    def progress(done, total):
        if done == 1:
            cancel.set()

    with pytest.raises(Cancelled):
        compute_embeddings(volume, small_model, cache=tmp_path / "c.zarr", progress=progress, cancel=cancel)
    done = open_store(tmp_path / "c.zarr").done_mask()
    assert done[0] and not done.all()


def test_store_detection_and_foreign_folders(tmp_path, volume, small_model):
    compute_embeddings(volume[0], small_model, cache=tmp_path / "c.zarr")
    assert is_embedding_store(tmp_path / "c.zarr")
    assert not is_embedding_store(tmp_path)
    assert not is_embedding_store(tmp_path / "missing")
    other = tmp_path / "data"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    assert not is_embedding_store(other)
    with pytest.raises(ValueError, match="not a napari-sam embedding cache"):
        open_store(other)
    with pytest.raises(FileExistsError, match="left alone"):
        compute_embeddings(volume[0], small_model, cache=other, overwrite=True)
    assert (other / "precious.txt").read_text() == "keep me"


def test_read_only_location_gives_a_clear_error(tmp_path, volume, small_model):
    if os.geteuid() == 0:  # root ignores permission bits: use a read-only file system instead
        if not Path("/proc/self").is_dir():
            pytest.skip("needs /proc or a non-root user")
        target = Path("/proc/napari_sam_cache.zarr")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "c.zarr"
    with pytest.raises(PermissionError, match="cannot"):
        compute_embeddings(volume[0], small_model, cache=target)


def test_volume_wide_percentiles_and_channel_axis(tmp_path, volume, small_model):
    vol = compute_embeddings(volume, small_model, percentile_scope="volume")
    limits = {vol[z].preprocessing.contrast_limits for z in range(4)}
    assert len(limits) == 1
    two_channels = np.stack([volume, volume // 2], axis=1)  # (Z, C, Y, X)
    by_axis = compute_embeddings(
        two_channels, small_model, channel_axis=1, channel=0, cache=tmp_path / "c.zarr"
    )
    assert len(by_axis) == 4 and by_axis[0].original_size == (40, 48)
    np.testing.assert_allclose(
        _features(by_axis), _features(compute_embeddings(volume, small_model)), atol=2e-2, rtol=1e-2
    )


def test_bad_arguments(tmp_path, volume, small_model):
    with pytest.raises(ValueError, match="batch_size"):
        compute_embeddings(volume, small_model, batch_size=0)
    with pytest.raises(ValueError, match="cache_dtype"):
        compute_embeddings(volume, small_model, cache=tmp_path / "c", cache_dtype="int8")
    with pytest.raises(ValueError, match="slices"):
        compute_embeddings(volume, small_model, slices=[7])
    with pytest.raises(TypeError, match="progress"):
        compute_embeddings(volume[0], small_model, progress="yes")
    with pytest.raises(ValueError, match="2D"):
        compute_embeddings(np.zeros((2, 3, 8, 8, 8)), small_model)


def test_kill_9_in_the_middle_then_rerun_gives_identical_embeddings(tmp_path, small_weights):
    import signal
    import subprocess
    import sys
    import time

    rng = np.random.default_rng(5)
    stack = rng.integers(0, 5000, (12, 32, 40), dtype=np.uint16)
    np.save(tmp_path / "stack.npy", stack)
    cache = tmp_path / "c.zarr"
    code = (
        "import sys, time, numpy as np\n"
        "from napari_sam.engine.embed.embeddings import compute_embeddings\n"
        "def report(done, total):\n"
        "    print(done, flush=True)\n"
        "    time.sleep(0.3)\n"
        f"stack = np.load({str(tmp_path / 'stack.npy')!r})\n"
        f"compute_embeddings(stack, {str(small_weights)!r}, device='cpu', cache={str(cache)!r},\n"
        "                   progress=report)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        for line in child.stdout:  # type: ignore[union-attr]
            if int(line) >= 3 or time.monotonic() > deadline:
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    done = open_store(cache).done_mask()
    assert 3 <= done.sum() < 12
    resumed = compute_embeddings(stack, str(small_weights), device="cpu", cache=cache)
    reference = compute_embeddings(stack, str(small_weights), device="cpu", cache=tmp_path / "ref.zarr")
    np.testing.assert_array_equal(_features(resumed), _features(reference))
