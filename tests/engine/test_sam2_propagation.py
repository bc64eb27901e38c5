"""SAM 2 in the engine: the frame store, memory propagation and ``segment()`` with a SAM 2 model.

A tiny seeded SAM 2 (128 canvas, random weights, the object-score head biased so objects are present)
on a few small frames; no reference environment needed (the tracker's parity with the official
predictor is tested in ``tests/model/sam2``; here the engine must give what driving the tracker by hand
gives).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.engine.decode.coords import boxes_rc_to_xyxy, points_rc_to_xy
from napari_sam.engine.embed.sam2_frames import (
    SAM2_FRAMES_KEY,
    iter_compute_frames,
    open_frames,
    sam2_frame_input,
)
from napari_sam.engine.preprocess import Preprocessor
from napari_sam.engine.steps import run_steps
from napari_sam.engine.volume.memory_propagation import propagate_memory
from napari_sam.errors import CacheMismatchError, MissingSliceError
from napari_sam.model import build_sam
from napari_sam.model.sam2.configs import tiny_test_config
from napari_sam.model.sam2.tracking import Prompt, Sam2Tracker

SHAPE = (5, 48, 64)  # frames, rows, cols (not square: the frames are stretched onto the canvas)


@pytest.fixture
def model(tiny_sam2):
    """The shared tiny SAM 2 (tests/conftest.py) under this module's name for it."""
    return tiny_sam2


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    """A bright disk drifting over a noisy uint16 background."""
    rng = np.random.default_rng(0)
    z, y, x = SHAPE
    rr, cc = np.mgrid[:y, :x]
    out = rng.normal(300, 30, size=SHAPE)
    for t in range(z):
        out[t][(rr - 20) ** 2 + (cc - 20 - 3 * t) ** 2 < 64] += 2000
    return out.clip(0, 65535).astype(np.uint16)


class Counting:
    """A feature source that counts encoder calls and the frames whose features are alive at once."""

    def __init__(self, model, inputs):
        import weakref

        self.model, self.inputs, self.calls, self.peak = model, inputs, 0, 0
        self._alive: weakref.WeakSet = weakref.WeakSet()

    def __call__(self, z):
        with torch.no_grad():
            features = self.model.forward_image(self.inputs[z])
        self.calls += 1
        self._alive.add(features.image_embed)
        self.peak = max(self.peak, len(self._alive))
        return features


def _inputs(model, stack):
    pre = Preprocessor()
    return [sam2_frame_input(pre.normalized(stack[z])[0], model.image_size) for z in range(stack.shape[0])]


def _by_hand(model, stack, prompts, *, start):
    """Labels from the tracker driven by hand on the same preprocessed frames."""
    inputs = _inputs(model, stack)
    tracker = Sam2Tracker(model, Counting(model, inputs), stack.shape[0], output_size=stack.shape[1:])
    labels = np.zeros(stack.shape, dtype=np.uint32)
    with torch.no_grad():
        for p in prompts:
            tracker.add_prompt(p)
        for reverse in (False, True):
            if reverse and start == 0:
                continue
            for r in tracker.propagate(reverse=reverse, start_frame=start):
                logits = r.masks[:, 0]
                present = r.object_score_logits[:, 0] > 0
                logits = torch.where(present[:, None, None], logits, torch.full_like(logits, -1e9))
                best, index = logits.max(dim=0)
                ids = torch.tensor(r.obj_ids)[index].numpy().astype(np.uint32)
                labels[r.frame] = np.where(best.numpy() > 0, ids, 0)
    return labels


def test_frame_input_is_the_official_resize(stack):
    """uint8 RGB: Pillow bicubic to the square canvas, /255, ImageNet mean/std (sam2.utils.misc);
    checked against sam2 1.1.0 by hand: max abs diff 0.0 on a 70 × 90 frame."""
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 256, size=(30, 50, 3), dtype=np.uint8)
    ours = sam2_frame_input(rgb, 128)
    ref = np.asarray(Image.fromarray(rgb).resize((128, 128))) / 255.0
    ref = (
        torch.from_numpy(ref).float().permute(2, 0, 1) - torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    ) / (torch.tensor([0.229, 0.224, 0.225])[:, None, None])
    assert ours.shape == (1, 3, 128, 128)
    assert torch.equal(ours[0], ref)


