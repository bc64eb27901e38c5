"""The named presets (:data:`PRESETS`, :func:`preset`) and the one-call shortcuts built on them:
:func:`nuclei_2d`, :func:`nuclei_3d` and :func:`cells_2d`.

``"wide"`` is held out for evaluation: every range is wider than the nuclei training presets'. The realism
families (issue 19) have their own held-out presets, wider than their training family: ``"touching"`` and
``"small"`` widen ``"realistic"``, ``"cells"`` widens ``"realistic_cells"``, ``"labelfree"`` widens
``"realistic_labelfree"`` (:data:`TRAINING_OF`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .families import REALISM_PRESETS
from .generator import SyntheticConfig
from .ranges import Range, as_range

_NUCLEI = SyntheticConfig()

PRESETS: Mapping[str, SyntheticConfig] = MappingProxyType(
    {
        # varied, medium density: the default family
        "nuclei": _NUCLEI,
        # a few large nuclei per field
        "nuclei_sparse": _NUCLEI.replace(
            diameter=(18.0, 70.0),
            density=(0.08, 0.6),
            cluster_probability=(0.0, 0.3),
            irregularity=(0.0, 0.15),
        ),
        # many small nuclei, often touching
        "nuclei_dense": _NUCLEI.replace(
            diameter=(6.0, 22.0),
            density=(3.0, 14.0),
            cluster_probability=(0.2, 0.7),
            overlap=(-0.02, 0.25),
            size_spread=(0.05, 0.2),
        ),
        # 3D stacks of ellipsoidal nuclei, anisotropic sampling
        "nuclei_3d": _NUCLEI.replace(
            shape=(32, 256, 256), diameter=(10.0, 32.0), density=(8.0, 40.0), cluster_probability=(0.0, 0.3)
        ),
        # nuclei + cytoplasm / membrane channel with cell labels
        "cells_2ch": _NUCLEI.replace(
            diameter=(10.0, 30.0), density=(0.3, 2.0), channels=2, cell_extent=(0.3, 1.2), overlap=(-0.1, 0.1)
        ),
        # held out for evaluation: every range wider than the training presets'; evaluate on other seeds too
        "wide": _NUCLEI.replace(
            diameter=(5.0, 80.0),
            size_spread=(0.0, 0.35),
            density=(0.05, 20.0),
            aspect=(1.0, 2.2),
            irregularity=(0.0, 0.3),
            cluster_probability=(0.0, 0.8),
            overlap=(-0.15, 0.3),
            overlap_brightness=(0.0, 1.0),
            intensity=(0.1, 1.0),
            edge_falloff=(0.0, 0.7),
            texture=(0.0, 0.5),
            nucleoli=(0, 5),
            nucleolus_contrast=(-0.7, 0.6),
            background=(0.0, 0.3),
            background_variation=(0.0, 0.8),
            illumination_variation=(0.0, 0.5),
            haze=(0.0, 0.3),
            blur=(0.3, 3.0),
            photons=(10.0, 5000.0),
            read_noise=(0.0, 0.05),
            cell_extent=(0.2, 1.5),
            cell_intensity=(0.1, 1.0),
            z_aspect=(0.4, 1.2),
            axial_blur=(1.5, 3.5),
            depth_attenuation=(0.0, 0.7),
        ),
        **REALISM_PRESETS,
    }
)

#: the presets held out for evaluation (evaluate them on seeds that no training run used)
HELD_OUT: tuple[str, ...] = ("wide", "touching", "small", "cells", "labelfree")
#: the training family each held-out preset widens (``wide`` widens every nuclei family)
TRAINING_OF: Mapping[str, str] = MappingProxyType(
    {
        "wide": "nuclei",
        "touching": "realistic",
        "small": "realistic",
        "cells": "realistic_cells",
        "labelfree": "realistic_labelfree",
    }
)


def preset(name: str, **overrides: Any) -> SyntheticConfig:
    """The preset config ``name`` (one of :data:`PRESETS`), with optional field overrides.

    Presets: ``"nuclei"`` (varied, medium density), ``"nuclei_sparse"``, ``"nuclei_dense"``, ``"nuclei_3d"``
    (``(32, 256, 256)`` stacks), ``"cells_2ch"`` (two channels + cell labels) and ``"wide"`` — wider ranges
    than all others, held out for evaluation. With realism and half-maximum labels: the training families
    ``"realistic"`` (nuclei), ``"realistic_cells"`` (one-channel cell stain, labels = cells) and
    ``"realistic_labelfree"`` (label-free cells), and the held-out ``"touching"``, ``"small"``, ``"cells"``
    and ``"labelfree"`` (:data:`HELD_OUT`, :data:`TRAINING_OF`).

    Parameters
    ----------
    name
        A key of :data:`PRESETS`.
    **overrides
        :class:`SyntheticConfig` fields to change (validated like the constructor's).

    Returns
    -------
    SyntheticConfig
        The preset, or a copy with the overrides.

    Raises
    ------
    ValueError
        An unknown name or an invalid override.

    Examples
    --------
    >>> from napari_sam.data.synthetic import preset
    >>> config = preset("nuclei_dense", shape=(96, 96))
    >>> config.shape, config.diameter
    ((96, 96), (6.0, 22.0))
    """
    try:
        config = PRESETS[name]
    except KeyError:
        raise ValueError(f"preset: unknown name {name!r}; known: {', '.join(PRESETS)}") from None
    return config.replace(**overrides) if overrides else config


def nuclei_2d(
    shape: tuple[int, int] = (512, 512),
    *,
    n_objects: int | None = 30,
    diameter: Range = (16.0, 50.0),
    radius: Range | None = None,
    seed: int = 0,
    dtype: DTypeLike = np.uint16,
    preset_name: str = "nuclei",
    **overrides: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence-like 2D image of nuclei and its labels.

    Parameters
    ----------
    shape
        ``(rows, cols)``.
    n_objects
        Nuclei to place; fewer come out when they do not fit or end up mostly hidden by neighbours.
        ``None``: the preset's density.
    diameter
        ``(min, max)`` nucleus diameter in pixels.
    radius
        ``(min, max)`` nucleus radius in pixels; when given, replaces ``diameter`` (twice these values).
        Kept for callers of the first version of this function.
    seed
        Integer >= 0; equal seeds give equal arrays.
    dtype
        ``np.uint16``, ``np.uint8`` or ``np.float32`` (or their names).
    preset_name
        The :data:`PRESETS` entry the rest of the parameters come from.
    **overrides
        Any other :class:`SyntheticConfig` field.

    Returns
    -------
    image
        ``(rows, cols)`` of ``dtype``.
    labels
        ``(rows, cols)`` uint32, 0 background, ``1..N`` nuclei.

    Examples
    --------
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, labels = nuclei_2d((128, 128), n_objects=6, seed=0)
    >>> image.shape, image.dtype, labels.dtype, int(labels.max())
    ((128, 128), dtype('uint16'), dtype('uint32'), 6)
    >>> nuclei_2d((64, 64), n_objects=3, dtype="uint8")[0].dtype
    dtype('uint8')
    """
    if len(tuple(shape)) != 2:
        raise ValueError(f"shape: nuclei_2d needs (rows, cols), got {shape!r}")
    if radius is not None:
        lo, hi = as_range("radius", radius, low=0.5)
        diameter = (2.0 * lo, 2.0 * hi)
    if n_objects is not None:
        if n_objects < 0:
            raise ValueError(f"n_objects: must be >= 0, got {n_objects!r}")
        overrides["count"] = (n_objects, n_objects)
    config = preset(preset_name, shape=tuple(shape), diameter=diameter, dtype=dtype, channels=1, **overrides)
    sample = config.sample(seed)
    return sample.image, sample.labels


def nuclei_3d(
    shape: tuple[int, int, int] = (32, 256, 256),
    *,
    n_objects: int | None = 40,
    diameter: Range = (12.0, 32.0),
    z_spacing: float = 2.0,
    seed: int = 0,
    dtype: DTypeLike = np.uint16,
    **overrides: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence-like 3D stack of ellipsoidal nuclei and its labels.

    Parameters
    ----------
    shape
        ``(planes, rows, cols)``.
    n_objects
        Nuclei to place (fewer when they do not fit); ``None``: the ``"nuclei_3d"`` preset's density.
    diameter
        ``(min, max)`` lateral nucleus diameter in pixels.
    z_spacing
        Plane distance in pixel units: a nucleus of diameter ``d`` spans about ``d / z_spacing`` planes.
    seed
        Integer >= 0; equal seeds give equal arrays.
    dtype
        ``np.uint16``, ``np.uint8`` or ``np.float32``.
    **overrides
        Any other :class:`SyntheticConfig` field.

    Returns
    -------
    image
        ``(planes, rows, cols)`` of ``dtype``.
    labels
        ``(planes, rows, cols)`` uint32, 0 background, ``1..N`` nuclei, each one 6-connected region.

    Examples
    --------
    >>> from napari_sam.data.synthetic import nuclei_3d
    >>> stack, labels = nuclei_3d((8, 64, 64), n_objects=4, seed=0)
    >>> stack.shape, stack.dtype, labels.shape, int(labels.max())
    ((8, 64, 64), dtype('uint16'), (8, 64, 64), 4)
    """
    if len(tuple(shape)) != 3:
        raise ValueError(f"shape: nuclei_3d needs (planes, rows, cols), got {shape!r}")
    if n_objects is not None:
        if n_objects < 0:
            raise ValueError(f"n_objects: must be >= 0, got {n_objects!r}")
        overrides["count"] = (n_objects, n_objects)
    config = preset(
        "nuclei_3d", shape=tuple(shape), diameter=diameter, z_spacing=z_spacing, dtype=dtype, **overrides
    )
    sample = config.sample(seed)
    return sample.image, sample.labels


def cells_2d(
    shape: tuple[int, int] = (512, 512),
    *,
    n_objects: int | None = 40,
    second_channel: str = "cytoplasm",
    seed: int = 0,
    dtype: DTypeLike = np.uint16,
    **overrides: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A two-channel 2D image (nuclei, cells) with nucleus and cell labels (the ``"cells_2ch"`` preset).

    Parameters
    ----------
    shape
        ``(rows, cols)``.
    n_objects
        Cells to place; ``None``: the preset's density.
    second_channel
        ``"cytoplasm"`` or ``"membrane"``.
    seed, dtype, **overrides
        As in :func:`nuclei_2d`.

    Returns
    -------
    image
        ``(rows, cols, 2)`` of ``dtype``: channel 0 nuclei, channel 1 cytoplasm / membrane.
    nuclei
        ``(rows, cols)`` uint32 nucleus labels ``1..N``.
    cells
        ``(rows, cols)`` uint32 cell labels; cell ``k`` contains nucleus ``k``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_sam.data.synthetic import cells_2d
    >>> image, nuclei, cells = cells_2d((128, 128), n_objects=5, seed=0)
    >>> image.shape, int(nuclei.max()), int(cells.max())
    ((128, 128, 2), 5, 5)
    >>> bool(np.all(cells[nuclei == 1] == 1))  # cell 1 contains nucleus 1
    True
    """
    if len(tuple(shape)) != 2:
        raise ValueError(f"shape: cells_2d needs (rows, cols), got {shape!r}")
    if n_objects is not None:
        if n_objects < 0:
            raise ValueError(f"n_objects: must be >= 0, got {n_objects!r}")
        overrides["count"] = (n_objects, n_objects)
    config = preset("cells_2ch", shape=tuple(shape), second_channel=second_channel, dtype=dtype, **overrides)
    sample = config.sample(seed)
    cells = sample.cells if sample.cells is not None else np.zeros_like(sample.labels)
    return sample.image, sample.labels, cells
