"""Correction clicks on tracked frames in SAM 2 memory propagation (``propagate_memory(corrections=)``).

The engine replays an interactive session: track as far as the corrected frames, decode each
correction there (the tracker's correction path, whose parity with the official predictor is tested in
``tests/model/sam2/test_tracking.py``), then propagate again with the corrected frames as conditioning
frames. Here the engine must give what driving the tracker that way by hand gives, and a correction
must change the labels where it was made.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.engine.decode.coords import boxes_rc_to_xyxy
from napari_sam.engine.volume.memory_corrections import Correction, correction_passes
from napari_sam.engine.volume.memory_propagation import propagate_memory
from napari_sam.model.sam2.tracking import Prompt, Sam2Tracker
from tests.engine.test_sam2_propagation import SHAPE, Counting, _inputs

BOX = np.array([[2, 12, 16, 3, 29, 35]], dtype=float)  # object 1 on frame 2


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    """A bright disk drifting over a noisy uint16 background, a second disk beside it."""
    rng = np.random.default_rng(1)
    z, y, x = SHAPE
    rr, cc = np.mgrid[:y, :x]
    out = rng.normal(300, 30, size=SHAPE)
    for t in range(z):
        out[t][(rr - 20) ** 2 + (cc - 20 - 3 * t) ** 2 < 64] += 2000
        out[t][(rr - 36) ** 2 + (cc - 48) ** 2 < 36] += 1500
    return out.clip(0, 65535).astype(np.uint16)


def _canvas(points_rc: np.ndarray) -> torch.Tensor:
    height, width = SHAPE[1:]
    return torch.tensor(points_rc[:, ::-1] * np.array([128 / width, 128 / height]), dtype=torch.float32)


def _paint(labels: np.ndarray, r) -> None:
    logits = r.masks[:, 0]
    present = r.object_score_logits[:, 0] > 0
    logits = torch.where(present[:, None, None], logits, torch.full_like(logits, -1e9))
    best, index = logits.max(dim=0)
    ids = torch.tensor(r.obj_ids)[index].numpy().astype(np.uint32)
    labels[r.frame] = np.where(best.numpy() > 0, ids, 0)


def test_correction_passes_reach_the_farthest_corrected_frames():
    assert correction_passes([], 2) == []
    assert correction_passes([4, 3], 2) == [(False, 2)]
    assert correction_passes([0, 4, 2], 2) == [(False, 2), (True, 2)]


def test_corrections_equal_the_tracker_corrected_by_hand(tiny_sam2, stack):
    model = tiny_sam2
    forward = Correction(label=1, frame=4, points=[[20, 32], [36, 48]], point_labels=[1, 0])
    backward = Correction(label=1, frame=0, points=[[36, 48]], point_labels=[1])
    seen = []
    ours = propagate_memory(
        stack,
        boxes=BOX,
        corrections=[forward, backward],
        model=model,
        progress=lambda d, t: seen.append((d, t)),
    )
    plain = propagate_memory(stack, boxes=BOX, model=model)

    # boxes are half-open (row, col) → inclusive (x, y) corners, as the engine converts them
    xyxy = boxes_rc_to_xyxy(BOX[0, [1, 2, 4, 5]]).reshape(2, 2) * np.array([128 / SHAPE[2], 128 / SHAPE[1]])
    corners = torch.tensor(xyxy.reshape(4), dtype=torch.float32)
    tracker = Sam2Tracker(model, Counting(model, _inputs(model, stack)), SHAPE[0], output_size=SHAPE[1:])
    expected = np.zeros(SHAPE, dtype=np.uint32)
    with torch.no_grad():
        tracker.add_prompt(Prompt(1, 2, box=corners))
        tracker.keep_memories = True
        list(tracker.propagate(start_frame=2, max_frames=2))
        list(tracker.propagate(reverse=True, start_frame=2, max_frames=2))
        for fix in (forward, backward):
            points = _canvas(np.asarray(fix.points, dtype=float))
            tracker.add_prompt(Prompt(1, fix.frame, points=points, labels=torch.tensor(fix.point_labels)))
        tracker.keep_memories = False
        for reverse in (False, True):
            for r in tracker.propagate(reverse=reverse):  # from frame 0, now a conditioning frame
                _paint(expected, r)
    np.testing.assert_array_equal(ours.labels, expected)
    assert not np.array_equal(ours.labels, plain.labels)  # the corrections changed the result
    # progress: the first round (3 + 3 frames from frame 2), then the propagation proper from the
    # earliest prompted frame, now the corrected frame 0 (5 frames forward, none back)
    assert seen[0] == (0, 6 + 5) and seen[-1][0] == seen[-1][1]
    # through segment() and propagate() too
    via_segment = ns.segment(
        stack, boxes=BOX, model=model, propagate_options={"corrections": [forward, backward]}
    )
    np.testing.assert_array_equal(via_segment, ours.labels)
    via_propagate = ns.propagate(stack, boxes=BOX, model=model, corrections=[forward, backward])
    np.testing.assert_array_equal(via_propagate.labels, ours.labels)


def test_correction_errors(tiny_sam2, stack):
    model = tiny_sam2
    fix = Correction(label=1, frame=3, points=[[20, 32]], point_labels=[1])
    cases = [
        ([Correction(2, 3, [[20, 32]], [1])], r"corrections\[0\] names label 2"),
        ([Correction(1, 7, [[20, 32]], [1])], r"corrections\[0\] is on frame 7"),
        ([Correction(1, 3, [[20, 32, 1]], [1])], r"corrections\[0\]\.points must be \(N, 2\)"),
        ([Correction(1, 3, [[20, 32]], [2])], r"corrections\[0\]\.point_labels"),
        ([Correction(1, 3, [[60, 32]], [1])], r"lie outside the 48×64 frame"),
        ([fix, (1, 3, [[20, 32]], [1])], r"corrections\[1\] must be a Correction"),
    ]
    for corrections, message in cases:
        with pytest.raises((ValueError, TypeError), match=message):
            propagate_memory(stack, boxes=BOX, corrections=corrections, model=model)
    with pytest.raises(ValueError, match="z_range"):
        propagate_memory(stack, boxes=BOX, corrections=[fix], model=model, z_range=(0, 3))
    with pytest.raises(ValueError, match="corrections= applies to 3D stacks"):
        propagate_memory(stack[None].repeat(2, 0), points=[[0, 2, 20, 20]], corrections=[fix], model=model)
