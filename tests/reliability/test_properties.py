"""Property-based tests (hypothesis) of the pieces every result goes through.

- coordinates: napari ``(row, col)`` ↔ SAM ``(x, y)`` (:mod:`napari_sam.engine.decode.coords`, the one place
  that flips them) round-trips, boxes keep their pixels, and the scale to the model input matches the
  resize of :func:`~napari_sam.engine.preprocess.preprocess_shape` for any image shape;
- preprocessing: normalised intensities stay finite and within the model's 0–255 scale for any
  values (NaN / inf included), percentile normalisation ignores affine intensity changes, and a mask
  taken to the model's prompt resolution and back has the original shape (and object);
- label writing: the napari layer writer never overwrites a non-zero label unless asked, gives new
  objects fresh, unique IDs above the existing ones; segment's overlap resolution (highest score wins)
  and AMG's first-hit painting match a brute-force reference;
- tiles and objects: tile cores partition any image and lie inside their windows; prompts are grouped
  into objects as the API promises (each box one object, a point refines the smallest box holding it,
  every other foreground point is an object).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_sam._napari.labels import combine_masks, write_index, write_masks
from napari_sam.engine.automatic.masks import paint_first_hit
from napari_sam.engine.decode.coords import (
    boxes_rc_to_xyxy,
    boxes_xyxy_to_rc,
    points_rc_to_xy,
    points_xy_to_rc,
    scale_xy,
)
from napari_sam.engine.decode.objects import paint_by_score
from napari_sam.engine.preprocess import (
    mask_to_prompt_logits,
    normalize_intensity,
    preprocess_shape,
    upscale_logits,
)

FAST = settings(max_examples=60, deadline=None)
coord = st.floats(-1e6, 1e6, allow_nan=False, width=64)
side = st.integers(1, 5000)

# ------------------------------------------------------------------------------------------ coordinates


@FAST
@given(hnp.arrays(np.float64, st.tuples(st.integers(0, 6), st.just(2)), elements=coord))
def test_points_round_trip_and_swap_axes(points):
    xy = points_rc_to_xy(points)
    np.testing.assert_array_equal(xy[:, 0], points[:, 1])  # x is the column
    np.testing.assert_array_equal(xy[:, 1], points[:, 0])  # y is the row
    np.testing.assert_array_equal(points_xy_to_rc(xy), points)


@FAST
@given(
    st.lists(st.tuples(st.integers(-50, 50), st.integers(-50, 50), st.integers(1, 30), st.integers(1, 30)))
)
def test_boxes_round_trip_and_keep_their_pixels(raw):
    boxes = np.array([[r, c, r + h, c + w] for r, c, h, w in raw], dtype=np.float64).reshape(-1, 4)
    xyxy = boxes_rc_to_xyxy(boxes)
    np.testing.assert_array_equal(boxes_xyxy_to_rc(xyxy), boxes)
    for (r0, c0, r1, c1), (x0, y0, x1, y1) in zip(boxes, xyxy, strict=True):
        # half-open rows r0..r1-1 / cols c0..c1-1 are the inclusive SAM corners (x0, y0)..(x1, y1)
        assert (x0, y0, x1, y1) == (c0, r0, c1 - 1, r1 - 1)


@FAST
@given(side, side, st.sampled_from([256, 1024]), st.sampled_from([None, 1.0, 2.0]))
def test_scale_to_model_input_matches_the_resize(height, width, image_size, max_upscale):
    rows, cols = preprocess_shape(height, width, image_size, max_upscale)
    assert 1 <= rows <= image_size and 1 <= cols <= image_size
    if max_upscale is None:
        assert max(rows, cols) == image_size
    # the image's corners land on the resized image's corners; the row scale follows the rows only
    corners = np.array([[0.0, 0.0], [width, height], [width, 0.0]])
    scaled = scale_xy(corners, (height, width), (rows, cols))
    np.testing.assert_allclose(scaled, [[0, 0], [cols, rows], [cols, 0]], rtol=1e-12)
    # a point (row, col) goes to x = col * cols / width, y = row * rows / height
    point = np.array([[height / 3, width / 7]])
    x, y = scale_xy(points_rc_to_xy(point), (height, width), (rows, cols))[0]
    assert x == pytest.approx(width / 7 * cols / width) and y == pytest.approx(height / 3 * rows / height)


# -------------------------------------------------------------------------------------- preprocessing

pixels = st.floats(allow_nan=True, allow_infinity=True, width=32)


@FAST
@given(hnp.arrays(np.float32, st.tuples(st.integers(2, 12), st.integers(2, 12)), elements=pixels))
def test_normalised_intensities_are_finite_and_in_range(image):
    if not np.isfinite(image).any():
        with pytest.raises(ValueError, match="no finite values"):
            normalize_intensity(image[..., None], normalize="percentile")
        return
    out, mode, _, limits = normalize_intensity(image[..., None], normalize="percentile")
    assert mode == "percentile" and out.shape == (*image.shape, 1)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255
    assert limits is not None and limits[0][0] <= limits[0][1]


@FAST
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(4, 16), st.integers(4, 16)), elements=st.floats(0, 1)),
    st.floats(0.01, 100),
    st.floats(-100, 100),
)
def test_percentile_normalisation_ignores_affine_intensity_changes(image, gain, offset):
    lo, hi = np.percentile(image, [1.0, 99.8])
    assume(hi - lo > 0.05)
    base, *_ = normalize_intensity(image[..., None], normalize="percentile")
    moved, *_ = normalize_intensity((image * gain + offset)[..., None], normalize="percentile")
    np.testing.assert_allclose(moved, base, atol=0.5)  # on the 0–255 scale


@FAST
@given(hnp.arrays(np.uint16, st.tuples(st.integers(2, 10), st.integers(2, 10))))
def test_normalisation_does_not_depend_on_the_dtype(image):
    a, *_ = normalize_intensity(image[..., None], normalize="percentile")
    b, *_ = normalize_intensity(image.astype(np.float64)[..., None], normalize="percentile")
    np.testing.assert_allclose(a, b, atol=1e-3)


@settings(max_examples=30, deadline=None)
@given(st.integers(8, 400), st.integers(8, 400), st.sampled_from([None, 2.0]), st.data())
def test_mask_to_model_resolution_and_back_keeps_shape_and_object(height, width, max_upscale, data):
    image_size = 256
    r0 = data.draw(st.integers(0, height // 2))
    c0 = data.draw(st.integers(0, width // 2))
    r1 = data.draw(st.integers(r0 + max(2, height // 3), height))
    c1 = data.draw(st.integers(c0 + max(2, width // 3), width))
    mask = np.zeros((height, width), bool)
    mask[r0:r1, c0:c1] = True
    input_size = preprocess_shape(height, width, image_size, max_upscale)
    # the object spans at least 4 pixels of the 64 × 64 prompt grid (16 of the 256 canvas) each way
    assume((r1 - r0) * input_size[0] / height >= 16 and (c1 - c0) * input_size[1] / width >= 16)
    logits = mask_to_prompt_logits(
        mask, image_size=image_size, mask_input_size=(64, 64), input_size=input_size
    )
    assert logits.shape == (1, 1, 64, 64)
    back = upscale_logits(logits, input_size=input_size, original_size=(height, width), image_size=image_size)
    assert back.shape == (1, 1, height, width)
    got = back[0, 0].numpy() > 0
    iou = (got & mask).sum() / (got | mask).sum()
    assert iou > 0.6, iou


# ------------------------------------------------------------------------------------------ label writing


class FakeLabelsLayer:
    """The part of ``napari.layers.Labels`` the writer uses: ``data``, ``name``, ``data_setitem``."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.name = "labels"
        self.edits = 0

    def data_setitem(self, indices: Any, values: Any) -> None:
        self.data[indices] = values
        self.edits += 1


