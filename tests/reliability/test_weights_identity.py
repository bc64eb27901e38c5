"""The weights id of a model describes the weights it holds now, not the file it came from.

Issue 16, item 3: a model changed in place (an optimizer step, ``load_state_dict``, ``p.data.add_``)
used to keep its file's sha256, so an embedding cache computed with it was labelled as the shipped
model and reused by another process for ``model="nano"``; and ``load_model("nano")`` handed the
changed object back.
"""

from __future__ import annotations

import functools
import json
import textwrap
from collections.abc import Callable

import numpy as np
import pytest
import torch

from napari_sam.engine import loading
from napari_sam.engine.loading import load_model, model_weights_id
from napari_sam.engine.lru import LRU
from napari_sam.model import build_sam
from napari_sam.model.checkpoint import weights_fingerprint
from napari_sam.model.identity import state_tensors
from napari_sam.model.registry import NANO_SHA256, shipped_nano_path
from tests._faults import spawn

# ------------------------------------------------------------------------------------- the changes


def _optimizer_step(model: torch.nn.Module) -> None:
    """One SGD step of a real loss (weight decay of every parameter): every parameter moves."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss = sum((p.float() ** 2).sum() for p in model.parameters())
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _data_add(model: torch.nn.Module) -> None:
    """Through ``.data``: the parameter's version counter does not move."""
    first = next(model.parameters())
    first.data.add_(0.01)


def _load_other_state(model: torch.nn.Module) -> None:
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(state)


def _buffer_in_place(model: torch.nn.Module) -> None:
    """A BatchNorm running mean (a buffer, not a parameter) changed in place."""
    buffer = next(b for n, b in model.named_buffers() if n.endswith("running_mean"))
    with torch.no_grad():
        buffer.mul_(1.5)


CHANGES: dict[str, Callable[[torch.nn.Module], None]] = {
    "optimizer-step": _optimizer_step,
    "data-add": _data_add,
    "load-state-dict": _load_other_state,
    "buffer-in-place": _buffer_in_place,
}


@pytest.fixture
def fresh_models(monkeypatch):
    """An empty ``load_model`` cache for this test (it changes the objects it loads)."""
    monkeypatch.setattr(loading, "_CACHE", LRU(loading._CACHE.size))


@functools.cache
def _shipped_fingerprint() -> str:
    return weights_fingerprint(build_sam(shipped_nano_path()).state_dict())


# ------------------------------------------------------------------------------------- in one process


@pytest.mark.parametrize("change", list(CHANGES))
def test_weights_id_follows_an_in_place_change(fresh_models, change):
    model = load_model("nano", device="cpu")
    assert model_weights_id(model) == NANO_SHA256
    CHANGES[change](model)
    changed = model_weights_id(model)
    assert changed != NANO_SHA256
    assert changed == weights_fingerprint(state_tensors(model))  # the weights actually held


@pytest.mark.parametrize("change", list(CHANGES))
def test_load_model_does_not_hand_out_a_changed_model(fresh_models, change):
    model = load_model("nano", device="cpu")
    CHANGES[change](model)
    again = load_model("nano", device="cpu")
    assert again is not model
    assert weights_fingerprint(again.state_dict()) == _shipped_fingerprint()
    assert model_weights_id(again) == NANO_SHA256
    assert load_model("nano", device="cpu") is again  # the fresh copy is kept and shared again
    assert weights_fingerprint(model.state_dict()) != _shipped_fingerprint()  # the user's copy is theirs


def test_load_model_sees_values_swapped_inside_one_block(fresh_models):
    """Two values of one 4 KiB block swapped through ``.data``: the block's plain sum stays."""
    model = load_model("nano", device="cpu")
    weight = next(p for p in model.parameters() if p.is_contiguous() and p.numel() >= 2048)
    flat = weight.data.view(-1)
    first = flat[0].clone()
    flat[0] = flat[1]
    flat[1] = first
    assert model_weights_id(model) != NANO_SHA256
    assert load_model("nano", device="cpu") is not model


def test_unchanged_model_is_shared_and_keeps_the_file_id(fresh_models):
    model = load_model("nano", device="cpu")
    model.to(torch.float64).to(torch.float32)  # new tensors, same values
    assert model_weights_id(model) == NANO_SHA256
    assert load_model("nano", device="cpu") is model


