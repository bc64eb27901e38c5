"""Structurally damaged embedding caches: a missing array folder, a hand-edited tiling record.

A cache copied only in part (an array folder missing) or whose ``tiling`` record was edited by hand
must be refused with a :class:`~napari_sam.errors.CacheMismatchError` (its subclass
:class:`~napari_sam.errors.CorruptCacheError` for missing or malformed arrays) that names the cache,
what is wrong and how to rebuild it — never a ``KeyError`` / ``IndexError`` from deep inside — and
``overwrite=True`` rebuilds it.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.engine.embed.store import open_store
from napari_sam.errors import CacheMismatchError, CorruptCacheError, CorruptSliceError, MissingSliceError
from napari_sam.model.registry import NANO_SHA256
from tests.conftest import GOLDEN, Golden

TILE = (128, 16)


@pytest.fixture(scope="module")
def model() -> Any:
    return Golden(GOLDEN / "small_a").model()


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    rng = np.random.default_rng(5)
    vol = rng.normal(300, 20, (3, 32, 40))
    vol[:, 8:20, 10:28] += 2000
    return np.clip(vol, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def large() -> np.ndarray:
    """300 × 260: nine tiles of 128 pixels."""
    rng = np.random.default_rng(6)
    img = rng.normal(400, 30, (300, 260))
    img[100:150, 80:180] += 4000
    return np.clip(img, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def caches(tmp_path_factory, model, stack, large) -> dict[str, Path]:
    """Good caches to copy: a stack (all done), a tiled image (done), a tiled stack (nothing done)."""
    folder = tmp_path_factory.mktemp("good_caches")
    out = {"stack": folder / "stack.zarr", "tiled": folder / "tiled.zarr", "tiled_empty": folder / "te.zarr"}
    ns.compute_embeddings(stack, model, cache=out["stack"])
    ns.compute_embeddings(large, model, tile=TILE, cache=out["tiled"])
    ns.compute_embeddings(np.stack([large, large]), model, tile=TILE, cache=out["tiled_empty"], slices=[])
    return out


def _copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


def _features(emb: Any) -> np.ndarray:
    if isinstance(emb, ns.TiledEmbeddings):
        return np.stack([emb[i].features.cpu().numpy() for i in range(len(emb))])
    return emb.features.cpu().numpy()


# ------------------------------------------------------------------------------- a missing array folder


@pytest.mark.parametrize(
    "name",
    ["done", "embeddings", "slice_hash", "input_size", "original_size", "contrast_limits", "limit_residuals"],
)
def test_a_missing_array_names_the_cache_the_array_and_overwrite(tmp_path, caches, model, stack, name):
    cache = _copy(caches["stack"], tmp_path / "copy.zarr")
    shutil.rmtree(cache / name)
    pattern = re.compile(rf"{re.escape(str(cache))}.*'{name}'.*missing.*--overwrite.*overwrite=True", re.S)
    with pytest.raises(CorruptCacheError, match=pattern):
        ns.open_embeddings(cache, model)
    with pytest.raises(CorruptCacheError, match=pattern):
        ns.compute_embeddings(stack, model, cache=cache)
    assert not (cache / name).exists()  # refused, not silently rebuilt
    rebuilt = ns.compute_embeddings(stack, model, cache=cache, overwrite=True)
    fresh = ns.compute_embeddings(stack, model, cache=tmp_path / "fresh.zarr")
    for z in range(len(stack)):
        np.testing.assert_array_equal(_features(rebuilt[z]), _features(fresh[z]))
    assert ns.open_embeddings(cache, model).is_complete


def test_a_missing_tile_done_array_of_a_tiled_cache(tmp_path, caches, model, large):
    cache = _copy(caches["tiled"], tmp_path / "copy.zarr")
    shutil.rmtree(cache / "tile_done")
    with pytest.raises(CorruptCacheError, match=r"'tile_done'.*missing"):
        ns.compute_embeddings(large, model, tile=TILE, cache=cache)
    rebuilt = ns.compute_embeddings(large, model, tile=TILE, cache=cache, overwrite=True)
    assert len(rebuilt) == 9


def test_an_array_of_the_wrong_shape_is_refused(tmp_path, caches, model):
    import zarr

    cache = _copy(caches["stack"], tmp_path / "copy.zarr")
    shutil.rmtree(cache / "done")
    zarr.create_array(str(cache / "done"), shape=(7,), chunks=(1,), dtype="bool", fill_value=False)
    with pytest.raises(CorruptCacheError, match=r"'done'.*shape \(7,\).*\(3,\)"):
        ns.open_embeddings(cache, model)


def test_a_damaged_array_record_is_refused(tmp_path, caches, model):
    cache = _copy(caches["stack"], tmp_path / "copy.zarr")
    (cache / "slice_hash" / "zarr.json").write_text("{not json")
    with pytest.raises(CorruptCacheError, match=r"'slice_hash'.*overwrite"):
        ns.open_embeddings(cache, model)


# ------------------------------------------------------------------------ a hand-edited tiling record


def _edit_tiling(cache: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    doc = json.loads((cache / "zarr.json").read_text())
    edit(doc["attributes"]["napari_sam_embeddings"]["tiling"])
    (cache / "zarr.json").write_text(json.dumps(doc))


EDITS = {
    "fewer-windows": lambda t: t.update(windows=t["windows"][:4], cores=t["cores"][:4]),
    "more-windows": lambda t: t.update(windows=t["windows"] * 2, cores=t["cores"] * 2),
    "fewer-cores": lambda t: t.update(cores=t["cores"][:3]),
    "windows-a-string": lambda t: t.update(windows="0,0,128,128"),
    "a-window-of-three-values": lambda t: t["windows"].__setitem__(0, [0, 0, 128]),
    "a-window-of-strings": lambda t: t["windows"].__setitem__(0, ["0", "0", "128", "128"]),
    "a-moved-window": lambda t: t["windows"].__setitem__(1, [0, 60, 128, 188]),
    "tile-size-a-string": lambda t: t.update(tile_size="128"),
    "tile-size-changed": lambda t: t.update(tile_size=100),
    "negative-halo": lambda t: t.update(halo=-3),
    "empty-record": lambda t: t.clear(),
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_an_edited_tiling_record_is_a_cache_mismatch(tmp_path, caches, model, large, edit):
    cache = _copy(caches["tiled"], tmp_path / "copy.zarr")
    _edit_tiling(cache, edit)
    pattern = re.compile(rf"{re.escape(str(cache))}.*tiling record.*overwrite", re.S)
    with pytest.raises(CacheMismatchError, match=pattern):
        ns.predict(ns.open_embeddings(cache, model), box=[[100, 80, 150, 180]])
    with pytest.raises(CacheMismatchError, match=pattern):
        ns.compute_embeddings(large, model, tile=TILE, cache=cache)
    rebuilt = ns.compute_embeddings(large, model, tile=TILE, cache=cache, overwrite=True)
    assert len(rebuilt) == 9 and open_store(cache).n_tiles == 9


def test_an_edited_tiling_record_of_an_unfinished_cache_is_refused_before_writing(
    tmp_path, caches, model, large
):
    """Resuming a tiled cache whose record lists fewer windows than its arrays hold (an IndexError)."""
    cache = _copy(caches["tiled_empty"], tmp_path / "copy.zarr")
    _edit_tiling(cache, EDITS["fewer-windows"])
    with pytest.raises(CacheMismatchError, match=r"tiling record.*9 tiles"):
        ns.compute_embeddings(np.stack([large, large]), model, tile=TILE, cache=cache)
    assert not open_store(caches["tiled_empty"]).done_mask().any()


# --------------------------------------------------------------- caches from before limit_residuals


def _as_before_limit_residuals(cache: Path) -> None:
    """Make ``cache`` look as an older napari-sam wrote it: no residuals array, no ``exact_limits``."""
    shutil.rmtree(cache / "limit_residuals")
    doc = json.loads((cache / "zarr.json").read_text())
    del doc["attributes"]["napari_sam_embeddings"]["exact_limits"]
    (cache / "zarr.json").write_text(json.dumps(doc))


def test_a_cache_from_before_limit_residuals_is_still_read(tmp_path, caches, model, large):
    cache = _copy(caches["tiled"], tmp_path / "copy.zarr")
    _as_before_limit_residuals(cache)
    reused = ns.compute_embeddings(large, model, tile=TILE, cache=cache)
    np.testing.assert_array_equal(_features(reused), _features(ns.open_embeddings(caches["tiled"])))
    assert not (cache / "limit_residuals").exists()  # reused as it is, not rebuilt
    ns.predict(ns.open_embeddings(cache, model), box=[60, 40, 250, 220])  # spans tiles


def test_a_cache_from_before_limit_residuals_refuses_limits_it_cannot_hold(tmp_path, model, large):
    """Its rounded record would normalise windows unlike the tiles: rebuilt only with overwrite."""
    image = large.astype(np.uint64) + np.uint64(2**64 - 70000)
    cache = tmp_path / "old.zarr"
    ns.compute_embeddings(np.stack([image, image]), model, tile=TILE, cache=cache, slices=[])
    _as_before_limit_residuals(cache)
    with pytest.raises(CacheMismatchError, match=r"older napari-sam.*2\*\*53.*overwrite=True"):
        ns.compute_embeddings(np.stack([image, image]), model, tile=TILE, cache=cache)
    assert not open_store(cache).done_mask().any()
    ns.compute_embeddings(np.stack([image, image]), model, tile=TILE, cache=cache, overwrite=True)
    assert open_store(cache).exact_limits and open_store(cache).is_complete


# ------------------------------------------------------------------ a lost chunk of a finished slice


def _lose_chunk(cache: Path, name: str) -> None:
    """Delete the first chunk file of array ``name`` (slice 0): it then reads as its fill value."""
    chunk = min(p for p in (cache / name / "c").rglob("*") if p.is_file())
    chunk.unlink()


def _first_slice(cache: Path, model: Any) -> Any:
    """Slice 0 of the cache, opened without the image."""
    emb = ns.open_embeddings(cache, model)
    return emb[0] if isinstance(emb, ns.VolumeEmbeddings) else emb


@pytest.mark.parametrize("name", ["input_size", "original_size", "contrast_limits", "limit_residuals"])
@pytest.mark.parametrize("kind", ["stack", "tiled"])
def test_a_lost_chunk_of_a_done_slice_is_a_corrupt_slice(tmp_path, caches, model, stack, large, kind, name):
    """Sizes read as 0 and limits as NaN: refused when opened, recomputed when the image is at hand."""
    cache = _copy(caches[kind], tmp_path / "copy.zarr")
    _lose_chunk(cache, name)
    with pytest.raises(CorruptSliceError, match=rf"slice 0 .*{re.escape(str(cache))}.*{name}"):
        _first_slice(cache, model)
    image, kwargs = (stack, {}) if kind == "stack" else (large, {"tile": TILE})
    ns.compute_embeddings(image, model, cache=cache, **kwargs)
    ns.compute_embeddings(image, model, cache=tmp_path / "fresh.zarr", **kwargs)
    again, fresh = _first_slice(cache, model), _first_slice(tmp_path / "fresh.zarr", model)
    np.testing.assert_array_equal(_features(again), _features(fresh))
    tiles = again.tiles if kind == "tiled" else [again]
    assert all(min(t.input_size) > 0 and min(t.original_size) > 0 for t in tiles)


@pytest.mark.parametrize("name", ["input_size", "contrast_limits"])
def test_segment_recomputes_a_slice_with_a_lost_chunk(tmp_path, caches, model, large, name):
    """One object inside a tile; one taller than a tile, embedded from its own window with the limits."""
    box = [[40, 30, 90, 100], [20, 100, 280, 160]]
    cache = _copy(caches["tiled"], tmp_path / "copy.zarr")
    want = ns.segment(large, boxes=box, model=model, tile=TILE, cache=cache)
    assert want.any()
    _lose_chunk(cache, name)
    np.testing.assert_array_equal(ns.segment(large, boxes=box, model=model, tile=TILE, cache=cache), want)


# ------------------------------------------------------------------ other files in a cache folder


@pytest.mark.parametrize("root", ["broken", "missing", "intact"])
def test_rebuilding_a_cache_folder_keeps_files_the_store_did_not_make(tmp_path, caches, model, stack, root):
    """A broken / missing root record with the lock file: the remains of a killed creation, rebuilt."""
    cache = _copy(caches["stack"], tmp_path / "copy.zarr")
    (cache / "notes.txt").write_text("precious")
    (cache / "figures").mkdir()
    (cache / "figures" / "a.png").write_bytes(b"png")
    if root == "broken":
        (cache / "zarr.json").write_text("{garbage")
    elif root == "missing":
        (cache / "zarr.json").unlink()
    ns.compute_embeddings(stack, model, cache=cache, overwrite=root == "intact")
    assert (cache / "notes.txt").read_text() == "precious"
    assert (cache / "figures" / "a.png").read_bytes() == b"png"
    assert open_store(cache).is_complete


# ------------------------------------------------------------------ a hand-edited root record


def _edit_record(cache: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    doc = json.loads((cache / "zarr.json").read_text())
    edit(doc["attributes"]["napari_sam_embeddings"])
    (cache / "zarr.json").write_text(json.dumps(doc))


RECORD_EDITS = {
    "preprocessing-removed": (lambda m: m.pop("preprocessing"), "preprocessing is None"),
    "image-size-a-string": (lambda m: m["model"].update(image_size="abc"), "model.image_size is 'abc'"),
    "model-removed": (lambda m: m.pop("model"), "model is None"),
    "model-name-of-another-model": (  # a nano cache renamed: would download vit_b to decode
        lambda m: m["model"].update(name="vit_b", weights_sha256=NANO_SHA256),
        "model.name is 'vit_b' but model.weights_sha256 is that of 'nano'",
    ),
    "weights-id-cut": (lambda m: m["model"].update(weights_sha256="3d700b35"), "model.weights_sha256 is"),
    "normalize-unknown": (
        lambda m: m["preprocessing"].update(normalize="zscore"),
        "preprocessing.normalize is 'zscore'",
    ),
    "shape-a-string": (lambda m: m["image"].update(shape="32x40"), "image.shape is '32x40'"),
    "cache-dtype-int8": (lambda m: m.update(cache_dtype="int8"), "cache_dtype is 'int8'"),
}


@pytest.mark.parametrize(("edit", "says"), RECORD_EDITS.values(), ids=RECORD_EDITS.keys())
def test_an_edited_root_record_is_refused_before_any_model_is_loaded(
    tmp_path, caches, model, stack, monkeypatch, edit, says
):
    from napari_sam.engine.embed import embeddings

    cache = _copy(caches["stack"], tmp_path / "copy.zarr")
    _edit_record(cache, edit)
    loaded = []
    monkeypatch.setattr(embeddings, "load_model", lambda *a, **k: loaded.append(a))
    pattern = re.compile(rf"{re.escape(str(cache))}.*damaged record: {re.escape(says)}.*overwrite=True", re.S)
    with pytest.raises(CorruptCacheError, match=pattern):
        ns.open_embeddings(cache, model)
    assert not loaded


@pytest.mark.parametrize("kind", ["stack", "tiled"])
def test_a_lost_done_flag_names_the_cache_the_flag_and_the_way_out(tmp_path, caches, model, kind):
    cache = _copy(caches[kind], tmp_path / "copy.zarr")
    _lose_chunk(cache, "done")
    pattern = re.compile(
        rf"{re.escape(str(cache))} is incomplete: .*slice 0.*'done' flag.*compute_embeddings", re.S
    )
    with pytest.raises(MissingSliceError, match=pattern) as info:
        _first_slice(cache, model)
    assert isinstance(info.value, LookupError) and isinstance(info.value, CorruptCacheError)


def test_a_renamed_model_is_not_a_damaged_record(tmp_path, caches, model):
    """Only a registered name with another registered model's weights is a contradiction."""
    cache = _copy(caches["stack"], tmp_path / "copy.zarr")
    _edit_record(cache, lambda m: m["model"].update(name="my nano", weights_sha256=NANO_SHA256))
    assert ns.open_embeddings(cache, model).shape == (3, 32, 40)
