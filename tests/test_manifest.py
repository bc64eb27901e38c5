"""The npe2 manifest: the top-level napari.yaml is the one napari sees."""

from __future__ import annotations

from pathlib import Path

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
