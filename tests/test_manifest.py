"""The npe2 manifest: the top-level napari.yaml is the one napari sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_is_valid():
    manifest = npe2.PluginManifest.from_file(ROOT / "napari.yaml")
    assert manifest.name == "napari-sam-pipeline"


def test_installed_manifest_is_the_top_level_file():
    installed = npe2.PluginManifest.from_distribution("napari-sam-pipeline")
    top = npe2.PluginManifest.from_file(ROOT / "napari.yaml")
    assert installed.model_dump(exclude={"package_metadata"}) == top.model_dump(exclude={"package_metadata"})


def test_manifest_contributions_resolve():
    manifest = npe2.PluginManifest.from_file(ROOT / "napari.yaml")
    contributions = manifest.contributions
    widgets = {w.display_name for w in contributions.widgets}
    nodes = {"Segment from prompts (node)", "Segment everything (node)", "Embeddings to cache (node)"}
    assert {"Annotator", "Embeddings"} | nodes <= widgets
    assert {s.key for s in contributions.sample_data} == {"nuclei_2d", "nuclei_3d"}
    assert contributions.readers and contributions.writers
    for command in contributions.commands:
        if command.id.endswith(("annotator", "embeddings")):
            continue  # Qt widgets: resolved in the GUI tests
        assert callable(_resolve(command.python_name)), command.id


def _resolve(python_name: str):
    import importlib

    module, _, attr = python_name.partition(":")
    return getattr(importlib.import_module(module), attr)


def test_sample_data_layers():
    from napari_sam._sample_data import NUCLEI_2D, nuclei_2d_sample
    from napari_sam.data.synthetic import nuclei_2d

    (image, meta, kind), (truth, truth_meta, truth_kind) = nuclei_2d_sample()
    assert (kind, truth_kind) == ("image", "labels")
    assert image.shape == (512, 512) and image.dtype == np.uint16
    assert meta["name"] == "nuclei" and truth_meta["visible"] is False
    assert np.array_equal(truth, nuclei_2d(**NUCLEI_2D)[1])


def test_reader_owns_only_caches_and_ome_zarr(tmp_path, monkeypatch):
    from napari_sam._napari import embeddings

    monkeypatch.setattr(embeddings, "_OPENED_CACHES", {})  # what the reader remembers stays in this test
    from napari_sam import io
    from napari_sam._reader import get_reader, read_embedding_cache, read_project
    from napari_sam.nodes import compute_embeddings_to_cache

    tif = tmp_path / "plain.tif"
    io.write_labels(tif, np.ones((8, 8), np.uint8))
    assert get_reader(str(tif)) is None
    assert get_reader(str(tmp_path)) is None  # an ordinary folder
    assert get_reader([str(tif), str(tif)]) is None

    image = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    cache = tmp_path / "emb.zarr"
    compute_embeddings_to_cache(image, cache=cache)
    assert get_reader(str(cache)) is read_embedding_cache
    assert read_embedding_cache(str(cache)) == [(None,)]
    from napari_sam._napari.embeddings import EmbeddingSettings, cache_for

    assert cache_for((64, 64), EmbeddingSettings()) == str(cache)

    labels = np.zeros((64, 64), np.uint32)
    labels[10:20, 10:30] = 4
    zarr = pytest.importorskip("zarr")
    root = tmp_path / "project.zarr"
    group = zarr.open_group(str(root), mode="w")
    group.create_array("0", data=image)
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
                "datasets": [
                    {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}
                ],
            }
        ],
    }
    io.write_labels(root, labels, name="cells")
    assert get_reader(str(root)) is read_project
    layers = read_project(str(root))
    assert [kind for *_, kind in layers] == ["image", "labels"]
    assert np.array_equal(np.asarray(layers[0][0]), image)
    assert layers[1][1]["name"] == "cells" and np.array_equal(np.asarray(layers[1][0]), labels)


def test_readers_refuse_several_paths(tmp_path):
    # napari calls a reader only for the one path get_reader took; called directly with several, a
    # reader said nothing clear (Path(None))
    from napari_sam._reader import read_embedding_cache, read_project

    for reader in (read_embedding_cache, read_project):
        with pytest.raises(ValueError, match="one folder at a time"):
            reader([str(tmp_path), str(tmp_path)])


def test_writer_writes_labels_and_reads_back(tmp_path):
    from napari_sam import io
    from napari_sam._writer import write_labels

    labels = np.zeros((16, 16), np.uint32)
    labels[2:6, 3:9] = 7
    written = write_labels(str(tmp_path / "out.tif"), labels, {"name": "SAM labels"})
    assert written == [str(tmp_path / "out.tif")]
    assert np.array_equal(np.asarray(io.read_image(written[0])), labels)


def test_every_manifest_command_imports():
    pytest.importorskip("qtpy", reason="the widgets need a Qt binding")
    pytest.importorskip("napari")
    manifest = npe2.PluginManifest.from_file(ROOT / "napari.yaml")
    manifest.validate_imports()  # raises naming the first python_name that does not resolve
