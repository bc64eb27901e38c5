"""``napari-sam gui --model NAME``: the annotator starts with that model chosen."""

from __future__ import annotations

from napari_sam._widgets.launch import open_viewer


def test_open_viewer_chooses_the_model(gui, qtbot):
    viewer = open_viewer(sample="nuclei_2d", show=False, model="vit_b_lm")
    try:
        docked = [widget for name, widget in viewer.window.dock_widgets.items() if "Annotator" in name]
        assert len(docked) == 1
        annotator = docked[0] if hasattr(docked[0], "embedding") else docked[0].widget()
        combo = annotator.embedding.model_combo
        assert combo.currentText() == "vit_b_lm"
        names = [combo.itemText(i) for i in range(combo.count())]
        assert names[:4] == ["nano", "vit_b", "vit_l", "vit_h"] and "vit_t_em_organelles" in names
    finally:
        viewer.close()
