"""Automatic mask generation: building blocks, options, API behaviour (fast: small random model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.engine.automatic.amg import iter_automatic
from napari_sam.engine.automatic.cleanup import clean_mask, window_of
from napari_sam.engine.automatic.front import AutomaticResult, automatic, automatic_labels
from napari_sam.engine.automatic.grid import crop_boxes, layer_point_grids, point_grid
from napari_sam.engine.automatic.masks import mask_statistics, masks_to_boxes, near_crop_edge, paint_first_hit
from napari_sam.engine.automatic.nms import box_iou, nms, nms_overlaps
from napari_sam.engine.automatic.options import OPTION_NAMES, resolve_options
from napari_sam.engine.automatic.plan import AutomaticPlan
from napari_sam.engine.preprocess import Preprocessor

# thresholds at which a random-weight model's masks survive (its IoU head and logits are arbitrary)
LOOSE = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 0.95}


def _greedy_reference(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        ious = box_iou(torch.tensor(boxes[[i]]), torch.tensor(boxes[kept])).numpy()[0] if kept else []
        if not any(v > threshold for v in ious):
            kept.append(i)
    return kept


# ------------------------------------------------------------------------------------------- NMS


@pytest.mark.parametrize("seed", range(5))
def test_nms_equals_sequential_greedy(seed):
    rng = np.random.default_rng(seed)
    n = 200
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(5, 40, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)
    scores[:10] = scores[10]  # ties: lower index first
    for threshold in (0.1, 0.5, 0.7):
        ours = nms(torch.tensor(boxes), torch.tensor(scores), threshold).tolist()
        assert ours == _greedy_reference(boxes, scores, threshold)


def test_nms_long_suppression_chain_and_empty_input():
    # each box overlaps the next by > 0.5: greedy keeps every other one
    boxes = torch.tensor([[i * 2.0, 0.0, i * 2.0 + 10.0, 10.0] for i in range(30)])
    scores = torch.linspace(1.0, 0.0, 30)
    assert nms(boxes, scores, 0.5).tolist() == _greedy_reference(boxes.numpy(), scores.numpy(), 0.5)
    assert nms(torch.zeros((0, 4)), torch.zeros(0), 0.5).shape == (0,)


def test_box_iou_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    np.testing.assert_allclose(box_iou(a, b).numpy(), [[1.0, 50 / 150, 0.0]])


# ----------------------------------------------------------------------------------- grids, crops


def test_point_grid_is_cell_centres_x_fastest():
    np.testing.assert_allclose(point_grid(2), [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    grids = layer_point_grids(8, 2, 2)
    assert [len(g) for g in grids] == [64, 16, 4]


def test_crop_boxes_cover_the_image_with_overlap():
    boxes = crop_boxes((100, 200), 1, 0.2)
    assert boxes[0].xyxy == (0, 0, 200, 100) and boxes[0].layer == 0
    layer1 = boxes[1:]
    assert len(layer1) == 4 and all(b.layer == 1 for b in layer1)
    covered = np.zeros((100, 200), dtype=int)
    for b in layer1:
        covered[b.y0 : b.y1, b.x0 : b.x1] += 1
    assert covered.min() >= 1 and covered.max() == 4  # every pixel covered; overlaps in the middle
    assert [b.x0 for b in layer1] == [0, 0, layer1[2].x0, layer1[2].x0]  # x outer, y inner


# --------------------------------------------------------------------------------- mask arithmetic


def test_masks_to_boxes_inclusive_xyxy_and_empty():
    masks = torch.zeros((2, 10, 12), dtype=torch.bool)
    masks[0, 2:5, 3:9] = True  # rows 2..4, cols 3..8
    np.testing.assert_array_equal(masks_to_boxes(masks).numpy(), [[3, 2, 8, 4], [0, 0, 0, 0]])


def test_masks_to_boxes_is_the_one_mask_to_box_in_sam_s_convention():
    from napari_sam.engine.decode.coords import boxes_rc_to_xyxy, mask_to_box

    masks = np.random.default_rng(0).random((6, 20, 30)) > 0.97
    masks[0] = False
    boxes = masks_to_boxes(torch.from_numpy(masks)).numpy()
    assert boxes[0].tolist() == [0, 0, 0, 0]
    for mask, box in zip(masks[1:], boxes[1:], strict=True):
        np.testing.assert_array_equal(box, boxes_rc_to_xyxy(mask_to_box(mask)))


def test_mask_statistics_counts_thresholds():
    logits = torch.full((1, 4, 5), -5.0)
    logits[0, :2, :] = 3.0  # 10 pixels far above
    logits[0, 2, :] = 0.5  # 5 pixels in (0, 1]: in the mask, not in the inner one
    stability, boxes, areas = mask_statistics(logits, 0.0, 1.0)
    assert areas.tolist() == [15]
    assert stability.tolist() == pytest.approx([10 / 15])
    assert boxes.tolist() == [[0, 0, 4, 2]]


def test_near_crop_edge_ignores_image_edges():
    crop, image = (0, 0, 50, 50), (0, 0, 100, 100)
    boxes = torch.tensor([[0, 0, 10, 10], [30, 10, 49, 20], [25, 25, 28, 28]])
    assert near_crop_edge(boxes, crop, image).tolist() == [False, True, False]


def test_paint_first_hit_keeps_the_first_mask():
    labels = torch.zeros((4, 4), dtype=torch.int64)
    masks = torch.zeros((2, 4, 4), dtype=torch.bool)
    masks[0, :2] = True
    masks[1, 1:3] = True
    paint_first_hit(labels, masks, torch.tensor([7, 9]))
    assert labels[:, 0].tolist() == [7, 7, 9, 0]
    later = torch.ones((1, 4, 4), dtype=torch.bool)
    paint_first_hit(labels, later, torch.tensor([3]))  # a later chunk only fills free pixels
    assert labels[:, 0].tolist() == [7, 7, 9, 3]


def test_clean_mask_fills_small_holes_and_drops_small_islands():
    image = np.zeros((30, 30), dtype=bool)
    image[5:20, 5:20] = True
    image[10:12, 10:12] = False  # a 4-pixel hole
    image[25, 25] = True  # a 1-pixel island
    box = np.array([5, 5, 25, 25])  # inclusive (x0, y0, x1, y1)
    where, inner = window_of(box, image.shape)
    cleaned, changed = clean_mask(image[where], inner, min_area=10)
    out = np.zeros_like(image)
    out[where] = cleaned
    expected = np.zeros_like(image)
    expected[5:20, 5:20] = True
    assert changed and np.array_equal(out, expected)
    # nothing below the threshold: unchanged
    again, changed = clean_mask(cleaned, inner, min_area=3)
    assert not changed and np.array_equal(again, cleaned)


def test_clean_mask_keeps_the_largest_island_when_all_are_small():
    window = np.zeros((8, 8), dtype=bool)
    window[1:3, 1:3] = True
    window[5, 5] = True
    inner = (slice(1, 7), slice(1, 7))
    cleaned, changed = clean_mask(window, inner, min_area=100)
    assert changed and cleaned.sum() == 4 and cleaned[1:3, 1:3].all()


# ------------------------------------------------------------------------------------------ options


def test_preset_then_explicit_values():
    opts = resolve_options("nuclei", pred_iou_thresh=0.7, points_per_side=None)
    assert opts.pred_iou_thresh == 0.7
    assert opts.mask_nms_thresh == 0.5 and opts.min_area == 50 and opts.box_nms_thresh == 1.0  # the preset
    assert opts.points_per_side == 32  # official default: the preset does not set it
    official = resolve_options()
    assert (official.points_per_side, official.pred_iou_thresh, official.stability_score_thresh) == (
        32,
        0.88,
        0.95,
    )
    assert official.crop_overlap_ratio == pytest.approx(512 / 1500)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"points_per_side": 0}, "points_per_side"),
        ({"points_per_side": 2.5}, "points_per_side"),
        ({"pred_iou_thresh": 1.5}, r"pred_iou_thresh must be a number in \[0.0, 1.0\]"),
        ({"stability_score_thresh": -0.1}, "stability_score_thresh"),
        ({"box_nms_thresh": float("nan")}, "box_nms_thresh"),
        ({"crop_nms_thresh": 2}, "crop_nms_thresh"),
        ({"crop_overlap_ratio": 1.0}, "crop_overlap_ratio"),
        ({"points_per_batch": 0}, "points_per_batch"),
        ({"min_mask_region_area": -1}, "min_mask_region_area"),
        ({"max_area_fraction": 0}, "max_area_fraction"),
        ({"min_area": -5}, "min_area"),
        ({"point_in_mask": "yes"}, "point_in_mask"),
        ({"overlap": "iou"}, "overlap"),
        ({"mask_nms_thresh": 1.2}, "mask_nms_thresh"),
        ({"points_per_side": 2, "crop_n_layers": 2, "crop_n_points_downscale_factor": 2}, "no points"),
        ({"preset": "cells"}, "preset"),
    ],
)
def test_bad_options_are_clear_errors(options, message):
    image = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    with pytest.raises(ValueError, match=message):
        automatic(image, **options)


def test_automatic_takes_every_option_as_a_keyword():
    import inspect

    keywords = [name for name in inspect.signature(automatic).parameters if name in OPTION_NAMES]
    assert keywords == list(OPTION_NAMES)  # same names, same order as AutomaticOptions' fields


def test_unknown_option_is_an_error():
    with pytest.raises(ValueError, match="unknown automatic segmentation option"):
        resolve_options(points_per_sid=8)


def test_crops_need_the_image(small_model):
    emb = ns.compute_embeddings(np.zeros((40, 50), np.uint8) + np.arange(50, dtype=np.uint8), small_model)
    with pytest.raises(ValueError, match="crop_n_layers > 0 needs the image"):
        automatic(emb, crop_n_layers=1)
    with pytest.raises(ValueError, match="shape"):
        automatic(np.zeros((41, 50), np.uint8) + 1, embeddings=emb)


def test_constant_image_gives_empty_labels_without_running_a_model():
    result = automatic(np.zeros((48, 64), np.uint16), model="no-such-model.pth")
    assert result.labels.shape == (48, 64) and result.labels.dtype == np.uint32
    assert not result.labels.any() and result.n_objects == 0
    assert set(result.properties) >= {"label", "score", "stability_score", "area", "bbox-0", "point-0"}


# ------------------------------------------------------------------------- end to end (small model)


@pytest.fixture(scope="module")
def image():
    from napari_sam.data.synthetic import nuclei_2d

    img, _ = nuclei_2d((96, 128), n_objects=6, diameter=(14.0, 28.0), seed=10001)
    return img


def _check_consistent(result: AutomaticResult, shape: tuple[int, int]) -> None:
    from skimage.measure import regionprops

    labels = result.labels
    assert labels.shape == shape and labels.dtype == np.uint32
    props = result.properties
    n = result.n_objects
    assert props["label"].tolist() == list(range(1, n + 1))
    assert sorted(np.unique(labels[labels > 0]).tolist()) == list(range(1, n + 1))
    assert np.all(np.diff(props["score"]) <= 0)  # labels by decreasing predicted IoU
    for region in regionprops(labels.astype(np.int64)):
        i = region.label - 1
        assert props["area"][i] == region.area
        assert tuple(props[f"bbox-{k}"][i] for k in range(4)) == region.bbox


def test_labels_properties_and_masks_agree(small_model, image):
    result = automatic(image, model=small_model, points_per_side=4, return_masks=True, **LOOSE)
    _check_consistent(result, image.shape)
    assert result.n_objects > 0
    masks, table = result.masks, result.mask_properties
    assert masks is not None and masks.shape[0] == table["label"].shape[0] >= result.n_objects
    np.testing.assert_array_equal(masks.sum(axis=(1, 2)), table["area"])
    # every labelled pixel lies in the mask that became its label; a pixel covered by several masks
    # carries the label of the best-scoring one
    for k in range(masks.shape[0]):
        label = table["label"][k]
        if label:
            assert masks[k][result.labels == label].all()
    best = np.full(image.shape, -np.inf)
    for k in range(masks.shape[0]):
        best = np.where(masks[k], np.maximum(best, table["score"][k]), best)
    painted = result.labels > 0
    np.testing.assert_allclose(result.properties["score"][result.labels[painted] - 1], best[painted])


def test_embeddings_input_equals_image_input_and_segment(small_model, image):
    emb = ns.compute_embeddings(image, small_model)
    a = automatic(image, model=small_model, points_per_side=3, **LOOSE)
    b = automatic(emb, points_per_side=3, **LOOSE)
    np.testing.assert_array_equal(a.labels, b.labels)
    c = automatic_labels(image, _amg_plan(points_per_side=3, **LOOSE), Preprocessor(), model=small_model)
    np.testing.assert_array_equal(a.labels, c)


def test_segment_without_prompts_is_automatic(small_model, image, monkeypatch):
    from napari_sam.engine.automatic import options as options_mod
    from napari_sam.engine.automatic import plan as plan_mod

    official = options_mod.resolve_options

    def few_points(preset=None, **options):  # segment() passes no options: make its run small
        given = {k: v for k, v in options.items() if v is not None}
        return official(preset, **{"points_per_side": 3, **LOOSE, **given})

    monkeypatch.setattr(plan_mod, "resolve_options", few_points)  # segment()'s and automatic()'s
    labels = ns.segment(image, model=small_model)
    assert labels.dtype == np.uint32 and labels.shape == image.shape and labels.any()
    np.testing.assert_array_equal(labels, automatic(image, model=small_model).labels)


def test_stack_is_segmented_slice_by_slice_with_distinct_labels(small_model, image):
    stack = np.stack([image, image[::-1]])
    limits = (float(image.min()), float(image.max()))  # same normalisation as the 2D call below
    kwargs = {"model": small_model, "points_per_side": 3, "contrast_limits": limits, **LOOSE}
    options = _amg_plan(points_per_side=3, **LOOSE)
    labels = automatic_labels(
        stack, options, Preprocessor(contrast_limits=limits), stack=True, model=small_model
    )
    assert labels.shape == stack.shape and labels.dtype == np.uint32
    first, second = labels[0], labels[1]
    assert first.any() and second.any()
    assert second[second > 0].min() > first.max()
    single = automatic(stack[0], **kwargs).labels
    np.testing.assert_array_equal(first, single)


class _SliceOnly:
    """A stack that is read one slice at a time, never whole (what a zarr or dask array promises)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim

    def __getitem__(self, index):
        assert isinstance(index, tuple) and any(isinstance(i, int) for i in index), index
        return self.data[index]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole stack was read")