def labels_and_masks(max_objects: int = 4) -> Any:
    @st.composite
    def build(draw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
        existing = draw(hnp.arrays(np.uint16, (h, w), elements=st.sampled_from([0, 0, 0, 1, 2, 7, 300])))
        n = draw(st.integers(0, max_objects))
        masks = draw(hnp.arrays(np.bool_, (n, h, w)))
        scores = draw(hnp.arrays(np.float32, (n,), elements=st.floats(0, 1, width=32)))
        return existing, masks, scores

    return build()


@FAST
@given(labels_and_masks(), st.booleans())
def test_writing_masks_keeps_painted_labels_and_gives_fresh_unique_ids(case, overwrite):
    existing, masks, scores = case
    layer = FakeLabelsLayer(existing.copy())
    ids = write_masks(layer, masks, scores=scores, overwrite=overwrite)
    after = layer.data
    top = int(existing.max())
    # fresh IDs: consecutive above every existing label, one per object that kept a pixel
    assert ids == list(range(top + 1, top + 1 + len(ids)))
    changed = after != existing
    assert set(np.unique(after[changed]).tolist()) == set(ids)
    assert all((after == i).any() for i in ids)
    assert layer.edits == (1 if ids else 0)  # one undo step
    covered = masks.any(axis=0) if len(masks) else np.zeros(existing.shape, bool)
    assert not (changed & ~covered).any()  # only pixels under a mask change
    if not overwrite:
        np.testing.assert_array_equal(after[existing != 0], existing[existing != 0])
        assert (after[covered & (existing == 0)] > top).all()
    else:
        assert (after[covered] > top).all()


@FAST
@given(labels_and_masks(max_objects=3), st.integers(0, 2))
def test_writing_into_one_plane_of_a_stack_leaves_the_others(case, plane):
    existing, masks, scores = case
    stack = np.stack([existing] * 3)
    layer = FakeLabelsLayer(stack.copy())
    ids = write_index(
        layer,
        combine_masks(masks, scores) if len(masks) else np.zeros(existing.shape, int),
        len(masks),
        plane=plane,
    )
    others = [z for z in range(3) if z != plane]
    np.testing.assert_array_equal(layer.data[others], stack[others])
    assert all(i > int(stack.max()) for i in ids)


@FAST
@given(labels_and_masks())
def test_combine_masks_gives_each_pixel_to_the_best_scoring_mask(case):
    _, masks, scores = case
    assume(len(masks) > 0)
    index = combine_masks(masks, scores)
    for r, c in np.ndindex(index.shape):
        covering = np.flatnonzero(masks[:, r, c])
        if not len(covering):
            assert index[r, c] == 0
            continue
        best = scores[covering].max()
        winners = covering[scores[covering] == best]
        assert index[r, c] == winners[-1] + 1  # ties: the later mask


@FAST
@given(labels_and_masks(), st.randoms(use_true_random=False))
def test_segment_overlaps_go_to_the_highest_predicted_iou(case, rnd):
    _, masks, scores = case
    ids = rnd.sample(range(1, 1000), len(masks))
    labels = np.zeros(masks.shape[1:], np.uint32)
    best = np.full(labels.shape, -np.inf, np.float32)
    paint_by_score(labels, best, masks, scores, ids)
    for r, c in np.ndindex(labels.shape):
        covering = np.flatnonzero(masks[:, r, c]) if len(masks) else []
        if not len(covering):
            assert labels[r, c] == 0
            continue
        first_best = covering[np.argmax(scores[covering])]  # ties: the earlier object
        assert labels[r, c] == ids[first_best]


@FAST
@given(labels_and_masks())
def test_amg_painting_fills_only_free_pixels_with_the_first_covering_mask(case):
    existing, masks, _ = case
    labels = torch.from_numpy(existing.astype(np.int64))
    ids = torch.arange(1000, 1000 + len(masks), dtype=torch.int64)
    paint_first_hit(labels, torch.from_numpy(masks), ids)
    out = labels.numpy()
    np.testing.assert_array_equal(out[existing != 0], existing[existing != 0])
    for r, c in np.ndindex(out.shape):
        if existing[r, c]:
            continue
        covering = np.flatnonzero(masks[:, r, c]) if len(masks) else []
        assert out[r, c] == (1000 + covering[0] if len(covering) else 0)


# ------------------------------------------------------------------------------- tiles and object plans


@FAST
@given(st.integers(1, 3000), st.integers(1, 3000), st.integers(16, 1024), st.data())
def test_tile_cores_partition_the_image_and_sit_inside_their_windows(rows, cols, tile_size, data):
    from napari_sam.engine.embed.tiling import tile_windows
    from napari_sam.engine.types import TileSpec

    halo = data.draw(st.integers(0, (tile_size - 1) // 2))
    windows = tile_windows((rows, cols), TileSpec(tile_size, halo))
    row_cores = sorted({(w.core[0], w.core[2]) for w in windows})
    col_cores = sorted({(w.core[1], w.core[3]) for w in windows})
    for cores, n in ((row_cores, rows), (col_cores, cols)):
        assert cores[0][0] == 0 and cores[-1][1] == n  # the cores cover the axis …
        assert all(a[1] == b[0] for a, b in itertools.pairwise(cores))  # … without gaps or overlap
        assert all(lo < hi for lo, hi in cores)
    for w in windows:
        r0, c0, r1, c1 = w.bounds
        assert (
            0 <= r0 <= w.core[0] < w.core[2] <= r1 <= rows and 0 <= c0 <= w.core[1] < w.core[3] <= c1 <= cols
        )
        assert r1 - r0 <= tile_size and c1 - c0 <= tile_size


@FAST
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(1, 30), st.integers(1, 30)), max_size=4
    ),
    st.lists(st.tuples(st.integers(0, 69), st.integers(0, 69), st.integers(0, 1)), max_size=6),
)
def test_object_plan_follows_the_contract(raw_boxes, raw_points):
    from napari_sam.engine.decode.objects import plan_objects
    from napari_sam.engine.types import Prompts

    boxes = np.array([[r, c, r + h, c + w] for r, c, h, w in raw_boxes], float).reshape(-1, 4)
    points = np.array([p[:2] for p in raw_points], float).reshape(-1, 2)
    labels = np.array([p[2] for p in raw_points], int)
    objects = plan_objects(Prompts(points=points, point_labels=labels, boxes=boxes))

    def inside(p: np.ndarray, b: np.ndarray) -> bool:
        return bool(b[0] <= p[0] < b[2] and b[1] <= p[1] < b[3])

    in_a_box = [any(inside(p, b) for b in boxes) for p in points]
    free_fg = [i for i, p in enumerate(points) if labels[i] == 1 and not in_a_box[i]]
    # each box is one object (in order), then each free foreground point is one
    assert len(objects) == len(boxes) + len(free_fg)
    for obj, box in zip(objects, boxes, strict=False):
        np.testing.assert_array_equal(obj.box, box)
        assert all(inside(p, box) for p in obj.points)
    for obj, i in zip(objects[len(boxes) :], free_fg, strict=True):
        assert obj.box is None and obj.labels[0] == 1
        np.testing.assert_array_equal(obj.points[0], points[i])
        assert all(lab == 0 for lab in obj.labels[1:])
    # a point inside boxes refines exactly one of them: the smallest containing it
    for i, p in enumerate(points):
        owners = [
            k for k, obj in enumerate(objects[: len(boxes)]) if any(np.array_equal(q, p) for q in obj.points)
        ]
        if in_a_box[i]:
            areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
            smallest = min(areas[k] for k, b in enumerate(boxes) if inside(p, b))
            assert owners and all(areas[k] == smallest for k in owners)