def test_engine_equals_tracker_by_hand(model, stack):
    box = np.array([[2, 12, 16, 3, 29, 35]], dtype=float)  # on frame 2
    point = np.array([[4, 20, 32]], dtype=float)  # a second object on frame 4
    ours = propagate_memory(stack, boxes=box, points=point, model=model)
    height, width = SHAPE[1:]
    scale = np.array([128 / width, 128 / height])
    corners = boxes_rc_to_xyxy(box[0, [1, 2, 4, 5]]).reshape(2, 2) * scale
    xy = points_rc_to_xy(point[:, 1:]) * scale
    prompts = [
        Prompt(1, 2, box=torch.tensor(corners.reshape(4), dtype=torch.float32)),
        Prompt(2, 4, points=torch.tensor(xy, dtype=torch.float32), labels=torch.tensor([1])),
    ]
    expected = _by_hand(model, stack, prompts, start=2)
    assert ours.labels.dtype == np.uint32 and ours.labels.shape == SHAPE
    np.testing.assert_array_equal(ours.labels, expected)
    assert ours.seeds == {1: [2], 2: [4]}
    assert ours.frames_tracked == 3 + 3  # 2, 3, 4 forward; 2, 1, 0 backward
    assert set(np.unique(ours.labels)) <= {0, 1, 2} and (ours.labels == 1).any()


def test_store_resumes_and_is_reused(model, stack, tmp_path):
    cache = tmp_path / "frames.zarr"
    frames = open_frames(stack, model, cache=cache)
    steps = iter_compute_frames(frames)
    for done, _total in steps:  # interrupted after two frames
        if done == 2:
            steps.close()
            break
    assert frames.store is not None and frames.store.done().tolist() == [True, True, False, False, False]
    again = open_frames(stack, model, cache=cache)
    run_steps(iter_compute_frames(again))
    assert again.encoder_calls == 3 and again.store is not None and again.store.done().all()
    # float16 store: the propagation reads its features back; a changed frame is recomputed
    changed = stack.copy()
    changed[1] += 1
    third = open_frames(changed, model, cache=cache)
    third(0), third(1)
    assert third.encoder_calls == 1
    stored = open_frames(None, model, cache=cache)  # the store alone
    result = propagate_memory(None, seeds(stack), frames=stored)
    assert result.labels.shape == SHAPE and stored.encoder_calls == 0


def seeds(stack):
    labels = np.zeros(stack.shape, dtype=np.int32)
    labels[1, 14:26, 15:28] = 7
    return labels


def test_seed_labels_keep_their_ids_and_bounded_memory(model, stack):
    inputs = _inputs(model, stack)
    source = Counting(model, inputs)
    frames = open_frames(stack, model)
    frames.__dict__["_load"] = lambda z: source(z)  # count what the engine holds
    result = propagate_memory(stack, seeds(stack), frames=frames, z_range=(0, 4), memory_dtype="float32")
    assert result.seeds == {7: [1]}
    assert set(np.unique(result.labels)) <= {0, 7}
    assert not result.labels[4].any()  # outside z_range
    assert source.peak <= 3  # the frames kept (2) and the one being loaded, whatever the stack's length


def test_stop_after_absent(model, stack):
    absent = build_sam(tiny_test_config())
    absent.load_state_dict(model.state_dict())
    with torch.no_grad():
        absent.sam_mask_decoder.pred_obj_score_head.layers[2].bias.sub_(40.0)
    result = propagate_memory(
        stack, points=[[0, 20, 20]], model=absent.eval(), stop_after_absent=1, progress=None
    )
    assert result.stops == {(1, "forward"): 1}
    assert result.frames_tracked == 1  # frame 0 (absent everywhere): stopped at once, no backward pass


