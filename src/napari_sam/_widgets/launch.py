"""Open napari with an image (or our sample data) and the annotator docked: ``napari-sam gui``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PLUGIN = "napari-sam-pipeline"
SAMPLES = ("nuclei_2d", "nuclei_3d")
# dock widths in pixels: compact, so that the canvas keeps most of the window
ANNOTATOR_DOCK_WIDTH = 380
LAYER_DOCK_WIDTH = 240


def open_viewer(
    paths: Sequence[str] = (),
    *,
    sample: str | None = "nuclei_2d",
    show: bool = True,
    defer: bool = False,
    model: str | None = None,
) -> Any:
    """A napari viewer with ``paths`` opened (or the ``sample`` data when no path is given) and the
    Annotator widget docked on the right, the window fitted to the screen and the image to the canvas.

    Parameters
    ----------
    paths
        Image files to open (anything napari reads: tif, zarr, png …).
    sample
        ``"nuclei_2d"``, ``"nuclei_3d"`` or ``None``; used only when ``paths`` is empty.
    show
        Show the window (False for tests).
    defer
        Show the (empty) window first and open the images and the annotator once Qt's event loop
        runs, with a "loading" message in the status bar, so that the window is never a black
        rectangle while the model code is imported. :func:`run` uses it.
    model
        The model the annotator starts with (a name such as ``"vit_b_lm"`` or a weights path); None:
        its default (nano).

    Returns
    -------
    napari.Viewer
    """
    if sample is not None and sample not in SAMPLES:
        raise ValueError(f"sample must be one of {', '.join(SAMPLES)} or None, got {sample!r}")
    import napari

    viewer = napari.Viewer(title="napari-sam", show=show)
    if show:
        fit_window(viewer)
    if defer:
        from qtpy.QtCore import QTimer

        viewer.status = "napari-sam: loading the annotator …"
        QTimer.singleShot(0, lambda: _populate(viewer, paths, sample, model))
    else:
        _populate(viewer, paths, sample, model)
    return viewer


def _populate(viewer: Any, paths: Sequence[str], sample: str | None, model: str | None = None) -> None:
    """Open the images, dock the annotator (compact) with ``model`` chosen, fit the image to the canvas."""
    if paths:
        for path in paths:
            viewer.open(path)
    elif sample is not None:
        viewer.open_sample(PLUGIN, sample)
    dock, annotator = viewer.window.add_plugin_dock_widget(PLUGIN, "Annotator")
    if model is not None:
        annotator.embedding.model_combo.setCurrentText(model)
    _compact_docks(viewer, dock)
    _fit_image(viewer)
    viewer.status = "napari-sam: ready"


def _fit_image(viewer: Any) -> None:
    """Fit the image to the canvas once Qt has laid out the docks (the canvas size changes then)."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    viewer.reset_view()
    QTimer.singleShot(0, viewer.reset_view)


def fit_window(viewer: Any, *, fraction: float = 0.9) -> None:
    """Size the viewer's window to ``fraction`` of the free area of its screen and centre it.

    napari's first window takes its widgets' preferred size (about 1100 px wide whatever the screen,
    and taller than a 1000 px screen with a stack), which leaves the canvas a narrow strip.
    """
    from qtpy.QtWidgets import QApplication

    window = viewer.window._qt_window
    screen = window.screen() or QApplication.primaryScreen()
    if screen is None:
        return
    area = screen.availableGeometry()
    width, height = int(area.width() * fraction), int(area.height() * fraction)
    window.showNormal()
    window.resize(width, height)
    window.move(area.x() + (area.width() - width) // 2, area.y() + (area.height() - height) // 2)


def _compact_docks(viewer: Any, dock: Any) -> None:
    """Give the canvas the room: the annotator's dock and napari's layer docks at a compact width."""
    from qtpy.QtCore import Qt

    window = viewer.window._qt_window
    qt_viewer = viewer.window._qt_viewer
    left = [qt_viewer.dockLayerList, qt_viewer.dockLayerControls]
    window.resizeDocks(left, [LAYER_DOCK_WIDTH] * len(left), Qt.Orientation.Horizontal)
    window.resizeDocks([dock], [ANNOTATOR_DOCK_WIDTH], Qt.Orientation.Horizontal)


def run(paths: Sequence[str] = (), *, sample: str | None = "nuclei_2d", model: str | None = None) -> None:
    """:func:`open_viewer` (deferred loading), then napari's event loop until the window closes."""
    import napari

    open_viewer(paths, sample=sample, defer=True, model=model)
    napari.run()
