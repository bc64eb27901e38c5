"""3D propagation: scheduling, stop rules, reconciliation between seeds, laziness, errors, and real runs.

The scheduling tests decode with an *oracle* (a stand-in for ``predict`` that returns the true
object under the prompt box), so what they check — which slices are decoded, in which batches, what
is painted and where chains stop — is exact. The nano tests run the real model end to end.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import napari_sam.engine.decode.predict as predict_mod
import napari_sam.engine.embed.pipeline as emb_mod
from napari_sam.engine.decode.predict import Prediction
from napari_sam.engine.decode.prompts import normalize_prompts
from napari_sam.engine.embed.embeddings import compute_embeddings
from napari_sam.engine.volume.linking import link_slices
from napari_sam.engine.volume.propagate import PropagationOptions, iter_propagate, propagate
from napari_sam.errors import Cancelled

SHAPE = (10, 48, 48)
PERMISSIVE = {"max_area_change": 100.0, "max_centroid_shift": 10.0, "min_area": 1}


def _ellipsoids(
    shape: tuple[int, int, int], specs: list[tuple[float, float, float, float, float]]
) -> np.ndarray:
    """Labels ``1..N`` of ellipsoids ``(z, row, col, z radius, xy radius)``."""
    zz, rr, cc = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    out = np.zeros(shape, dtype=np.uint32)
    for k, (z, r, c, rz, rxy) in enumerate(specs, start=1):
        inside = ((zz - z) / rz) ** 2 + ((rr - r) ** 2 + (cc - c) ** 2) / rxy**2 <= 1
        out[inside & (out == 0)] = k
    return out


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    # object 3 drifts sideways with z, so prompts must follow it slice by slice
    labels = _ellipsoids(SHAPE, [(4.5, 12, 12, 4.0, 8.0), (5, 20, 36, 3.5, 9.0)])
    for z in range(1, 9):
        labels[z, 38:46, 4 + 2 * z : 12 + 2 * z] = 3
    return labels


@pytest.fixture(scope="module")
def volume_embeddings(truth, small_model):
    image = (truth > 0).astype(np.float32) * 100 + 5
    return compute_embeddings(image, small_model)


class Oracle:
    """``predict`` stand-in: each box's object is the true label under the box centre on that slice."""

    def __init__(self, vol, truth: np.ndarray) -> None:
        self.slice_of = {id(vol[z]): z for z in range(len(vol))}
        self.truth = truth
        self.calls: list[tuple[int, int]] = []  # (slice, objects in the batch)
        self.low_scores: set[int] = set()  # slices whose first decoding scores 0.1

    def __call__(self, embeddings, *, box, multimask, best_only, model, **prompts):
        z = self.slice_of[id(embeddings)]
        n = len(box)
        masks = np.zeros((n, 1, *self.truth.shape[1:]), dtype=bool)
        for i, b in enumerate(np.asarray(box)):
            label = self.truth[z, int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)]
            masks[i, 0] = (self.truth[z] == label) & (label > 0)
        score = 0.1 if z in self.low_scores else 0.9
        self.low_scores.discard(z)
        self.calls.append((z, n))
        return Prediction(masks, np.full((n, 1), score, np.float32), np.zeros((n, 1, 64, 64), np.float32))


@pytest.fixture
def oracle(monkeypatch, volume_embeddings, truth) -> Oracle:
    fake = Oracle(volume_embeddings, truth)
    monkeypatch.setattr(predict_mod, "predict", fake)
    return fake


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_one_seed_slice_recovers_every_object_in_one_batch_per_slice(oracle, volume_embeddings, truth):
    z = 4
    result = propagate(volume_embeddings, truth[z], z=z, prompt="box", **PERMISSIVE)
    for k in (1, 2, 3):
        assert _iou(result.labels == k, truth == k) == 1.0
    assert result.seeds == {1: [z], 2: [z], 3: [z]}
    slices = [s for s, _ in oracle.calls]
    # rounds outwards from the seed, nearest slices first, all objects of a slice together
    assert slices == [3, 5, 2, 6, 1, 7, 0, 8, 9]
    assert dict(oracle.calls)[5] == 3
    assert result.decoder_calls == len(oracle.calls)
    assert {(s.label, s.direction) for s in result.stops} == {
        (k, d) for k in (1, 2, 3) for d in ("up", "down")
    }


