"""The instance decoder's maps of one image: :func:`predict_maps`.

The instance decoder (:class:`~napari_sam.model.InstanceDecoder`, micro-sam's AIS decoder) turns an image
embedding into three per-pixel maps in ``[0, 1]`` at the image's size: foreground probability, distance
to the object's centre, distance to the object's boundary. :func:`~napari_sam.engine.automatic.ais.
ais_labels` turns them into labels.

A large image embedded in overlapping tiles (:class:`~napari_sam.engine.types.TiledEmbeddings`) is
decoded tile by tile; each tile gives the maps of its *core* (the tile less the half of each overlap
nearest its edge: every pixel lies in exactly one core, at least ``halo`` pixels from the edge of its
tile), pasted into image-sized maps. The watershed then runs once over the whole image, so an object
crossing a tile border is one object.

A tile's maps are those of the tile decoded as an image of its own. They are not exactly the maps the
whole image would give even far from the tile's edge: micro-sam's decoder normalises each canvas as a
whole (instance norm, padding included) and an encoder sees the tile's edge from afar (nano's receptive
field is ~570 canvas pixels), so maps can step at a core border.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ...model import InstanceDecoder, Sam
from ..types import Embeddings, TiledEmbeddings

__all__ = ["TILE_BATCH", "decoder_of", "predict_maps"]

#: Tiles decoded together (the full-resolution decoder holds ~0.5 GB of activations per 1024² tile).
TILE_BATCH = 4

#: The maps' channels, in order.
MAP_CHANNELS = ("foreground", "center_distance", "boundary_distance")


def decoder_of(sam: Sam, decoder: InstanceDecoder | None = None) -> InstanceDecoder:
    """``decoder``, else ``sam``'s instance decoder; ValueError when there is none.

    Raises
    ------
    ValueError
        Neither ``decoder`` nor ``sam.instance_decoder`` is an instance decoder.
    TypeError
        ``sam`` is not a :class:`~napari_sam.model.Sam`, or ``decoder`` not an instance decoder.
    """
    if not isinstance(sam, Sam):
        raise TypeError(f"sam must be a Sam model, got {type(sam).__name__}")
    if decoder is None:
        decoder = getattr(sam, "instance_decoder", None)
        if decoder is None:
            raise ValueError(
                f"model {sam.name!r} has no instance decoder; use mode='amg' or a model with one"
            )
    if not isinstance(decoder, InstanceDecoder):
        raise TypeError(f"decoder must be an InstanceDecoder, got {type(decoder).__name__}")
    return decoder


def predict_maps(
    sam: Sam, embeddings: Embeddings | TiledEmbeddings, *, decoder: InstanceDecoder | None = None
) -> np.ndarray:
    """The instance decoder's foreground, centre-distance and boundary-distance maps of one 2D image.

    Runs without autograd on the decoder's device (``sam``'s, when it is ``sam``'s decoder), in float32
    whatever the features' dtype (a float16 cache's, a bfloat16 encoder's).

    Parameters
    ----------
    sam
        The model whose image encoder computed ``embeddings``.
    embeddings
        :class:`~napari_sam.engine.types.Embeddings` of one image, or the
        :class:`~napari_sam.engine.types.TiledEmbeddings` of a large one (see the module docstring).
    decoder
        The instance decoder to use; None: ``sam.instance_decoder``.

    Returns
    -------
    np.ndarray
        ``(3, H, W)`` float32 in ``[0, 1]``, ``(H, W)`` the image's ``(rows, cols)``: channel 0
        foreground, 1 centre distance, 2 boundary distance (micro-sam's order).

    Raises
    ------
    ValueError
        No instance decoder; features whose channels are not the decoder's ``embed_dim``.
    TypeError
        ``embeddings`` of another kind; ``sam`` or ``decoder`` of the wrong type.
    """
    dec = decoder_of(sam, decoder)
    if isinstance(embeddings, TiledEmbeddings):
        return _tiled_maps(dec, embeddings)
    if isinstance(embeddings, Embeddings):
        return _decode_same_size(dec, [embeddings])[0]
    raise TypeError(f"embeddings must be Embeddings or TiledEmbeddings, got {type(embeddings).__name__}")


def _device(module: nn.Module) -> torch.device:
    for param in module.parameters():
        return param.device
    return torch.device("cpu")


def _decode_same_size(decoder: InstanceDecoder, group: Sequence[Embeddings]) -> np.ndarray:
    """``(B, 3, H, W)`` float32 maps of embeddings sharing ``input_size`` and ``original_size``."""
    first = group[0]
    embed_dim = decoder.config.embed_dim
    for emb in group:
        if emb.features.ndim != 4 or emb.features.shape[:2] != (1, embed_dim):
            raise ValueError(
                f"embeddings must have features of shape (1, {embed_dim}, h, w) for this instance decoder, "
                f"got {tuple(emb.features.shape)}"
            )
    device = _device(decoder)
    features = torch.cat([emb.features.to(device=device, dtype=torch.float32) for emb in group])
    with torch.inference_mode(), torch.autocast(device.type, enabled=False):
        maps = decoder(features, tuple(first.input_size), tuple(first.original_size))
    return maps.float().cpu().numpy()


def _tiled_maps(decoder: InstanceDecoder, tiled: TiledEmbeddings) -> np.ndarray:
    """Image-sized maps from every tile's core, tiles of one geometry decoded ``TILE_BATCH`` at a time."""
    rows, cols = tiled.original_size
    out = np.zeros((3, rows, cols), dtype=np.float32)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)  # a tile's geometry follows its shape
    for i, window in enumerate(tiled.windows):
        groups[window.shape].append(i)
    for indices in groups.values():
        for start in range(0, len(indices), TILE_BATCH):
            batch = indices[start : start + TILE_BATCH]
            maps = _decode_same_size(decoder, [tiled.tiles[i] for i in batch])
            for tile_maps, i in zip(maps, batch, strict=True):
                r0, c0, _, _ = tiled.windows[i].bounds
                cr0, cc0, cr1, cc1 = tiled.windows[i].core
                out[:, cr0:cr1, cc0:cc1] = tile_maps[:, cr0 - r0 : cr1 - r0, cc0 - c0 : cc1 - c0]
    return out