def _volume_normalised(stack: np.ndarray, **options) -> np.ndarray:
    """What automatic_labels did before it read stacks lazily: the flattened volume normalised at once."""
    from napari_sam.engine.preprocess import normalize_intensity

    z, rows, cols = stack.shape[:3]
    flat = stack.reshape(z * rows, cols, -1)
    return normalize_intensity(flat, **options)[0].reshape(z, rows, cols, -1)


def test_a_stack_is_read_slice_by_slice_and_normalised_as_one_volume(small_model, image):
    stack = np.stack([image, image[::-1] // 3 + 500])  # other ranges: one volume's percentiles matter
    kwargs = {"model": small_model, "points_per_side": 3, **LOOSE}
    options = _amg_plan(points_per_side=3, **LOOSE)
    labels = automatic_labels(_SliceOnly(stack), options, Preprocessor(), stack=True, model=small_model)
    scaled = _volume_normalised(stack)
    offset = 0
    for z in range(2):
        single = automatic(scaled[z], normalize=None, **kwargs).labels
        np.testing.assert_array_equal(labels[z], np.where(single > 0, single + offset, 0))
        offset += int(single.max())


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int64])
def test_volume_normalisation_equals_the_whole_volume_s(dtype):
    from napari_sam.engine.automatic.stack import stack_layout, volume_preprocessor
    from napari_sam.engine.embed.layout import read_slice
    from napari_sam.engine.preprocess import Preprocessor

    rng = np.random.default_rng(3)
    stack = rng.integers(0, 4000, (5, 2, 40, 30)).astype(dtype)  # (Z, C, Y, X)
    if dtype == np.int64:
        stack += 2**60  # beyond float64's exact integers: the limits keep their residuals
    lazy = _SliceOnly(stack)
    layout = stack_layout(stack.shape, 1)
    assert layout.spatial_shape == (5, 40, 30)
    for channel, limits in ((1, None), (0, (100.0, 3000.0))):
        preprocessor = Preprocessor(
            contrast_limits=limits, channel=channel, channel_axis=layout.slice_channel_axis
        )
        preprocessor = volume_preprocessor(lazy, layout, preprocessor)
        assert (preprocessor.volume_limits is None) == (limits is not None)
        options = {} if limits is None else {"contrast_limits": limits}
        whole = _volume_normalised(np.moveaxis(stack, 1, -1)[..., channel : channel + 1], **options)
        for z in range(5):
            np.testing.assert_array_equal(preprocessor.normalized(read_slice(lazy, layout, z))[0], whole[z])


