"""napari-sam: Segment Anything for microscopy — a napari plugin, a Python library and a batch CLI.

``import napari_sam`` is cheap: torch, napari and Qt are imported only when a function needs them.

>>> import napari_sam as ns                                   # doctest: +SKIP
>>> labels = ns.segment(image, boxes=[[10, 20, 60, 90]], model="vit_b")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name → module that defines it (imported on first use)
_LAZY = {
    "segment": "napari_sam.api",
    "train": "napari_sam.api",
    "load_model": "napari_sam.engine.loading",
    "export_model": "napari_sam.model.export",
    "compute_embeddings": "napari_sam.engine.embed.embeddings",
    "predict": "napari_sam.engine.decode.predict",
    "Embeddings": "napari_sam.engine.types.values",
    "VolumeEmbeddings": "napari_sam.engine.embed.embeddings",
    "open_embeddings": "napari_sam.engine.embed.embeddings",
    "TiledEmbeddings": "napari_sam.engine.types.tiles",
    "TileSpec": "napari_sam.engine.types.tiles",
    "Prediction": "napari_sam.engine.decode.plain",
    "automatic": "napari_sam.engine.automatic.front",
    "AutomaticResult": "napari_sam.engine.automatic.result",
    "propagate": "napari_sam.engine.volume.propagate",
    "PropagationResult": "napari_sam.engine.volume.propagate",
}

__all__ = [
    "AutomaticResult",
    "Embeddings",
    "Prediction",
    "PropagationResult",
    "TileSpec",
    "TiledEmbeddings",
    "VolumeEmbeddings",
    "__version__",
    "automatic",
    "compute_embeddings",
    "export_model",
    "load_model",
    "open_embeddings",
    "predict",
    "propagate",
    "segment",
    "train",
]

if TYPE_CHECKING:  # pragma: no cover
    from .api import segment, train
    from .engine.automatic.front import automatic
    from .engine.automatic.result import AutomaticResult
    from .engine.decode.plain import Prediction
    from .engine.decode.predict import predict
    from .engine.embed.embeddings import VolumeEmbeddings, compute_embeddings, open_embeddings
    from .engine.loading import load_model
    from .engine.types.tiles import TiledEmbeddings, TileSpec
    from .engine.types.values import Embeddings
    from .engine.volume.propagate import PropagationResult, propagate
    from .model.export import export_model


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_sam' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
