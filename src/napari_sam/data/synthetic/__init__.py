"""Synthetic fluorescence-microscopy images with exact instance labels.

The generator draws nuclei-like objects — ellipses / ellipsoids with a smoothly perturbed boundary — places
them sparsely, densely or in touching clusters, and images them like a widefield or confocal microscope:
textured interiors (chromatin speckle, nucleoli), an uneven background and illumination, out-of-focus
haze, a Gaussian point-spread function, then Poisson (photon) and Gaussian (read) noise, and a detector
scale for ``uint8``, ``uint16`` or ``float32`` output. An optional second channel shows a cytoplasm- or
membrane-like signal of a cell grown around each nucleus, with its own label image.

Everything one image needs comes from one :class:`SyntheticConfig` (ranges that each image samples from)
and one integer seed: the same config and seed give identical arrays.

Axis order is numpy's / napari's: 2D images are ``(rows, cols)`` = ``(Y, X)``, 3D stacks ``(Z, Y, X)``; a
second channel is a trailing axis: ``(Y, X, 2)`` / ``(Z, Y, X, 2)``.

Labels are exact: every pixel belongs to at most one object; ids are consecutive ``1..N`` (0 is
background); each object is one 4-connected (6-connected in 3D) region, and no object smaller than
``min_area`` pixels survives. Where two objects overlap, the pixel goes to the object it lies deeper
inside (smaller normalised radius), which gives natural-looking contact lines between touching nuclei;
the image is rendered from the final labels, so no labelled object is invisible and nothing bright is
unlabelled.

The package, bottom to top: :mod:`.ranges` (a ``(min, max)`` range, checked and drawn from),
:mod:`.placement` (orientations, where objects go), :mod:`.shapes` (object fields, exact labels),
:mod:`.noise` (smooth random fields, blur), :mod:`.appearance` (texture, nucleoli, cells),
:mod:`.imaging` (microscope and camera), :mod:`.generator` (:class:`SyntheticConfig`, :func:`generate`)
and :mod:`.presets` (:data:`PRESETS`, :func:`preset`, :func:`nuclei_2d`, :func:`nuclei_3d`,
:func:`cells_2d`). The names below are the public ones; the modules are internals.

Examples
--------
>>> from napari_sam.data.synthetic import preset
>>> sample = preset("nuclei_dense", shape=(256, 256)).sample(seed=3)
>>> sample.image.shape, sample.image.dtype.name, sample.labels.dtype.name
((256, 256), 'uint16', 'uint32')
>>> int(sample.labels.max()) == sample.n_objects
True
"""

from .generator import SyntheticConfig, SyntheticSample, generate
from .presets import PRESETS, cells_2d, nuclei_2d, nuclei_3d, preset

__all__ = [
    "PRESETS",
    "SyntheticConfig",
    "SyntheticSample",
    "cells_2d",
    "generate",
    "nuclei_2d",
    "nuclei_3d",
    "preset",
]