def test_a_uint8_rgb_stack_keeps_its_intensities():
    from napari_sam.engine.automatic.stack import stack_layout, volume_preprocessor
    from napari_sam.engine.preprocess import Preprocessor

    stack = np.random.default_rng(0).integers(0, 255, (3, 20, 24, 3), dtype=np.uint8)
    layout = stack_layout(stack.shape, None)
    assert volume_preprocessor(_SliceOnly(stack), layout, Preprocessor()).volume_limits is None
    gray = stack[..., 0]
    assert volume_preprocessor(_SliceOnly(gray), stack_layout(gray.shape, None), Preprocessor()).volume_limits


@pytest.mark.parametrize(
    ("shape", "channel_axis", "message"),
    [((4, 8), None, "a stack must be"), ((3, 8, 8), 0, "a stack must be"), ((0, 8, 8), None, "empty")],
)
def test_bad_stacks_are_clear_errors(shape, channel_axis, message):
    with pytest.raises(ValueError, match=message):
        automatic_labels(
            np.zeros(shape, np.uint8), _amg_plan(), Preprocessor(channel_axis=channel_axis), stack=True
        )


def _amg_plan(**options):
    """The prompt grid with the official thresholds and ``options``."""
    return AutomaticPlan.make("amg", None, amg_options=options)


