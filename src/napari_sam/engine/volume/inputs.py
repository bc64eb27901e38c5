"""Propagation's arguments checked and made ready: the stack's embeddings, slice numbers, the seed labels.

Every function here raises ValueError (TypeError for a wrong kind of object) with a message that
names the argument, before any slice is decoded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..device import DeviceLike
from ..embed.embeddings import VolumeEmbeddings, compute_embeddings
from ..embed.layout import image_layout
from ..loading import ModelLike, load_model


def open_volume(
    volume: Any,
    embeddings: VolumeEmbeddings | None,
    model: ModelLike,
    device: DeviceLike,
    embed_options: Mapping[str, Any],
) -> tuple[VolumeEmbeddings, Any]:
    """``(embeddings, model)`` of a stack, given the stack, its embeddings, or both.

    Parameters
    ----------
    volume
        ``(Z, Y, X[, C])`` stack or its :class:`VolumeEmbeddings`.
    embeddings
        The stack's embeddings when ``volume`` is the stack (None: made here, lazily, through
        :func:`~napari_sam.engine.embed.embeddings.compute_embeddings` with ``embed_options``).
    model, device
        Loaded when the embeddings carry no model.
    embed_options
        :func:`compute_embeddings` keywords; ``channel_axis`` and ``channel`` also read the stack's layout.

    Raises
    ------
    ValueError
        No stack, a 2D image or its embeddings, the embeddings given twice, or embeddings of another
        shape than the stack.
    TypeError
        ``embeddings`` that are not a :class:`VolumeEmbeddings`.
    """
    if isinstance(volume, VolumeEmbeddings):
        if embeddings is not None and embeddings is not volume:
            raise ValueError("pass the embeddings once: as the first argument or as embeddings=")
        embeddings = volume
    elif embeddings is None:
        embeddings = _embed_stack(volume, model, device, embed_options)
    if not isinstance(embeddings, VolumeEmbeddings):
        raise TypeError(
            f"embeddings must be the VolumeEmbeddings of a stack, got {type(embeddings).__name__}"
        )
    if volume is not embeddings and hasattr(volume, "shape"):
        layout = image_layout(volume, embed_options.get("channel_axis"), channel=embed_options.get("channel"))
        if tuple(layout.spatial_shape) != tuple(embeddings.shape):
            raise ValueError(
                f"embeddings are of a stack of shape {embeddings.shape}, but the volume has spatial shape "
                f"{tuple(layout.spatial_shape)}"
            )
    sam = embeddings.model if embeddings.model is not None else load_model(model, device)
    return embeddings, sam


def _embed_stack(
    volume: Any, model: ModelLike, device: DeviceLike, embed_options: Mapping[str, Any]
) -> VolumeEmbeddings:
    """Lazy embeddings of a ``(Z, Y, X[, C])`` stack (no slice embedded yet); clear errors for 2D input."""
    if volume is None:
        raise ValueError(
            "propagate needs a 3D stack (Z, Y, X[, C]) or its VolumeEmbeddings as volume, got None"
        )
    if hasattr(volume, "features") or hasattr(volume, "tiles"):
        raise ValueError(
            "propagate needs a 3D stack (Z, Y, X[, C]) or its VolumeEmbeddings; got the embeddings "
            "of a 2D image"
        )
    layout = image_layout(volume, embed_options.get("channel_axis"), channel=embed_options.get("channel"))
    if not layout.is_volume:
        raise ValueError(
            "propagate needs a 3D stack (Z, Y, X[, C]); got a 2D image of shape "
            f"{tuple(np.shape(volume))} (use segment() or predict() for 2D images)"
        )
    sam = load_model(model, device)
    embeddings = compute_embeddings(volume, sam, slices=[], **embed_options)
    assert isinstance(embeddings, VolumeEmbeddings)  # the layout is a stack's
    return embeddings


def slice_number(value: Any, n: int, name: str) -> int:
    """``value`` as a slice number of a stack of ``n`` slices; ``name`` is the argument in the error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a slice number (an integer), got {value!r}")
    if not 0 <= int(value) < n:
        raise ValueError(f"{name}={int(value)} is out of range for a stack of {n} slices (0 … {n - 1})")
    return int(value)


def slice_range(z_range: Any, n: int) -> tuple[int, int]:
    """``z_range`` as half-open ``(start, stop)`` slices of a stack of ``n`` (None: all of them)."""
    if z_range is None:
        return 0, n
    try:
        lo, hi = (int(v) for v in z_range)
        ok = all(float(v) == int(v) for v in z_range)
    except (TypeError, ValueError):
        ok = False
    if not ok or not 0 <= lo < hi <= n:
        raise ValueError(
            f"z_range must be (start, stop) slice numbers with 0 <= start < stop <= {n}, half-open; got "
            f"{z_range!r}"
        )
    return lo, hi