def test_restoring_the_weights_restores_the_file_id(fresh_models):
    model = load_model("nano", device="cpu")
    original = {k: v.clone() for k, v in model.state_dict().items()}
    _optimizer_step(model)
    assert model_weights_id(model) != NANO_SHA256
    model.load_state_dict(original)
    assert model_weights_id(model) == NANO_SHA256


def test_predict_refuses_embeddings_made_before_the_model_changed(fresh_models):
    import napari_sam as ns

    model = load_model("nano", device="cpu")
    image = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    embeddings = ns.compute_embeddings(image, model)
    ns.predict(embeddings, points=[[32, 32]])  # fine before the change
    _optimizer_step(model)
    with pytest.raises(ValueError, match="not the model these embeddings were computed with"):
        ns.predict(embeddings, points=[[32, 32]])


def test_models_differing_only_in_pixel_mean_get_different_ids(fresh_models, tmp_path):
    """``pixel_mean`` is a non-persistent buffer: not in ``state_dict()``, yet it changes the input."""
    import napari_sam as ns
    from napari_sam.errors import CacheMismatchError

    brighter, darker = loading.open_model("nano"), loading.open_model("nano")
    with torch.no_grad():
        brighter.pixel_mean.add_(40.0)
        darker.pixel_mean.sub_(40.0)
    assert model_weights_id(brighter) != model_weights_id(darker)
    assert NANO_SHA256 not in (model_weights_id(brighter), model_weights_id(darker))
    image = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    ns.compute_embeddings(image, brighter, device="cpu", cache=tmp_path / "c.zarr")
    with pytest.raises(CacheMismatchError, match="model weights"):
        ns.compute_embeddings(image, darker, device="cpu", cache=tmp_path / "c.zarr")


# ------------------------------------------------------------------------------------- two processes

FINE_TUNE_AND_CACHE = """
    import sys
    import numpy as np
    import torch
    import napari_sam as ns
    from tests.reliability.test_weights_identity import CHANGES

    change, folder = sys.argv[1], sys.argv[2]
    image = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    np.save(folder + "/image.npy", image)
    model = ns.load_model("nano", device="cpu")
    CHANGES[change](model)
    ns.compute_embeddings(image, model, cache=folder + "/cache.zarr")
    print("written")
"""

OPEN_AS_NANO = """
    import sys
    import numpy as np
    import napari_sam as ns
    from napari_sam.errors import CacheMismatchError

    folder = sys.argv[1]
    image = np.load(folder + "/image.npy")
    try:
        ns.compute_embeddings(image, "nano", device="cpu", cache=folder + "/cache.zarr")
    except CacheMismatchError as exc:
        print("compute_embeddings refused:", exc)
    else:
        print("compute_embeddings reused the cache")
    embeddings = ns.open_embeddings(folder + "/cache.zarr")
    try:
        ns.predict(embeddings, points=[[32, 32]])
    except ValueError as exc:
        print("predict refused:", exc)
    else:
        print("predict used the cache")
"""


def _run(code: str, tmp_path, *args: str) -> str:
    """Run ``code`` in a new Python process with ``args`` as its ``sys.argv[1:]``; its stdout."""
    prefix = f"import sys\nsys.argv[1:] = {list(args)!r}\n"
    proc = spawn(prefix + textwrap.dedent(code), tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out


@pytest.mark.parametrize("change", ["optimizer-step", "data-add"])
def test_cache_of_a_changed_nano_is_not_taken_for_nano_in_another_process(tmp_path, change):
    assert "written" in _run(FINE_TUNE_AND_CACHE, tmp_path, change, str(tmp_path))
    attrs = json.loads((tmp_path / "cache.zarr" / "zarr.json").read_text())["attributes"]
    recorded = attrs["napari_sam_embeddings"]["model"]["weights_sha256"]
    assert recorded != NANO_SHA256  # labelled with the weights used, not the shipped file

    out = _run(OPEN_AS_NANO, tmp_path, str(tmp_path))
    assert "compute_embeddings refused:" in out and "model weights" in out, out
    assert "predict refused:" in out, out