def test_ids_of_seeds_kept_and_other_labels_never_overwritten(oracle, volume_embeddings, truth):
    seeds = np.zeros(SHAPE, dtype=np.uint32)
    seeds[4][truth[4] == 1] = 7  # object 1 annotated as label 7
    seeds[5, 10:14, 10:14] = 9  # a user's label inside where object 7 goes
    seeds[2][truth[2] == 2] = 2  # another object, on another slice, not propagated
    result = propagate(volume_embeddings, seeds, objects=[7], prompt="box", **PERMISSIVE)
    labels = result.labels
    assert (labels[5, 10:14, 10:14] == 9).all()
    assert ((labels == 2) == (seeds == 2)).all()
    expected = (truth == 1) & (seeds == 0) | (seeds == 7)
    assert ((labels == 7) == expected).all()
    assert seeds[5, 10, 10] == 9 and (seeds[6] == 0).all()  # the input is not modified


def test_z_range_and_stop_rules(oracle, volume_embeddings, truth):
    result = propagate(
        volume_embeddings, truth[4], z=4, objects=[1], z_range=(2, 7), prompt="box", **PERMISSIVE
    )
    assert result.extent(1) == (2, 7)
    assert {(s.direction, s.z, s.reason) for s in result.stops} == {("up", 7, "range"), ("down", 1, "range")}

    oracle.low_scores = {6}
    result = propagate(volume_embeddings, truth[4], z=4, objects=[1], prompt="box", **PERMISSIVE)
    up = next(s for s in result.stops if s.direction == "up")
    assert (up.z, up.reason) == (6, "score")
    assert result.extent(1) == (1, 6)

    # towards its caps the ellipsoid's area shrinks by more than 1.5x per slice
    strict = propagate(volume_embeddings, truth[4], z=4, objects=[1], prompt="box", max_area_change=1.5)
    assert {s.reason for s in strict.stops} == {"area"}
    vanished = propagate(volume_embeddings, truth[4], z=4, objects=[2], prompt="box", **PERMISSIVE)
    assert {(s.direction, s.reason) for s in vanished.stops} == {("up", "vanished"), ("down", "vanished")}
    assert vanished.extent(2) == (2, 9)


def test_fading_objects_stop_on_contrast(oracle, volume_embeddings, truth):
    image = np.where(truth > 0, 100.0, 5.0).astype(np.float32)
    image[7:][truth[7:] == 1] = 30.0  # object 1 dims to a quarter of its contrast from slice 7 on
    kw = {"z": 4, "objects": [1], "image": image, "prompt": "box", "min_intensity": 0, **PERMISSIVE}
    result = propagate(volume_embeddings, truth[4], **kw)
    assert {(s.direction, s.z, s.reason) for s in result.stops} == {
        ("up", 7, "contrast"),
        ("down", 0, "vanished"),
    }
    off = propagate(volume_embeddings, truth[4], min_contrast=0, **kw)
    assert off.extent(1) == (1, 9)
    with pytest.raises(ValueError, match="spatial shape"):
        propagate(volume_embeddings, truth[4], z=4, image=image[:, :10])


def _halo_image(truth: np.ndarray, label: int, from_slice: int, bright: bool = True) -> np.ndarray:
    """Objects at 100 on 5, except ``label`` from ``from_slice`` on: its outer 2 pixels dim to 20."""
    from scipy import ndimage

    image = np.where(truth > 0, 100.0, 5.0).astype(np.float32)
    for z in range(from_slice, truth.shape[0]):
        inner = ndimage.binary_erosion(truth[z] == label, iterations=2)
        image[z][(truth[z] == label) & ~inner] = 20.0
    return image if bright else 105.0 - image


@pytest.mark.parametrize("bright", [True, False])
def test_dim_rims_are_trimmed_from_propagated_masks(oracle, volume_embeddings, truth, bright):
    from scipy import ndimage

    image = _halo_image(truth, 1, 6, bright)
    kw = {"z": 4, "objects": [1], "image": image, "prompt": "box", "min_contrast": 0, **PERMISSIVE}
    trimmed = propagate(volume_embeddings, truth[4], min_intensity=0.5, **kw).labels == 1
    untrimmed = propagate(volume_embeddings, truth[4], min_intensity=0, **kw).labels == 1
    assert (untrimmed == (truth == 1)).all()  # the oracle returns the whole object
    for z in range(6):
        assert (trimmed[z] == (truth[z] == 1)).all()  # seed and bright slices untouched
    for z in range(6, 9):
        core = ndimage.binary_erosion(truth[z] == 1, iterations=2)
        assert (trimmed[z] == core).all()  # only the dim rim went (dark objects: the pale rim)


