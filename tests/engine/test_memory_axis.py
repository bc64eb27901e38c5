"""SAM 2 memory propagation along an axis of a 4D stack (``axis=``): each plane of the other leading axis
tracked on its own, as its 3D sequence would be, with ids kept over planes.

The shared tiny SAM 2 (tests/conftest.py: 128 canvas, random weights, objects always present) on a few
small frames; a 4D result must equal the 3D results of its planes exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.engine.embed.sam2_frames import open_frames
from napari_sam.engine.volume.memory_propagation import propagate_memory
from napari_sam.errors import CacheMismatchError

SHAPE = (3, 2, 40, 48)  # (T, Z, Y, X)


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    """A bright disk drifting right through time, lower in z plane 1, over noise (uint16)."""
    rng = np.random.default_rng(3)
    out = rng.normal(300, 30, size=SHAPE)
    rr, cc = np.mgrid[: SHAPE[2], : SHAPE[3]]
    for t in range(SHAPE[0]):
        for z in range(SHAPE[1]):
            out[t, z][(rr - 18 - 3 * z) ** 2 + (cc - 16 - 4 * t) ** 2 < 49] += 2000
    return out.clip(0, 65535).astype(np.uint16)


class Recording:
    """An array that counts what is read from it and refuses to be read whole."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype, self.ndim, self.reads = (
            array,
            array.shape,
            array.dtype,
            array.ndim,
            [],
        )

    def __getitem__(self, key):
        out = self.array[key]
        self.reads.append((key, out.size))
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole stack was read")


def _relabel(labels: np.ndarray, ids: dict[int, int]) -> np.ndarray:
    out = np.zeros_like(labels)
    for old, new in ids.items():
        out[labels == old] = new
    return out


def test_axis0_equals_each_plane_tracked_alone(tiny_sam2, series):
    """Prompts in two z planes, followed through time: each plane's labels are its 3D run's, numbered
    as segment() numbers the 4D prompts (boxes first, then points)."""
    point = [[1, 0, 18, 20]]  # (t, z, row, col): t=1 in z plane 0
    box = [[0, 1, 12, 8, 1, 2, 29, 25]]  # t=0 in z plane 1 (max_t = 0 + 1, max_z = 1 + 1)
    seen: list[tuple[int, int]] = []
    result = propagate_memory(
        series, points=point, boxes=box, model=tiny_sam2, axis=0, progress=lambda d, t: seen.append((d, t))
    )
    assert result.labels.shape == SHAPE and result.labels.dtype == np.uint32
    assert result.planes == [0, 1] and result.seeds == {1: [0], 2: [1]}
    plane0 = propagate_memory(series[:, 0], points=[[1, 18, 20]], model=tiny_sam2)
    plane1 = propagate_memory(series[:, 1], boxes=[[0, 12, 8, 1, 29, 25]], model=tiny_sam2)
    np.testing.assert_array_equal(result.labels[:, 0], _relabel(plane0.labels, {1: 2}))
    np.testing.assert_array_equal(result.labels[:, 1], plane1.labels)
    assert (result.labels[:, 1] == 1).any()
    assert result.plane_results[0].seeds == {2: [1]} and result.plane_results[1].seeds == {1: [0]}
    assert np.shares_memory(result.plane_results[1].labels, result.labels)
    assert result.frames_tracked == plane0.frames_tracked + plane1.frames_tracked
    assert seen[0] == (0, result.frames_tracked) and seen[-1] == (result.frames_tracked,) * 2
    assert plane0.planes == [] and plane0.plane_results == {}  # a 3D result is as before


def test_seed_labels_at_one_time_point_follow_through_time(tiny_sam2, series):
    """A 3D segmentation of t=0, given as 4D seeds (zero elsewhere): every z plane followed in time,
    ids kept."""
    seeds = np.zeros(SHAPE, np.int32)
    seeds[0, 0, 12:25, 10:23] = 5
    seeds[0, 1, 15:28, 10:23] = 5
    seeds[0, 1, 30:36, 36:44] = 9  # only in z plane 1
    result = propagate_memory(series, seeds, model=tiny_sam2, axis=0, memory_dtype="float32")
    assert result.planes == [0, 1] and result.seeds == {5: [0], 9: [0]}
    for z in (0, 1):
        alone = propagate_memory(series[:, z], seeds[:, z], model=tiny_sam2, memory_dtype="float32")
        np.testing.assert_array_equal(result.labels[:, z], alone.labels)
    assert set(np.unique(result.labels)) <= {0, 5, 9} and (result.labels[2] == 5).any()


def test_axis1_reads_planes_lazily_and_passes_through(tiny_sam2, series):
    """Each time point's volume followed through z; planes without prompts stay 0; only single frames are
    read from the stack; propagate() and segment() take the same path."""
    box = [[2, 0, 12, 16, 3, 1, 29, 33]]  # t=2, z=0
    stack = Recording(series)
    result = propagate_memory(stack, boxes=box, model=tiny_sam2, axis=1)
    alone = propagate_memory(series[2], boxes=[[0, 12, 16, 1, 29, 33]], model=tiny_sam2)
    assert result.planes == [2] and not result.labels[:2].any()
    np.testing.assert_array_equal(result.labels[2], alone.labels)
    assert max(size for _, size in stack.reads) == SHAPE[2] * SHAPE[3]  # one frame at a time
    assert {key[0] for key, _ in stack.reads} == {2}  # the tracked plane only
    via_propagate = ns.propagate(series, boxes=box, model=tiny_sam2, axis=-3)
    np.testing.assert_array_equal(via_propagate.labels, result.labels)
    via_segment = ns.segment(series, boxes=box, model=tiny_sam2, propagate_options={"axis": 1})
    np.testing.assert_array_equal(via_segment, result.labels)