def _drain(steps):
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def test_progress_and_generator(small_model, image):
    calls: list[tuple[int, int]] = []
    result = automatic(
        image,
        model=small_model,
        points_per_side=4,
        points_per_batch=5,
        progress=lambda d, t: calls.append((d, t)),
        **LOOSE,
    )
    totals = {t for _, t in calls}
    assert len(totals) == 1 and calls[-1][0] == calls[-1][1] == 1 + 4  # embed + ceil(16 / 5) + 1
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    opts = resolve_options(points_per_side=4, points_per_batch=5, **LOOSE)
    steps = iter_automatic(image, opts, model=small_model)
    final = _drain(steps)
    np.testing.assert_array_equal(final.labels, result.labels)
    assert not torch.is_inference_mode_enabled()


def test_crops_and_cleanup_run(small_model, image):
    result = automatic(
        image, model=small_model, points_per_side=4, crop_n_layers=1, min_mask_region_area=20, **LOOSE
    )
    _check_consistent(result, image.shape)


def test_max_area_fraction_drops_large_masks(small_model, image):
    result = automatic(image, model=small_model, points_per_side=4, max_area_fraction=0.05, **LOOSE)
    assert (result.mask_properties["area"] <= 0.05 * image.size).all()


def test_min_area_and_point_in_mask_filters(small_model, image):
    no_nms = {**LOOSE, "box_nms_thresh": 1.0}  # every candidate that passes the filters is kept
    kwargs = {"model": small_model, "points_per_side": 4, "return_masks": True, **no_nms}
    result = automatic(image, min_area=5000, point_in_mask=True, **kwargs)
    table, masks = result.mask_properties, result.masks
    assert masks is not None and len(masks) > 0
    assert (table["area"] >= 5000).all()
    rows, cols = table["point-0"].astype(int), table["point-1"].astype(int)
    assert masks[np.arange(len(masks)), rows, cols].all()
    unfiltered = automatic(image, **kwargs).mask_properties
    assert (unfiltered["area"] < 5000).any() and len(unfiltered["area"]) > len(table["area"])


