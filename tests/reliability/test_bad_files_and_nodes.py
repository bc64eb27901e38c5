"""Bad files and arrays for ``napari_sam.io`` and bad inputs for the pipeline nodes (``napari_sam.nodes``).

Each row: the call, the documented exception type and a regular expression the message must match
(what was wrong, naming the argument or the file).

Cases per entry point (``CASES``; counted by ``test_case_count``):

==================================  =====
io.read_image                          13
io.write_labels                        12
nodes.segment_from_prompts             17
nodes.automatic_segmentation            9
nodes.compute_embeddings_to_cache       6
nodes.shapes_to_boxes                   5
==================================  =====
total                                  62
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from napari_sam import io, nodes
from napari_sam.errors import CacheMismatchError, NapariSamError

from .conftest import Env

Call = Callable[[Env, Any], Any]  # (env, tmp_path) -> anything


def bad(entry: str, what: str, call: Call, error: type[BaseException] | tuple, match: str) -> Any:
    return pytest.param(entry, call, error, match, id=f"{entry}-{what}")


def read(name: str) -> Call:
    return lambda e, tmp: io.read_image(e.files / name)


def write(path: str, labels: Any = None, **kw: Any) -> Call:
    def call(e: Env, tmp: Any) -> Any:
        data = np.ones((8, 9), np.uint16) if labels is None else labels
        return io.write_labels(tmp / path if isinstance(path, str) else path, data, **kw)

    return call


def existing(e: Env, tmp: Any) -> Any:
    target = tmp / "labels.tif"
    io.write_labels(target, np.ones((8, 9), np.uint16))
    return io.write_labels(target, np.zeros((8, 9), np.uint16))


def sfp(image: Any = ..., **kw: Any) -> Call:
    def call(e: Env, tmp: Any) -> Any:
        kw.setdefault("model", str(e.weights))
        kw.setdefault("device", "cpu")
        return nodes.segment_from_prompts(e.image if image is ... else image, **kw)

    return call


def stack_sfp(**kw: Any) -> Call:
    return lambda e, tmp: sfp(e.stack, **kw)(e, tmp)


def auto_node(image: Any = ..., **kw: Any) -> Call:
    def call(e: Env, tmp: Any) -> Any:
        kw.setdefault("model", str(e.weights))
        kw.setdefault("device", "cpu")
        return nodes.automatic_segmentation(e.image if image is ... else image, **kw)

    return call


def to_cache(image: Any = ..., cache: str = "new.zarr", **kw: Any) -> Call:
    def call(e: Env, tmp: Any) -> Any:
        kw.setdefault("model", str(e.weights))
        kw.setdefault("device", "cpu")
        folder = e.files / cache if cache in ("other_model.zarr", "folder", "notes.txt") else tmp / cache
        return nodes.compute_embeddings_to_cache(e.image if image is ... else image, folder, **kw)

    return call


SQUARE = np.array([[2.0, 3.0], [2.0, 20.0], [15.0, 20.0], [15.0, 3.0]])

READ = [
    bad("io.read_image", "missing", read("nope.tif"), FileNotFoundError, r"image not found: .*nope.tif"),
    bad("io.read_image", "folder", read("folder"), io.NotAnImageError, r"is a folder, not an image"),
    bad(
        "io.read_image",
        "text-as-tif",
        read("text.tif"),
        io.NotAnImageError,
        r"text.tif is not a readable TIFF",
    ),
    bad("io.read_image", "truncated-tif", read("truncated.tif"), io.NotAnImageError, r"truncated.tif"),
    bad(
        "io.read_image",
        "cut-header-tif",
        read("cut_header.tif"),
        io.NotAnImageError,
        r"cut_header.tif is not",
    ),
    bad("io.read_image", "txt", read("notes.txt"), io.NotAnImageError, r"unsupported image format '.txt'"),
    bad(
        "io.read_image",
        "garbage-png",
        read("garbage.png"),
        io.NotAnImageError,
        r"garbage.png is not a readable",
    ),
    bad(
        "io.read_image",
        "garbage-npy",
        read("garbage.npy"),
        io.NotAnImageError,
        r"garbage.npy is not a readable",
    ),
    bad(
        "io.read_image",
        "pickled-npy",
        read("objects.npy"),
        io.NotAnImageError,
        r"objects.npy is not a readable",
    ),
    bad("io.read_image", "empty-zarr", read("empty.zarr"), io.NotAnImageError, r"empty.zarr"),
    bad(
        "io.read_image", "embedding-cache", read("image.zarr"), io.NotAnImageError, r"embedding cache, not an"
    ),
    bad("io.read_image", "None", lambda e, tmp: io.read_image(None), TypeError, r"path must be"),
    bad("io.read_image", "int", lambda e, tmp: io.read_image(3), TypeError, r"path must be"),
]

WRITE = [
    bad("io.write_labels", "float", write("l.tif", np.ones((4, 4))), TypeError, r"labels must be an integer"),
    bad(
        "io.write_labels",
        "complex",
        write("l.tif", np.ones((4, 4), complex)),
        TypeError,
        r"labels must be an",
    ),
    bad("io.write_labels", "None", write("l.tif", np.asarray(None)), TypeError, r"labels must be an integer"),
    bad("io.write_labels", "str-list", write("l.tif", [["a", "b"]]), TypeError, r"labels must be an integer"),
    bad("io.write_labels", "1d", write("l.tif", np.ones(5, np.uint8)), ValueError, r"labels must be 2D"),
    bad(
        "io.write_labels",
        "4d",
        write("l.tif", np.ones((1, 2, 3, 4), np.uint8)),
        ValueError,
        r"labels must be",
    ),
    bad("io.write_labels", "empty", write("l.tif", np.ones((0, 4), np.uint8)), ValueError, r"labels .*empty"),
    bad("io.write_labels", "png-suffix", write("l.png"), ValueError, r"path must end in .tif"),
    bad("io.write_labels", "no-suffix", write("labels"), ValueError, r"path must end in"),
    bad("io.write_labels", "exists", existing, FileExistsError, r"already exists; pass overwrite=True"),
    bad(
        "io.write_labels", "missing-folder", write("no/such/l.tif"), FileNotFoundError, r"output folder does"
    ),
    bad(
        "io.write_labels",
        "path-None",
        lambda e, tmp: io.write_labels(None, np.ones((3, 3), int)),
        TypeError,
        "path",
    ),
]

SEGMENT_NODE = [
    bad("nodes.segment_from_prompts", "no-prompts", sfp(), ValueError, r"needs points or boxes"),
    bad(
        "nodes.segment_from_prompts", "points-N4", sfp(points=[[1, 2, 3, 4]]), ValueError, r"points must have"
    ),
    bad("nodes.segment_from_prompts", "points-str", sfp(points=[["a", "b"]]), ValueError, r"points must be"),
    bad(
        "nodes.segment_from_prompts",
        "points-nan",
        sfp(points=[[np.nan, 1]]),
        ValueError,
        r"points contains NaN",
    ),
    bad(
        "nodes.segment_from_prompts", "points-outside", sfp(points=[[1e12, 1]]), ValueError, r"points outside"
    ),
    bad(
        "nodes.segment_from_prompts",
        "3d-points-on-2d",
        sfp(points=[[0, 1, 2]]),
        ValueError,
        r"^points are 3D",
    ),
    bad(
        "nodes.segment_from_prompts",
        "3d-negative-points-on-2d",
        sfp(points=[[1, 2]], negative_points=[[0, 1, 2]]),
        ValueError,
        r"^negative_points are 3D \(z, row, col\) but the image is 2D",
    ),
    bad(
        "nodes.segment_from_prompts",
        "2d-points-on-3d",
        stack_sfp(points=[[1, 2]]),
        ValueError,
        r"^points are 2D \(row, col\) but the image is 3D",
    ),
    bad(
        "nodes.segment_from_prompts",
        "prompt-below-stack",
        stack_sfp(points=[[7, 1, 2]]),
        ValueError,
        r"slice 7, outside the stack of 3",
    ),
    bad(
        "nodes.segment_from_prompts",
        "shape-V4",
        sfp(boxes=[np.ones((4, 4))]),
        ValueError,
        r"boxes: each shape",
    ),
    bad(
        "nodes.segment_from_prompts",
        "mixed-2d-3d-shapes",
        sfp(boxes=[SQUARE, np.c_[np.zeros(4), SQUARE]]),
        ValueError,
        r"mix of 2D and 3D",
    ),
    bad(
        "nodes.segment_from_prompts",
        "box-outside",
        sfp(boxes=[SQUARE + 500]),
        ValueError,
        r"outside the image",
    ),
    bad(
        "nodes.segment_from_prompts",
        "image-1d",
        sfp(np.zeros(9), points=[[1, 1]]),
        ValueError,
        r"image must be",
    ),
    bad(
        "nodes.segment_from_prompts",
        "image-5d",
        sfp(np.zeros((1,) * 5), points=[[0, 0]]),
        ValueError,
        "image",
    ),
    bad(
        "nodes.segment_from_prompts",
        "image-bool",
        sfp(np.ones((9, 9), bool), points=[[1, 1]]),
        ValueError,
        "dtype",
    ),
    bad(
        "nodes.segment_from_prompts", "model-vit_z", sfp(points=[[1, 1]], model="vit_z"), ValueError, r"vit_z"
    ),
    bad("nodes.segment_from_prompts", "device-tpu", sfp(points=[[1, 1]], device="tpu"), ValueError, r"'tpu'"),
]

AUTO_NODE = [
    bad(
        "nodes.automatic_segmentation",
        "preset-cells",
        auto_node(preset="cells"),
        ValueError,
        r"preset must be",
    ),
    bad(
        "nodes.automatic_segmentation",
        "pps--1",
        auto_node(points_per_side=-1),
        ValueError,
        r"points_per_side",
    ),
    bad("nodes.automatic_segmentation", "mode-grid", auto_node(mode="grid"), ValueError, r"mode must be"),
    bad(
        "nodes.automatic_segmentation",
        "pps-10**6",
        auto_node(points_per_side=10**6),
        ValueError,
        "points_per",
    ),
    bad(
        "nodes.automatic_segmentation",
        "pps-str",
        auto_node(points_per_side="32"),
        ValueError,
        r"points_per_side",
    ),
    bad("nodes.automatic_segmentation", "image-1d", auto_node(np.zeros(30)), ValueError, r"image must be"),
    bad(
        "nodes.automatic_segmentation",
        "image-complex",
        auto_node(np.ones((9, 9), complex)),
        ValueError,
        "dtype",
    ),
    bad(
        "nodes.automatic_segmentation",
        "image-empty",
        auto_node(np.ones((0, 9))),
        ValueError,
        r"image is empty",
    ),
    bad("nodes.automatic_segmentation", "device-cuda7", auto_node(device="cuda:7"), ValueError, r"cuda:7"),
]

CACHE_NODE = [
    bad(
        "nodes.compute_embeddings_to_cache",
        "cache-of-other-model",
        to_cache(cache="other_model.zarr"),
        CacheMismatchError,
        r"another image, model or preprocessing",
    ),
    bad(
        "nodes.compute_embeddings_to_cache",
        "cache-non-cache-folder",
        to_cache(cache="folder"),
        FileExistsError,
        r"not a napari-sam embedding cache; it is left alone",
    ),
    bad(
        "nodes.compute_embeddings_to_cache",
        "cache-a-file",
        to_cache(cache="notes.txt"),
        FileExistsError,
        r"not a napari-sam embedding cache",
    ),
    bad("nodes.compute_embeddings_to_cache", "image-1d", to_cache(np.zeros(9)), ValueError, r"image must be"),
    bad("nodes.compute_embeddings_to_cache", "model-None", to_cache(model=None), TypeError, r"model must be"),
    bad("nodes.compute_embeddings_to_cache", "device-tpu", to_cache(device="tpu"), ValueError, r"'tpu'"),
]

SHAPES = [
    bad(
        "nodes.shapes_to_boxes",
        "no-vertices",
        lambda e, t: nodes.shapes_to_boxes([np.zeros((0, 2))]),
        ValueError,
        "boxes",
    ),
    bad(
        "nodes.shapes_to_boxes",
        "V4",
        lambda e, t: nodes.shapes_to_boxes([np.zeros((3, 4))]),
        ValueError,
        r"\(V, 2\)",
    ),
    bad(
        "nodes.shapes_to_boxes",
        "nan",
        lambda e, t: nodes.shapes_to_boxes([SQUARE * np.nan]),
        ValueError,
        r"NaN",
    ),
    bad(
        "nodes.shapes_to_boxes",
        "inf",
        lambda e, t: nodes.shapes_to_boxes([SQUARE * np.inf]),
        ValueError,
        r"NaN",
    ),
    bad(
        "nodes.shapes_to_boxes",
        "str",
        lambda e, t: nodes.shapes_to_boxes([[["a", "b"]]]),
        ValueError,
        r"boxes",
    ),
]

CASES = [*READ, *WRITE, *SEGMENT_NODE, *AUTO_NODE, *CACHE_NODE, *SHAPES]


@pytest.mark.parametrize(("entry", "call", "error", "match"), CASES)
def test_bad_file_or_node_input_raises_a_clear_error(env, tmp_path, entry, call, error, match):
    with pytest.raises(error, match=match) as info:
        call(env, tmp_path)
    assert isinstance(info.value, (ValueError, TypeError, OSError)), type(info.value)
    if isinstance(info.value, (io.NotAnImageError, CacheMismatchError)):
        assert isinstance(info.value, NapariSamError)


def test_case_count():
    counts = Counter(p.values[0] for p in CASES)
    rows = [re.fullmatch(r"([\w.]+) +(\d+)", line.strip()) for line in (__doc__ or "").splitlines()]
    table = {m[1]: int(m[2]) for m in rows if m}
    assert table.pop("total") == len(CASES)
    assert table == dict(counts)
    ids = [p.id for p in CASES]
    assert len(set(ids)) == len(ids)


def test_failed_write_leaves_the_existing_labels_untouched(tmp_path):
    target = tmp_path / "labels.tif"
    first = np.arange(12, dtype=np.uint16).reshape(3, 4)
    io.write_labels(target, first)
    with pytest.raises(FileExistsError):
        io.write_labels(target, np.zeros((3, 4), np.uint16))
    with pytest.raises(TypeError):
        io.write_labels(target, np.zeros((3, 4)), overwrite=True)
    np.testing.assert_array_equal(np.asarray(io.read_image(target)), first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif"]