def test_trimming_fills_holes_it_opens_and_needs_a_basis():
    from napari_sam.engine.volume.steps import SeedIntensity, seed_intensity, trim_dim

    plane = np.full((20, 20), 5.0, np.float32)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    plane[mask] = 100.0
    seed = seed_intensity(plane, mask)
    assert seed == SeedIntensity(inside=100.0, around=5.0)
    plane[9:11, 9:11] = 10.0  # a dark nucleolus inside: not a reason to cut a hole
    assert (trim_dim(mask, plane, seed, 0.5) == mask).all()
    decoder_hole = mask.copy()
    decoder_hole[9:11, 9:11] = False  # a hole the decoder left stays open
    assert (trim_dim(decoder_hole, plane, seed, 0.5) == decoder_hole).all()
    assert seed_intensity(np.full((20, 20), 7.0, np.float32), mask) is None  # no contrast: no basis
    assert seed_intensity(None, mask) is None


def test_the_nearer_seed_claims_a_slice_first(monkeypatch, volume_embeddings):
    """Two objects stacked in z under one footprint, and a decoder that cannot see where one ends:
    each slice goes to the object whose seed is nearer, not to whichever walked there first."""
    slice_of = {id(volume_embeddings[z]): z for z in range(len(volume_embeddings))}
    calls = []

    def box_filler(embeddings, *, box, multimask, best_only, model, **prompts):
        calls.append(slice_of[id(embeddings)])
        masks = np.zeros((len(box), 1, *SHAPE[1:]), dtype=bool)
        for i, (r0, c0, r1, c1) in enumerate(np.asarray(box).astype(int)):
            masks[i, 0, r0:r1, c0:c1] = True
        n = len(box)
        return Prediction(masks, np.full((n, 1), 0.9, np.float32), np.zeros((n, 1, 64, 64), np.float32))

    monkeypatch.setattr(predict_mod, "predict", box_filler)
    seeds = np.zeros(SHAPE, dtype=np.uint32)
    seeds[1, 10:20, 10:20] = 1
    seeds[6, 10:20, 10:20] = 2
    labels = propagate(volume_embeddings, seeds, prompt="box", **PERMISSIVE).labels
    owner = [int(labels[z, 15, 15]) for z in range(SHAPE[0])]
    assert owner == [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]  # slice 3: 2 from seed 1, 3 from seed 2; slice 4: 3 and 2
    assert calls[:4] == [0, 2, 5, 7]


def test_centroid_jump_stops(oracle, volume_embeddings, truth):
    result = propagate(
        volume_embeddings,
        truth[4],
        z=4,
        objects=[3],
        prompt="box",
        max_centroid_shift=0.01,
        max_area_change=100,
    )
    assert {s.reason for s in result.stops} == {"centroid"}
    assert result.extent(3) == (4, 5)


def test_clip_to_box_keeps_predictions_inside_the_previous_box(oracle, volume_embeddings, truth):
    free = propagate(volume_embeddings, truth[4], z=4, objects=[3], prompt="box", **PERMISSIVE)
    clipped = propagate(
        volume_embeddings, truth[4], z=4, objects=[3], prompt="box", clip_to_box=True, **PERMISSIVE
    )
    assert _iou(free.labels == 3, truth == 3) == 1.0
    # object 3 drifts 2 columns per slice: each clipped step loses the 2 columns beyond the last box
    assert (clipped.labels[5] == 3).sum() == (truth[5] == 3).sum() - 2 * 8
    assert _iou(clipped.labels == 3, truth == 3) < 1.0


