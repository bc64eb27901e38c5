"""Shared inputs of the reliability battery: a tiny random model, small images, bad files and caches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tests.conftest import GOLDEN, Golden


@dataclass
class Env:
    """Everything a bad-input case may need; built once per session."""

    model: Any  # tiny random model (image size 256)
    other_model: Any  # another tiny random model (other weights)
    weights: Path  # official-format weights file of ``model``
    image: np.ndarray  # (48, 64) float32
    stack: np.ndarray  # (3, 32, 40) uint16
    emb: Any  # Embeddings of ``image`` with ``model``
    vol: Any  # VolumeEmbeddings of ``stack`` with ``model`` (computed lazily)
    files: Path  # folder of bad files (see ``env``)


@pytest.fixture(scope="session")
def env(tmp_path_factory) -> Env:
    import napari_sam as ns

    model = Golden(GOLDEN / "small_a").model()
    other = Golden(GOLDEN / "small_b").model()
    rng = np.random.default_rng(0)
    image = rng.random((48, 64), dtype=np.float32)
    image[10:30, 20:40] += 2.0
    stack = (rng.random((3, 32, 40)) * 1000).astype(np.uint16)
    files = tmp_path_factory.mktemp("bad_files")
    (files / "notes.txt").write_text("not an image\n")
    (files / "text.tif").write_text("this is not a tiff\n")
    (files / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (files / "garbage.npy").write_bytes(b"nonsense")
    (files / "folder").mkdir()
    (files / "folder" / "readme.md").write_text("a folder of other things\n")
    (files / "empty.zarr").mkdir()
    (files / "text.pth").write_text("not weights\n")
    (files / "text.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    good = files / "good.tif"
    tifffile.imwrite(good, (image * 100).astype(np.uint16))
    data = good.read_bytes()
    (files / "truncated.tif").write_bytes(data[: len(data) // 3])
    (files / "cut_header.tif").write_bytes(data[:6])
    np.save(files / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    emb = ns.compute_embeddings(image, model, cache=files / "image.zarr")
    ns.compute_embeddings(image, other, cache=files / "other_model.zarr")
    _damaged_copies(files / "image.zarr")
    ns.compute_embeddings(stack, model, cache=files / "empty_stack.zarr", slices=[])
    vol = ns.compute_embeddings(stack, model, slices=[])
    return Env(model, other, GOLDEN / "small_a" / "weights.pth", image, stack, emb, vol, files)


def _damaged_copies(cache: Path) -> None:
    """Copies of a good cache: unreadable metadata, a future format version, a damaged chunk."""
    import json
    import shutil

    garbage = shutil.copytree(cache, cache.with_name("garbage_meta.zarr"))
    (garbage / "zarr.json").write_text("{garbage")
    future = shutil.copytree(cache, cache.with_name("future_format.zarr"))
    meta = json.loads((future / "zarr.json").read_text())
    meta["attributes"]["napari_sam_embeddings"]["format_version"] = 99
    (future / "zarr.json").write_text(json.dumps(meta))
    damaged = shutil.copytree(cache, cache.with_name("damaged_chunk.zarr"))
    chunk = next(p for p in (damaged / "embeddings").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"xx")