def test_errors(model, stack, tmp_path):
    with pytest.raises(ValueError, match="z_range"):
        propagate_memory(stack, points=[[0, 20, 20]], model=model, z_range=(1, 9))
    with pytest.raises(ValueError, match="outside t_range"):
        propagate_memory(stack, points=[[0, 20, 20]], model=model, t_range=(1, 3))
    with pytest.raises(ValueError, match="not both"):
        propagate_memory(stack, points=[[0, 20, 20]], model=model, z_range=(0, 2), t_range=(0, 2))
    with pytest.raises(ValueError, match="stop_after_absent"):
        propagate_memory(stack, points=[[0, 20, 20]], model=model, stop_after_absent=0)
    sam1_cache = tmp_path / "sam1.zarr"  # the root record of a SAM 1 cache is what tells it
    sam1_cache.mkdir()
    record = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {"napari_sam_embeddings": {"format_version": 1}},
    }
    (sam1_cache / "zarr.json").write_text(json.dumps(record))
    with pytest.raises(CacheMismatchError, match="SAM 1 embedding cache"):
        propagate_memory(stack, points=[[0, 20, 20]], model=model, cache=sam1_cache)
    store = tmp_path / "frames.zarr"
    open_frames(stack, model, cache=store)(0)
    with pytest.raises(CacheMismatchError, match="image"):
        open_frames(stack[:3], model, cache=store)
    with pytest.raises(MissingSliceError, match="frames \\[3\\]"):
        propagate_memory(None, points=[[3, 20, 20]], frames=open_frames(None, model, cache=store))
    with pytest.raises(ValueError, match="SAM 1 model"):
        propagate_memory(stack, points=[[0, 20, 20]], model="nano", device="cpu")
    assert SAM2_FRAMES_KEY in (store / "zarr.json").read_text()
    # a SAM 1 cache never takes, clears or overwrites a SAM 2 frame store (not even with overwrite)
    before = sorted(p.name for p in store.iterdir())
    for overwrite in (False, True):
        with pytest.raises(CacheMismatchError, match="holds a SAM 2 frame store"):
            ns.compute_embeddings(stack[0], "nano", cache=store, overwrite=overwrite)
    assert sorted(p.name for p in store.iterdir()) == before
    assert open_frames(None, model, cache=store).store.done()[0]  # still readable, frame 0 kept


def test_segment_with_sam2(model, stack):
    labels = ns.segment(
        stack, boxes=[[2, 12, 16, 3, 29, 35]], points=[[4, 20, 40]], model=model, device="cpu"
    )
    assert labels.shape == SHAPE and labels.dtype == np.uint32
    assert set(np.unique(labels)) <= {0, 1, 2} and 1 in labels
    with pytest.raises(NotImplementedError, match="SAM 2 model"):
        ns.segment(stack[0], boxes=[[12, 16, 29, 35]], model=model, device="cpu")
    with pytest.raises(ValueError, match="propagate_options"):
        ns.segment(
            stack, boxes=[[2, 12, 16, 3, 29, 35]], model=model, propagate_options={"iou_threshold": 0.3}
        )
    with pytest.raises(ValueError, match="object_size"):
        ns.segment(stack, boxes=[[2, 12, 16, 3, 29, 35]], model=model, object_size=20)


def test_propagate_follows_a_sam2_model_with_its_memory(model, stack):
    from napari_sam.engine.volume.memory_propagation import MemoryPropagationResult

    box = [[2, 12, 16, 3, 29, 35]]
    result = ns.propagate(stack, boxes=box, model=model, device="cpu")
    assert isinstance(result, MemoryPropagationResult) and result.seeds == {1: [2]}
    direct = propagate_memory(stack, boxes=box, model=model, device="cpu")
    np.testing.assert_array_equal(result.labels, direct.labels)
    with pytest.raises(ValueError, match="min_contrast, prompt: options of SAM 1 propagation"):
        ns.propagate(stack, boxes=box, model=model, min_contrast=0.2, prompt="box")
    with pytest.raises(ValueError, match="image: options of SAM 1"):
        ns.propagate(stack, boxes=box, model=model, image=stack)
    same = ns.propagate(stack, boxes=box, model=model, prompt=["box", "mask"], min_area=4)  # defaults
    np.testing.assert_array_equal(same.labels, result.labels)


def test_bfloat16_precision_keeps_the_labels(model, stack):
    box = np.array([[2, 12, 16, 3, 29, 35]], dtype=float)
    exact = propagate_memory(stack, boxes=box, model=model)
    fast = propagate_memory(stack, boxes=box, model=model, precision="bfloat16")
    agree = float(((exact.labels > 0) == (fast.labels > 0)).mean())
    assert agree > 0.98 and (fast.labels == 1).any()
    via_segment = ns.segment(stack, boxes=box, model=model, propagate_options={"precision": "bfloat16"})
    np.testing.assert_array_equal(via_segment, fast.labels)
    # segment()'s own precision names the same choice for a SAM 2 model (never silently ignored)
    np.testing.assert_array_equal(ns.segment(stack, boxes=box, model=model, precision="bf16"), fast.labels)
    np.testing.assert_array_equal(ns.segment(stack, boxes=box, model=model, precision="fp32"), exact.labels)
    with pytest.raises(ValueError, match="precision='fp16' does not apply to a SAM 2 model"):
        ns.segment(stack, boxes=box, model=model, precision="fp16")
    with pytest.raises(ValueError, match="disagree"):
        ns.segment(
            stack, boxes=box, model=model, precision="bf16", propagate_options={"precision": "float32"}
        )
    with pytest.raises(ValueError, match="precision must be 'float32' or 'bfloat16'"):
        propagate_memory(stack, boxes=box, model=model, precision="float16")