def test_overlap_by_area_lets_smaller_masks_win(small_model, image):
    kwargs = {
        "model": small_model,
        "points_per_side": 4,
        "return_masks": True,
        **LOOSE,
        "box_nms_thresh": 1.0,
    }
    result = automatic(image, overlap="area", **kwargs)
    masks, table = result.masks, result.mask_properties
    assert masks is not None and len(masks) > 1
    smallest = np.full(image.shape, np.inf)
    for k in range(len(masks)):
        smallest = np.where(masks[k], np.minimum(smallest, table["area"][k]), smallest)
    painted = result.labels > 0
    mask_area_of_label = np.zeros(result.n_objects + 1)
    mask_area_of_label[table["label"]] = table["area"]
    np.testing.assert_array_equal(mask_area_of_label[result.labels[painted]], smallest[painted])
    assert np.all(np.diff(mask_area_of_label[1:]) >= 0)  # labels numbered from the smallest mask


def test_nms_overlaps_uses_the_given_matrix():
    overlaps = torch.tensor([[1.0, 0.6, 0.1], [0.6, 1.0, 0.7], [0.1, 0.7, 1.0]])
    scores = torch.tensor([0.5, 0.9, 0.2])
    # 1 (best) suppresses 0 (0.6 > 0.5) and 2 (0.7 > 0.5)
    assert nms_overlaps(overlaps, scores, 0.5).tolist() == [1]
    assert nms_overlaps(overlaps, scores, 0.65).tolist() == [1, 0]


