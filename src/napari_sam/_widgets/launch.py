"""Open napari with an image (or our sample data) and the annotator docked: ``napari-sam gui``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PLUGIN = "napari-sam-pipeline"
SAMPLES = ("nuclei_2d", "nuclei_3d")


def open_viewer(paths: Sequence[str] = (), *, sample: str | None = "nuclei_2d", show: bool = True) -> Any:
    """A napari viewer with ``paths`` opened (or the ``sample`` data when no path is given) and the
    Annotator widget docked on the right.

    Parameters
    ----------
    paths
        Image files to open (anything napari reads: tif, zarr, png …).
    sample
        ``"nuclei_2d"``, ``"nuclei_3d"`` or ``None``; used only when ``paths`` is empty.
    show
        Show the window (False for tests).

    Returns
    -------
    napari.Viewer
    """
    if sample is not None and sample not in SAMPLES:
        raise ValueError(f"sample must be one of {', '.join(SAMPLES)} or None, got {sample!r}")
    import napari

    viewer = napari.Viewer(title="napari-sam", show=show)
    if paths:
        for path in paths:
            viewer.open(path)
    elif sample is not None:
        viewer.open_sample(PLUGIN, sample)
    viewer.window.add_plugin_dock_widget(PLUGIN, "Annotator")
    return viewer


def run(paths: Sequence[str] = (), *, sample: str | None = "nuclei_2d") -> None:
    """:func:`open_viewer`, then napari's event loop until the window closes."""
    import napari

    open_viewer(paths, sample=sample)
    napari.run()