def test_two_seeds_fill_the_gap_from_the_nearer_end(oracle, volume_embeddings, truth):
    seeds = np.zeros(SHAPE, dtype=np.uint32)
    seeds[2][truth[2] == 3] = 3
    seeds[8][truth[8] == 3] = 3
    result = propagate(volume_embeddings, seeds, prompt="box", **PERMISSIVE)
    # round by round: one slice further from every seed (the upper half waits at the middle)
    assert [s for s, _ in oracle.calls] == [1, 3, 7, 9, 0, 4, 6, 5]
    assert _iou(result.labels == 3, truth == 3) == 1.0

    # the lower half stops early (slice 4 scores low once): the upper half goes on down to it
    oracle.calls.clear()
    oracle.low_scores = {4}
    result = propagate(volume_embeddings, seeds, prompt="box", **PERMISSIVE)
    assert [s for s, _ in oracle.calls] == [1, 3, 7, 9, 0, 4, 6, 5, 4]
    assert _iou(result.labels == 3, truth == 3) == 1.0


def test_progress_and_cancel(oracle, volume_embeddings, truth):
    options = PropagationOptions(prompt="box", **PERMISSIVE)
    steps = iter_propagate(volume_embeddings, truth[4], z=4, options=options)
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as stop:
            result = stop.value
            break
    # rounds: the longest walk from slice 4 is 5 slices (5..9)
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert result.labels.shape == SHAPE

    cancel = threading.Event()
    with pytest.raises(Cancelled):
        propagate(
            volume_embeddings, truth[4], z=4, prompt="box", progress=lambda d, t: cancel.set(), cancel=cancel
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels_or_prompts": np.zeros(SHAPE[1:], np.uint32)}, "need z="),
        ({"labels_or_prompts": np.ones(SHAPE[1:], np.uint32), "z": 10}, "out of range"),
        ({"labels_or_prompts": np.ones(SHAPE[1:], np.uint32), "z": -1}, "out of range"),
        ({"labels_or_prompts": np.ones((10, 48, 40), np.uint32)}, "stack's shape"),
        ({"labels_or_prompts": np.ones((3, 48, 48), np.uint32)}, "stack's shape"),
        ({"labels_or_prompts": np.zeros(SHAPE, np.uint32)}, "no objects"),
        ({"labels_or_prompts": np.ones(SHAPE[1:], np.uint32), "z": 3, "objects": [2]}, "object 2 is empty"),
        ({"labels_or_prompts": np.ones(SHAPE, np.uint32), "seed_slices": [12]}, "out of range"),
        ({"labels_or_prompts": np.ones(SHAPE[1:], np.uint32), "z": 3, "z_range": (5, 9)}, "outside z_range"),
        ({"labels_or_prompts": np.ones(SHAPE[1:], np.uint32), "z": 3, "z_range": (5, 2)}, "z_range"),
        ({"labels_or_prompts": np.ones(SHAPE[1:], np.float32), "z": 3}, "integer"),
        ({"labels_or_prompts": np.ones(SHAPE[1:], np.uint32), "z": 3, "prompt": "lasso"}, "prompt"),
        ({"labels_or_prompts": np.ones(SHAPE[1:], np.uint32), "z": 3, "iou_threshold": 2}, "iou_threshold"),
        ({}, "seed labels or prompts"),
        ({"labels_or_prompts": np.ones(SHAPE, np.uint32), "points": [[1, 2, 3]]}, "not both"),
    ],
)
def test_bad_input_is_refused_clearly(volume_embeddings, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        propagate(volume_embeddings, **kwargs)


def test_a_2d_image_is_refused(small_model):
    with pytest.raises(ValueError, match="3D stack"):
        propagate(np.zeros((48, 48), np.uint16), np.ones((48, 48), np.uint32), z=0, model=small_model)
    with pytest.raises(ValueError, match="3D stack"):
        propagate(np.zeros((48, 48, 3), np.uint8), np.ones((48, 48), np.uint32), z=0, model=small_model)


def test_leaked_pieces_are_dropped_and_points_lie_inside():
    from napari_sam.engine.volume.steps import interior_points, overlapping_parts

    previous = np.zeros((20, 20), dtype=bool)
    previous[4:10, 4:10] = True
    mask = np.zeros_like(previous)
    mask[5:11, 5:11] = True  # the object, moved a little
    mask[15:18, 15:18] = True  # a piece of a neighbour
    kept = overlapping_parts(mask, previous)
    assert kept[5:11, 5:11].all() and not kept[15:, 15:].any()
    assert not overlapping_parts(mask & ~previous & (np.arange(20)[:, None] > 12), previous).any()
    points = interior_points(mask, 3)
    assert points.shape == (3, 2) and len({tuple(p) for p in points}) == 3
    assert mask[points[:, 0].astype(int), points[:, 1].astype(int)].all()
    assert tuple(points[0]) in {(7.0, 7.0), (7.0, 8.0), (8.0, 7.0), (8.0, 8.0)}


def test_points_and_mask_prompts_reach_the_decoder(oracle, volume_embeddings, truth, monkeypatch):
    seen = []
    real = predict_mod.predict

    def spy(embeddings, **kwargs):
        seen.append({k: np.shape(v) for k, v in kwargs.items() if k in ("box", "points", "mask_input")})
        return real(embeddings, **kwargs)

    monkeypatch.setattr(predict_mod, "predict", spy)
    propagate(volume_embeddings, truth[4], z=4, z_range=(4, 6), prompt=("box", "points", "mask"), n_points=2)
    assert seen[0] == {"box": (3, 4), "points": (3, 2, 2), "mask_input": (3, 64, 64)}


def test_segment_without_prompts_links_slices_of_a_stack(monkeypatch, small_model):
    import napari_sam as ns
    import napari_sam.engine.automatic.front as automatic_mod

    per_slice = np.zeros((3, 16, 16), dtype=np.uint32)
    per_slice[0, 2:8, 2:8] = 1
    per_slice[1, 2:8, 3:9] = 2
    per_slice[2, 10:14, 10:14] = 3
    monkeypatch.setattr(automatic_mod, "automatic_labels", lambda image, *args, **kw: per_slice.copy())
    stack = np.zeros((3, 16, 16), np.uint16)
    linked = ns.segment(stack, model=small_model)
    np.testing.assert_array_equal(linked, link_slices(per_slice))
    assert linked[0, 3, 3] == linked[1, 3, 4] != linked[2, 11, 11]
    np.testing.assert_array_equal(ns.segment(stack, model=small_model, propagate=False), per_slice)


# ------------------------------------------------------------------------------------------- linking


def test_link_slices_joins_overlapping_objects_one_to_one():
    per_slice = np.zeros((4, 20, 20), dtype=np.uint32)
    per_slice[0, 2:8, 2:8] = 1
    per_slice[1, 3:9, 2:8] = 2  # continues 1
    per_slice[1, 12:18, 12:18] = 3  # new object
    per_slice[2, 3:9, 2:5] = 4  # two halves of object 1/2: only the better match links
    per_slice[2, 3:9, 5:8] = 5
    per_slice[3, 12:18, 12:18] = 6  # not adjacent to 3 (slice 2 is empty there): separate object
    linked = link_slices(per_slice, min_iou=0.3, min_slices=1)
    assert linked.dtype == np.uint32
    assert linked[0, 4, 4] == linked[1, 4, 4] == 1
    assert len({int(linked[2, 4, 3]), int(linked[2, 4, 6])}) == 2
    assert linked[1, 14, 14] != linked[3, 14, 14]
    assert set(np.unique(linked)) == set(range(5))  # {1, 2, one half}, the other half, 3, 6
    kept = link_slices(per_slice, min_slices=2)
    assert set(np.unique(kept[kept > 0])) == {1}


def test_link_slices_bad_input():
    with pytest.raises(ValueError, match="Z, Y, X"):
        link_slices(np.zeros((4, 4), np.uint32))
    with pytest.raises(ValueError, match="min_iou"):
        link_slices(np.zeros((2, 4, 4), np.uint32), min_iou=0)


# ---------------------------------------------------------------------------------- real nano model


@pytest.fixture(scope="module")
def nuclei_stack():
    from napari_sam.data.synthetic import nuclei_3d

    image, labels = nuclei_3d((8, 256, 256), n_objects=10, seed=20100)
    return image, labels, compute_embeddings(image, "nano")


def _middle_seeds(labels: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """One seed slice per object (its middle), objects spanning at least 4 slices."""
    seeds = np.zeros_like(labels)
    ids = []
    for k in np.unique(labels[labels > 0]):
        zs = np.flatnonzero((labels == k).any(axis=(1, 2)))
        if len(zs) >= 4:
            z = zs[len(zs) // 2]
            seeds[z][labels[z] == k] = k
            ids.append(int(k))
    return seeds, ids


def test_nano_propagation_follows_nuclei(nuclei_stack):
    image, labels, vol = nuclei_stack
    seeds, ids = _middle_seeds(labels)
    assert len(ids) >= 3
    result = propagate(vol, seeds, image=image)
    ious = [_iou(result.labels == k, labels == k) for k in ids]
    single = [_iou(seeds == k, labels == k) for k in ids]
    assert np.mean(ious) > 0.6
    assert np.mean(ious) > np.mean(single) + 0.2  # real gain over the seed slice alone
    assert set(np.unique(result.labels)) <= {0, *ids}


def test_segment_with_prompts_on_a_stack_propagates_unless_told_not_to(nuclei_stack):
    import napari_sam as ns
    from napari_sam.engine.volume.steps import summarize

    image, labels, vol = nuclei_stack
    _, ids = _middle_seeds(labels)
    k = ids[0]
    zs = np.flatnonzero((labels == k).any(axis=(1, 2)))
    z = int(zs[len(zs) // 2])
    r0, c0, r1, c1 = summarize(labels[z] == k).bbox
    boxes = [[z, r0, c0, z + 1, r1, c1]]
    flat = ns.segment(image, boxes=boxes, embeddings=vol, propagate=False)
    assert set(np.flatnonzero(flat.any(axis=(1, 2)))) == {z}
    deep = ns.segment(image, boxes=boxes, embeddings=vol)
    assert len(np.flatnonzero(deep.any(axis=(1, 2)))) >= 3
    assert set(np.unique(deep)) == {0, 1}
    in_box = np.zeros(flat.shape[1:], dtype=bool)
    in_box[r0:r1, c0:c1] = True
    np.testing.assert_array_equal(deep[z], np.where(in_box, flat[z], 0))  # the seed, clipped to its box
    assert _iou(deep == 1, labels == k) > _iou(flat == 1, labels == k)
    same = ns.propagate(vol, boxes=boxes, image=image)
    assert (same.labels == deep).all()
    checked = normalize_prompts(boxes=boxes, spatial_shape=labels.shape)  # as segment() passes them on
    assert (ns.propagate(vol, checked, image=image).labels == deep).all()


def test_prompts_given_checked_are_numbered_as_segment_numbers_them(volume_embeddings):
    from napari_sam.engine.decode.objects import object_slices

    prompts = normalize_prompts(
        points=[[2, 10, 10], [5, 30, 30], [5, 12, 12], [6, 1, 1]],
        point_labels=[1, 1, 1, 0],
        boxes=[[5, 5, 5, 6, 20, 20]],
        spatial_shape=SHAPE,
    )
    # the box first, then the free foreground points; the point inside the box refines it
    assert object_slices(prompts) == {1: 5, 2: 2, 3: 5}
    flat = normalize_prompts(points=[[10, 10]], spatial_shape=SHAPE[1:])
    with pytest.raises(ValueError, match="prompts on a stack"):
        propagate(volume_embeddings, flat)
    with pytest.raises(ValueError, match="not both"):
        propagate(volume_embeddings, prompts, boxes=[[5, 5, 5, 6, 20, 20]])


def test_propagating_a_few_slices_of_a_long_stack_embeds_only_those(nuclei_stack, monkeypatch):
    image, labels, _ = nuclei_stack

    class LongStack:
        """A 300-slice stack that repeats the 8 real slices, read one slice at a time."""

        shape = (300, *image.shape[1:])
        dtype = image.dtype
        ndim = 3

        def __getitem__(self, index):
            return image[index[0] % image.shape[0]]

    encoded: list[int] = []
    real = emb_mod.encode_images

    def counting(sam, inputs, **kwargs):
        encoded.append(int(inputs.shape[0]))
        return real(sam, inputs, **kwargs)

    monkeypatch.setattr(emb_mod, "encode_images", counting)
    seeds, ids = _middle_seeds(labels)
    k = ids[0]
    z = int(np.flatnonzero((seeds == k).any(axis=(1, 2)))[0])
    seed_z = 144 + z  # same content as slice z
    result = propagate(LongStack(), np.where(seeds[z] == k, k, 0), z=seed_z, z_range=(seed_z - 2, seed_z + 3))
    assert 1 <= sum(encoded) == result.decoder_calls <= 4
    outside = np.ones(300, dtype=bool)
    outside[seed_z - 2 : seed_z + 3] = False
    assert not result.labels[outside].any()