def test_mask_nms_leaves_no_pair_overlapping_more_than_the_threshold(small_model, image):
    kwargs = {
        "model": small_model,
        "points_per_side": 4,
        "return_masks": True,
        **LOOSE,
        "box_nms_thresh": 1.0,
    }
    before = automatic(image, **kwargs)
    after = automatic(image, mask_nms_thresh=0.3, **kwargs)
    assert before.masks is not None and after.masks is not None
    assert 0 < len(after.masks) < len(before.masks)
    flat = after.masks.reshape(len(after.masks), -1).astype(np.float64)
    inter = flat @ flat.T
    area = np.diag(inter)
    ratio = inter / np.maximum(np.minimum(area[:, None], area[None, :]), 1)
    np.fill_diagonal(ratio, 0)
    assert ratio.max() <= 0.3


def test_segment_without_prompts_takes_the_nuclei_preset_for_nano_only(monkeypatch):
    from napari_sam.engine.automatic import front
    from napari_sam.nodes import automatic_segmentation

    seen = []

    def fake(image, options, preprocessor, **kwargs):
        seen.append(options)
        yield 1, 1
        return _empty_like(image)

    monkeypatch.setattr(front, "iter_automatic", fake)
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)  # not constant: it is segmented
    ns.segment(image, mode="amg")  # nano carries an instance decoder: "auto" would run AIS
    automatic_segmentation(image, preset="official", model="nano")
    assert seen == [resolve_options("nuclei"), resolve_options(None)]
    ns.segment(image)  # AIS: the prompt grid is not run
    assert len(seen) == 2
    # vit_b's weights are not here: what segment() would ask of it is its plan's AMG options
    assert AutomaticPlan.make("auto", "auto", model="vit_b").amg == resolve_options(None)
    assert ns.automatic(np.zeros((8, 8), np.uint8), model="vit_b").n_objects == 0  # constant: no model


def _empty_like(image):
    return AutomaticResult(labels=np.zeros(image.shape[:2], np.uint32), properties={}, mask_properties={})


def test_an_image_beyond_the_tiling_threshold_is_embedded_whole(small_model):
    """Images whose longer side exceeds the tiling threshold (2048) are embedded whole, like crops."""
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 50, (24, 2100)).astype(np.uint16)
    wide[:, 300:700] += 3000
    result = automatic(wide, model=small_model, points_per_side=2, **LOOSE)
    _check_consistent(result, wide.shape)