def test_channels_last_and_one_store_per_plane(tiny_sam2, series, tmp_path):
    """A 5D (T, Z, Y, X, C) stack is tracked like its planes' (F, Y, X, C) sequences; cache= keeps one
    frame store per tracked plane, reused by a dask copy of the stack (read one frame at a time)."""
    da = pytest.importorskip("dask.array")
    rgb = np.stack([(series // 16).astype(np.uint8)] * 3, axis=-1)
    point = [[1, 1, 20, 20]]  # t=1, z=1: followed through z in time point 1
    cached = {"model": tiny_sam2, "axis": 1, "cache": tmp_path / "frames", "cache_dtype": "float32"}
    result = propagate_memory(rgb, points=point, **cached)
    alone = propagate_memory(rgb[1], points=[[1, 20, 20]], model=tiny_sam2)
    np.testing.assert_array_equal(result.labels[1], alone.labels)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["axis1-plane1"]
    store = open_frames(None, tiny_sam2, cache=tmp_path / "frames" / "axis1-plane1").store
    assert store is not None and store.done().all()
    source = Recording(rgb)
    lazy = da.from_array(source, chunks=(1, 1, *rgb.shape[2:]), name="rgb")
    again = propagate_memory(lazy, points=point, **cached)  # the frames' hashes match: read back
    np.testing.assert_array_equal(again.labels, result.labels)
    assert source.reads and max(size for _, size in source.reads) == rgb[0, 0].size


def test_errors(tiny_sam2, series, tmp_path):
    one = {"model": tiny_sam2, "device": "cpu"}
    with pytest.raises(
        ValueError, match=r"axis=1 does not fit an array of shape \(3, 40, 48\) read as a \(Z"
    ):
        propagate_memory(series[:, 0], points=[[0, 20, 20]], axis=1, **one)
    with pytest.raises(ValueError, match=r"axis=2 does not fit a 4D stack .* must be 0 or 1"):
        propagate_memory(series, points=[[0, 0, 20, 20]], axis=2, **one)
    with pytest.raises(TypeError, match="axis must be an integer"):
        propagate_memory(series, points=[[0, 0, 20, 20]], axis=True, **one)
    with pytest.raises(ValueError, match=r"points must have shape \(N, 4\) rows \(a0, a1, row, col\)"):
        propagate_memory(series, points=[[0, 20, 20]], **one)
    with pytest.raises(ValueError, match=r"boxes must have shape \(M, 8\)"):
        propagate_memory(series, boxes=[[0, 12, 16, 1, 29, 33]], **one)
    with pytest.raises(ValueError, match=r"points a0 \[3\] out of range for an axis of 3"):
        propagate_memory(series, points=[[3, 0, 20, 20]], **one)
    with pytest.raises(ValueError, match=r"boxes min_a1 \[2\] out of range"):
        propagate_memory(series, boxes=[[0, 2, 12, 16, 1, 3, 29, 33]], **one)
    with pytest.raises(ValueError, match="one frame of one plane"):
        propagate_memory(series, boxes=[[0, 0, 12, 16, 2, 1, 29, 33]], **one)
    with pytest.raises(ValueError, match="points outside the image"):
        propagate_memory(series, points=[[0, 0, 60, 20]], **one)
    with pytest.raises(ValueError, match=r"seed labels must be integer \(A0, A1, Y, X\)"):
        propagate_memory(series, np.zeros(SHAPE[1:], np.int32), **one)
    with pytest.raises(ValueError, match="outside t_range"):
        propagate_memory(series, points=[[0, 0, 20, 20]], t_range=(1, 3), **one)
    frames = open_frames(series[:, 0], tiny_sam2)
    with pytest.raises(ValueError, match=r"frames= \(one Sam2Frames\) does not apply to a 4D stack"):
        propagate_memory(series, points=[[0, 0, 20, 20]], frames=frames)
    with pytest.raises(ValueError, match="channel_axis=1 does not fit a 4D stack with channels"):
        propagate_memory(np.zeros((*SHAPE, 3), np.uint8), points=[[0, 0, 20, 20]], channel_axis=1, **one)
    store = tmp_path / "store.zarr"
    open_frames(series[:, 0], tiny_sam2, cache=store)
    with pytest.raises(CacheMismatchError, match="a 4D stack keeps one frame store per plane"):
        propagate_memory(series, points=[[0, 0, 20, 20]], cache=store, **one)
    # SAM 1 models follow a stack's first axis only; a 4D stack needs SAM 2 (no model is loaded)
    with pytest.raises(ValueError, match=r"axis=1: SAM 1 propagation follows a stack's first axis only"):
        ns.propagate(series[:, 0], points=[[0, 20, 20]], model="nano", axis=1)
    with pytest.raises(ValueError, match=r"image must be 2D .*; a SAM 2 model .* follows the objects"):
        ns.segment(series, points=[[0, 0, 20, 20]], model="nano")
    with pytest.raises(ValueError, match=r"a 4D stack of shape .* needs prompts"):
        ns.segment(series, model=tiny_sam2)
    with pytest.raises(ValueError, match="propagate= does not apply to a 4D stack"):
        ns.segment(series, points=[[0, 0, 20, 20]], model=tiny_sam2, propagate=False)
    with pytest.raises(ValueError, match="axis=-5 does not fit a 4D stack"):
        ns.segment(series, points=[[0, 0, 20, 20]], model=tiny_sam2, propagate_options={"axis": -5})
