"""Qt / magicgui widgets of the napari plugin. Each drives a plain object from :mod:`napari_sam._napari`."""

from __future__ import annotations

from .annotator import AnnotatorWidget
from .embeddings import EmbeddingWidget

__all__ = ["AnnotatorWidget", "EmbeddingWidget"]
