"""``napari-sam gui``: napari opens with sample data and the annotator docked."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._widgets.launch import open_viewer
from napari_sam.cli import main


def test_open_viewer_shows_sample_and_docks_annotator(gui, qtbot):
    viewer = open_viewer(sample="nuclei_2d", show=False)
    try:
        images = [layer for layer in viewer.layers if layer.__class__.__name__ == "Image"]
        assert len(images) == 1 and images[0].data.shape == (512, 512)
        assert np.asarray(images[0].data).max() > 0
        docked = [name for name in viewer.window.dock_widgets if "Annotator" in name]
        assert docked, list(viewer.window.dock_widgets)
    finally:
        viewer.close()


def test_open_viewer_rejects_unknown_sample():
    with pytest.raises(ValueError, match="sample must be one of"):
        open_viewer(sample="cells")


def test_gui_command_validates_sample(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gui", "--sample", "cells"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
