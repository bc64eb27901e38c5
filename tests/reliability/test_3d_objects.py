"""3D objects that cannot be segmented, or whose labels do not fit uint32, never sink or merge the rest.

Issue 16, items 4 and 6: one prompt that yields no mask (a box on a blank stack, a duplicated box) used to
fail the whole propagation; seed labels above ``2**32`` used to wrap into uint32 and merge with others.
Everything here runs the shipped nano model on a small synthetic stack.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from skimage.measure import regionprops

import napari_sam as ns
from napari_sam.errors import EmptyObjectsWarning, NoContrastWarning

Z = 2  # the prompted slice


@pytest.fixture(scope="module")
def nuclei():
    from napari_sam.data.synthetic import nuclei_3d

    stack, truth = nuclei_3d((5, 128, 128), n_objects=6, seed=3)
    return stack, truth, ns.compute_embeddings(stack, "nano")


def _good_boxes(truth: np.ndarray, n: int = 3) -> list[list[int]]:
    """``(n, 6)`` boxes of the ``n`` largest true objects on slice :data:`Z` (``max_z = Z + 1``)."""
    props = sorted(regionprops(truth[Z]), key=lambda p: -p.area)[:n]
    return [[Z, *p.bbox[:2], Z + 1, *p.bbox[2:]] for p in props]


def _background_box(truth: np.ndarray, size: int = 6) -> list[int]:
    """A small box on background: no object within 10 pixels of it on any slice."""
    for r in range(0, truth.shape[1] - size, 4):
        for c in range(0, truth.shape[2] - size, 4):
            near = truth[:, max(0, r - 10) : r + size + 10, max(0, c - 10) : c + size + 10]
            if not near.any():
                return [Z, r, c, Z + 1, r + size, c + size]
    raise AssertionError("the synthetic stack has no empty corner")


def _empty_warnings(record: list[warnings.WarningMessage]) -> list[EmptyObjectsWarning]:
    return [w.message for w in record if isinstance(w.message, EmptyObjectsWarning)]


def test_an_empty_object_leaves_only_itself_empty(nuclei):
    # an object that gets no pixels (here the copy of a box: the first keeps the mask) must not change
    # what the others get; nano v3 fills any box, even on background, so a copy is the reliable trigger
    stack, truth, vol = nuclei
    good = _good_boxes(truth)
    boxes = [*good, good[0]]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = ns.propagate(vol, boxes=boxes, image=stack)
    for k in (1, 2, 3):
        assert len(np.flatnonzero((result.labels == k).any(axis=(1, 2)))) >= 3, f"object {k} lost"
    assert not (result.labels == 4).any()
    alone = ns.propagate(vol, boxes=good, image=stack)  # the good boxes without the empty one
    np.testing.assert_array_equal(result.labels, alone.labels)
    assert result.seeds == {1: [Z], 2: [Z], 3: [Z]}
    assert result.empty_objects == {4: Z}
    (warning,) = _empty_warnings(record)  # once per call
    assert warning.objects == (4,) and warning.slices == (Z,)
    assert "object 4" in str(warning) and f"slice {Z}" in str(warning)
    assert [w.filename for w in record if w.message is warning] == [__file__]  # points at the call


def test_segment_on_a_stack_reports_the_empty_object_and_keeps_the_others(nuclei):
    stack, truth, vol = nuclei
    boxes = _good_boxes(truth)
    boxes = [*boxes, boxes[0]]  # a duplicated row: its copy, object 4, gets no pixels
    for propagate in (True, False):
        with pytest.warns(EmptyObjectsWarning, match="object 4") as record:
            labels = ns.segment(stack, boxes=boxes, embeddings=vol, propagate=propagate)
        assert set(np.unique(labels[Z])) == {0, 1, 2, 3}
        assert [w.message.objects for w in record if w.category is EmptyObjectsWarning] == [(4,)]


def test_a_duplicated_box_is_reported_not_fatal(nuclei):
    stack, truth, vol = nuclei
    first, second = _good_boxes(truth, 2)
    with pytest.warns(EmptyObjectsWarning) as record:
        result = ns.propagate(vol, boxes=[first, second, first], image=stack)
    # the two copies give one mask with one score: the first keeps it, the copy is reported
    assert (result.labels[Z] == 1).any() and (result.labels[Z] == 2).any()
    assert not (result.labels == 3).any()
    assert result.empty_objects == {3: Z}
    (warning,) = [w.message for w in record if w.category is EmptyObjectsWarning]
    assert warning.objects == (3,) and warning.slices == (Z,)


def test_when_every_prompt_is_empty_the_result_is_empty_and_reported(nuclei):
    # a stack without contrast gets no objects (its NoContrastWarning says so), whatever the model
    # decodes there: a box on it is an empty object, reported
    stack, truth, _ = nuclei
    blank = np.zeros_like(stack)
    with pytest.warns(NoContrastWarning):
        vol = ns.compute_embeddings(blank, "nano")
    with pytest.warns(EmptyObjectsWarning, match="object 1"):
        result = ns.propagate(vol, boxes=[_background_box(truth)], image=blank)
    assert not result.labels.any() and result.seeds == {} and result.empty_objects == {1: Z}
    with pytest.warns(EmptyObjectsWarning, match="object 1"):
        assert not ns.segment(blank, boxes=[_background_box(truth)], embeddings=vol).any()


@pytest.mark.parametrize("dtype", [np.uint64, np.int64])
def test_labels_above_uint32_keep_their_values(nuclei, dtype):
    stack, truth, vol = nuclei
    a, b = (p.label for p in regionprops(truth[Z])[:2])
    big = 2**32 + 1  # wraps onto 1 in uint32
    seeds = np.zeros(truth.shape, dtype=dtype)
    seeds[Z][truth[Z] == a] = big
    seeds[Z][truth[Z] == b] = 1
    result = ns.propagate(vol, seeds, image=stack)
    assert result.labels.dtype == dtype
    assert set(np.unique(result.labels).tolist()) == {0, 1, big}
    assert sorted(result.seeds) == [1, big]
    np.testing.assert_array_equal(result.labels[Z], seeds[Z])  # the seeds, values and all
    for k, true in ((big, a), (1, b)):  # each propagated as itself, not merged
        mine = result.labels == k
        assert (mine & (truth == true)).sum() > 0.8 * mine.sum()
        assert len(np.flatnonzero(mine.any(axis=(1, 2)))) >= 2


def test_labels_within_uint32_still_come_back_as_uint32(nuclei):
    stack, truth, vol = nuclei
    seeds = truth[Z].astype(np.int64)
    assert ns.propagate(vol, seeds, z=Z, image=stack).labels.dtype == np.uint32


def test_negative_labels_are_refused_clearly(nuclei):
    _, truth, vol = nuclei
    seeds = truth[Z].astype(np.int64)
    seeds[seeds == 1] = -3
    with pytest.raises(ValueError, match=r"labels.*negative.*-3"):
        ns.propagate(vol, seeds, z=Z)


def test_a_duplicated_box_in_2d_is_reported_the_same_way():
    from napari_sam.data.synthetic import nuclei_2d

    image, truth = nuclei_2d((128, 128), n_objects=4, seed=0)
    box = list(max(regionprops(truth), key=lambda p: p.area).bbox)
    with pytest.warns(EmptyObjectsWarning) as record:
        labels = ns.segment(image, boxes=[box, box])
    assert (labels == 1).any() and not (labels == 2).any()
    (warning,) = [w for w in record if w.category is EmptyObjectsWarning]
    assert warning.message.objects == (2,) and warning.message.slices == (None,)
    assert warning.filename == __file__


def test_the_napari_message_names_the_empty_objects(nuclei):
    from napari_sam._napari.propagation import propagation_message

    stack, truth, vol = nuclei
    good = _good_boxes(truth, 2)
    with pytest.warns(EmptyObjectsWarning):
        result = ns.propagate(vol, boxes=[*good, good[1]], image=stack)  # the copy gets no mask
    text = propagation_message(result, 123, "labels")
    assert text.startswith("propagated 2 objects: 123 pixels added to 'labels'")
    assert f"no mask for object 3 (slice {Z})" in text


def test_empty_object_reports_are_gathered_per_thread():
    """A batch worker runs files in threads: each file's report must stay with that file."""
    import threading

    from napari_sam.engine.decode.objects import collect_empty_objects, warn_empty_objects

    both_inside = threading.Barrier(2)
    found: dict[int, list] = {}

    def work(label: int) -> None:
        with collect_empty_objects() as reports:
            both_inside.wait(timeout=10)
            warn_empty_objects({label: 3})
            both_inside.wait(timeout=10)
        found[label] = [(r.objects, r.slices) for r in reports]

    threads = [threading.Thread(target=work, args=(k,)) for k in (4, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == {4: [((4,), (3,))], 7: [((7,), (3,))]}
    with pytest.warns(EmptyObjectsWarning, match="9"):  # outside a collector it is a warning again
        warn_empty_objects({9: None})