def _output_dtype(labels: np.ndarray) -> np.dtype:
    """uint32, or the seeds' own integer dtype when their labels exceed uint32's range.

    Raises ValueError for negative labels (naming a few of them).
    """
    if labels.size == 0:
        return np.dtype(np.uint32)
    if labels.min() < 0:
        negative = np.unique(labels[labels < 0]).tolist()
        more = " …" if len(negative) > 5 else ""
        raise ValueError(
            f"labels must be object IDs >= 0 (0 is background); got negative label(s) {negative[:5]}{more}"
        )
    if int(labels.max()) > np.iinfo(np.uint32).max:
        return labels.dtype  # uint64 / int64: keep the user's IDs, never wrap them into uint32
    return np.dtype(np.uint32)


def labels_volume(labels: Any, shape: tuple[int, int, int], z: Any) -> tuple[np.ndarray, list[int] | None]:
    """``(Z, Y, X)`` copy of the seed labels, and the seed slices implied by a 2D slice + ``z``.

    Parameters
    ----------
    labels
        ``(Z, Y, X)`` labels of the stack, or ``(Y, X)`` labels of slice ``z``; integer or bool.
    shape
        The stack's ``(Z, Y, X)``.
    z
        The slice of ``(Y, X)`` labels; must be None for a labels volume.

    Returns
    -------
    tuple
        The labels volume (uint32, or the seeds' own dtype when their labels exceed uint32's
        range) and ``[z]`` for labels of one slice, else None.
    """
    arr = np.asarray(labels)
    if arr.dtype == bool:
        arr = arr.astype(np.uint32)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"labels must be an integer (or bool) array, got dtype {arr.dtype}")
    dtype = _output_dtype(arr)
    if arr.ndim == 2:
        if z is None:
            raise ValueError("labels of one slice (Y, X) need z= (the slice they were drawn on)")
        if arr.shape != shape[1:]:
            raise ValueError(
                f"labels of one slice must have the slices' shape (Y, X) = {shape[1:]}, got {arr.shape}"
            )
        z = slice_number(z, shape[0], "z")
        out = np.zeros(shape, dtype=dtype)
        out[z] = arr
        return out, [z]
    if arr.ndim != 3 or arr.shape != shape:
        raise ValueError(
            f"labels must have the stack's shape (Z, Y, X) = {shape}, or (Y, X) = {shape[1:]} with z=; "
            f"got shape {arr.shape}"
        )
    if z is not None:
        raise ValueError("z= only applies to labels of one slice; use seed_slices= for a labels volume")
    return arr.astype(dtype, copy=True), None


def seed_map(
    labels: np.ndarray, seed_slices: list[int] | None, objects: Sequence[int] | None
) -> dict[int, list[int]]:
    """``{label: sorted seed slices}`` of the objects to propagate.

    Parameters
    ----------
    labels
        ``(Z, Y, X)`` seed labels.
    seed_slices
        The slices that seed objects (None: every slice).
    objects
        The labels to propagate (None: every label on the seed slices).
    """
    n = labels.shape[0]
    slices = range(n) if seed_slices is None else seed_slices
    present: dict[int, list[int]] = {}
    for z in slices:
        for lab in np.unique(labels[z]):
            if lab:
                present.setdefault(int(lab), []).append(int(z))
    if objects is None:
        if not present:
            where = "the labels" if seed_slices is None else f"seed slice(s) {list(slices)}"
            raise ValueError(f"no objects to propagate: {where} hold no labels")
        return {lab: sorted(zs) for lab, zs in sorted(present.items())}
    wanted = np.asarray(objects).reshape(-1)
    if wanted.size == 0 or not np.issubdtype(wanted.dtype, np.integer) or wanted.min() < 1:
        raise ValueError(f"objects must be a non-empty list of labels >= 1, got {objects!r}")
    seeds = {}
    for lab in sorted({int(v) for v in wanted}):
        if lab not in present:
            where = "the labels volume" if seed_slices is None else f"its seed slice(s) {list(slices)}"
            raise ValueError(f"object {lab} is empty on {where}; nothing to propagate it from")
        seeds[lab] = sorted(present[lab])
    return seeds


def seeds_from_labels(
    labels: Any,
    shape: tuple[int, int, int],
    *,
    z: Any,
    seed_slices: Sequence[int] | None,
    objects: Sequence[int] | None,
    z_range: tuple[int, int],
) -> tuple[np.ndarray, dict[int, list[int]]]:
    """The labels volume (a copy) and ``{label: seed slices}``, from seed labels and the arguments
    that choose among them (see :func:`napari_sam.propagate`)."""
    volume, implied = labels_volume(labels, shape, z)
    if seed_slices is not None:
        if implied is not None:
            raise ValueError("give z= or seed_slices=, not both")
        implied = [slice_number(v, shape[0], "seed_slices") for v in np.asarray(seed_slices).reshape(-1)]
    seeds = seed_map(volume, implied, objects)
    lo, hi = z_range
    if implied is not None and not any(lo <= s < hi for s in implied):
        raise ValueError(f"the seed slice(s) {implied} lie outside z_range=({lo}, {hi})")
    return volume, seeds
