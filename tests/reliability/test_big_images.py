"""Big 2D images are embedded tile by tile from their source (issue 16, item 7).

A large slice is never turned into one float32 RGB array: its content hash is taken block by block,
its percentiles on a regular subsample of the source (the one the whole-slice computation used),
and each tile reads only its window. Peak memory is a few tiles, not ~16× the image. Progress
counts tiles and moves as each tile is written.
"""

from __future__ import annotations

import re
import threading
import tracemalloc
from typing import Any

import numpy as np
import pytest
import tifffile

import napari_sam as ns
import napari_sam.engine.embed.reader as reader_mod
from napari_sam.engine.embed.store import open_store, slice_hash
from napari_sam.engine.embed.tiling import tile_windows
from napari_sam.engine.preprocess import percentile_limits
from napari_sam.engine.types import _VOLUME_SAMPLE_PIXELS, TiledEmbeddings, TileSpec
from napari_sam.errors import Cancelled
from napari_sam.io import read_image
from tests.conftest import GOLDEN, Golden

TILE = (128, 16)


@pytest.fixture(scope="module")
def model() -> Any:
    return Golden(GOLDEN / "small_a").model()


def _pattern(shape: tuple[int, ...], seed: int = 0, dtype: Any = np.uint16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(500, 40, shape)
    rows, cols = shape[0], shape[1]
    img[rows // 5 : rows // 3, cols // 4 : cols // 2] += 3000
    img[rows // 2 : rows // 2 + rows // 8, cols // 2 : cols // 2 + cols // 6] += 6000
    info = np.iinfo(dtype)
    return np.clip(img, info.min, info.max).astype(dtype)


class Recording:
    """An array-like over a numpy array that records how many bytes each read materialises."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads: list[int] = []

    def __getitem__(self, index: Any) -> np.ndarray:
        out = np.array(self.data[index])
        self.reads.append(out.nbytes)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        self.reads.append(self.data.nbytes)
        return self.data if dtype is None else self.data.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


def _features(tiled: TiledEmbeddings) -> np.ndarray:
    return np.stack([tiled[i].features.cpu().numpy() for i in range(len(tiled))])


# --------------------------------------------------------------------------------------- memory


def test_a_big_slice_is_never_read_whole_and_keeps_its_percentiles(model, monkeypatch, tmp_path):
    """4200 × 4100 (over 16 Mpx, so percentiles are taken on every second row and column).

    Every read from the source is a band of tile rows or the strided subsample; the limits equal
    :func:`percentile_limits` of the whole slice (as when the slice was normalised whole) and are
    recorded in the cache; each tile is its crop normalised with them.
    """
    image = _pattern((4200, 4100), seed=2)
    band = 1024 * image.shape[1] * image.itemsize
    monkeypatch.setattr(reader_mod, "_READ_BLOCK_BYTES", band)
    source = Recording(image)
    tiled = ns.compute_embeddings(source, model, tile=(1024, 128), cache=tmp_path / "c.zarr")
    assert len(tiled) == len(tile_windows(image.shape, TileSpec(1024, 128))) == 36
    assert source.reads and max(source.reads) < image.nbytes / 3, (max(source.reads), image.nbytes)
    whole = percentile_limits(image[..., None])
    assert tiled[0].preprocessing.contrast_limits == whole
    assert ns.open_embeddings(tmp_path / "c.zarr", model)[3].preprocessing.contrast_limits == whole
    win = tiled.windows[7]
    alone = ns.compute_embeddings(
        image[win.slices], model, contrast_limits=whole[0], cache=tmp_path / "a.zarr"
    )
    np.testing.assert_array_equal(tiled[7].features.numpy(), alone.features.numpy())


def test_peak_numpy_memory_is_bounded_not_a_float_copy_of_the_image(model, tmp_path):
    """A memory-mapped 8192² uint8 tif: numpy's peak stays under half of one float32 copy of it."""
    path = tmp_path / "big.tif"
    out = tifffile.memmap(path, shape=(8192, 8192), dtype=np.uint8)
    for r0 in range(0, 8192, 2048):
        out[r0 : r0 + 2048] = _pattern((2048, 8192), seed=r0, dtype=np.uint8)
    out.flush()
    del out
    image = read_image(path)
    assert isinstance(image, np.memmap)
    float_copy = image.size * 4  # one float32 gray copy of the slice: 256 MiB
    tracemalloc.start()
    try:
        ns.compute_embeddings(image, model, cache=tmp_path / "c.zarr")  # default tiles: 1024, halo 128
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < float_copy / 2, f"peak {peak / 2**20:.0f} MiB, a float32 copy {float_copy / 2**20:.0f} MiB"
    assert open_store(tmp_path / "c.zarr").is_complete


def test_a_cached_big_image_is_checked_and_read_back_tile_by_tile(tmp_path):
    """nano on a 4096² uint8 tif (25 tiles of 256 × 64 × 64 features): a second call finds every tile
    in the cache, checks them and returns the embeddings without holding all tiles' features at once."""
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, _pattern((4096, 4096), seed=4, dtype=np.uint8))
    image = read_image(path)
    sam = ns.load_model("nano", "cpu")
    first = ns.compute_embeddings(image, sam, cache=tmp_path / "c.zarr")
    assert len(first) == 25
    all_features = 25 * 256 * 64 * 64 * 4  # float32: 100 MiB
    tracemalloc.start()
    try:
        again = ns.compute_embeddings(image, sam, cache=tmp_path / "c.zarr")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < all_features / 5, f"peak {peak / 2**20:.0f} MiB, all tiles {all_features / 2**20:.0f} MiB"
    np.testing.assert_array_equal(again[24].features.numpy(), first[24].features.numpy())


# ------------------------------------------------------------------------------------ same result


@pytest.mark.parametrize("kind", ["memmap", "zarr", "dask", "channel-first"])
def test_every_source_gives_the_same_tiles_and_hash(model, tmp_path, kind):
    image = _pattern((300, 260, 3), seed=3, dtype=np.uint16)
    reference = ns.compute_embeddings(image, model, tile=TILE, cache=tmp_path / "ref.zarr")
    channel_axis = None
    if kind == "memmap":
        tifffile.imwrite(tmp_path / "a.tif", image, photometric="rgb")
        source: Any = read_image(tmp_path / "a.tif")
        assert isinstance(source, np.memmap)
    elif kind == "zarr":
        import zarr

        source = zarr.create_array(
            str(tmp_path / "a.zarr"), shape=image.shape, chunks=(100, 100, 3), dtype="uint16"
        )
        source[...] = image
    elif kind == "dask":
        import dask.array as da

        source = da.from_array(image, chunks=(64, 64, 3))
    else:
        source, channel_axis = np.ascontiguousarray(np.moveaxis(image, -1, 0)), 0
    cache = tmp_path / f"{kind}.zarr"
    got = ns.compute_embeddings(source, model, tile=TILE, cache=cache, channel_axis=channel_axis)
    np.testing.assert_array_equal(_features(got), _features(reference))
    raw = image if channel_axis is None else np.moveaxis(image, -1, 0)
    assert open_store(cache).stored_hash(0) == slice_hash(raw)  # caches made before stay valid


# -------------------------------------------------------------------------------------- progress


def test_progress_counts_tiles_and_moves_as_each_tile_is_written(model):
    image = _pattern((300, 260))
    calls: list[tuple[int, int]] = []
    ns.compute_embeddings(image, model, tile=TILE, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 9) for k in range(10)]
    calls.clear()
    ns.compute_embeddings(
        np.stack([image, image]), model, tile=TILE, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(k, 18) for k in range(19)]


def test_cancel_stops_between_tiles_and_resume_counts_the_kept_ones(model, tmp_path):
    image = _pattern((300, 260))
    cancel = threading.Event()
    calls: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        if done == 4:
            cancel.set()

    cache = tmp_path / "c.zarr"
    with pytest.raises(Cancelled, match="after 4 of 9 tiles"):
        ns.compute_embeddings(image, model, tile=TILE, cache=cache, progress=progress, cancel=cancel)
    assert int(np.asarray(open_store(cache).array("tile_done")[0]).sum()) == 4
    calls.clear()
    ns.compute_embeddings(image, model, tile=TILE, cache=cache, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(0, 9), (4, 9), (5, 9), (6, 9), (7, 9), (8, 9), (9, 9)]


def test_the_cli_progress_bar_says_tile(tmp_path, small_weights, capsys):
    from napari_sam.cli import main

    tifffile.imwrite(tmp_path / "big.tif", _pattern((300, 260)))
    code = main(
        ["embed", str(tmp_path / "big.tif"), "--out", str(tmp_path / "cache"), "--tile", "128",
         "--halo", "16", "--model", str(small_weights), "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert re.search(r"\b4/9 \[.*tile", err), err[-600:]  # moved tile by tile, in tiles
    assert "slice" not in err


def test_volume_percentiles_read_only_their_strided_sample():
    """percentile_scope="volume" samples a stack's slices on a stride: only those pixels are read,
    and the limits are those of the same pixels of the whole slices."""
    from napari_sam.engine.embed.layout import image_layout
    from napari_sam.engine.preprocess import Preprocessor

    stack = np.stack([_pattern((1100, 1000), seed=k) for k in range(3)])
    source = Recording(stack)
    layout = image_layout(stack)
    limits, _ = reader_mod.volume_limits(source, layout, Preprocessor("percentile", (1.0, 99.8)))
    slice_bytes = stack[0].nbytes
    assert source.reads and max(source.reads) < slice_bytes / 3  # a strided sample, never a whole slice
    step = int(np.ceil(np.sqrt(1100 * 1000 / _VOLUME_SAMPLE_PIXELS)))
    sample = stack[:, ::step, ::step].reshape(-1)
    np.testing.assert_allclose(limits, [np.percentile(sample, [1.0, 99.8])])
