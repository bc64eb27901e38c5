"""Synthetic fluorescence-microscopy images with exact instance labels.

The generator draws nuclei-like objects — ellipses / ellipsoids with a smoothly perturbed boundary — places
them sparsely, densely or in touching clusters, and images them like a widefield or confocal microscope:
textured interiors (chromatin speckle, nucleoli), an uneven background and illumination, out-of-focus
haze, a Gaussian point-spread function, then Poisson (photon) and Gaussian (read) noise, and a detector
scale for ``uint8``, ``uint16`` or ``float32`` output. An optional second channel shows a cytoplasm- or
membrane-like signal of a cell grown around each nucleus, with its own label image.

Realism for models that must hold up on real images (each a config field, off by default): a camera
offset, vignetting, bright saturated (mitotic / apoptotic) nuclei, out-of-focus nuclei from other planes,
dim seams between touching nuclei, debris, and labels drawn at the half maximum of each object's edge
profile (``label_boundary="half_max"``, as annotators draw them). Beyond nuclei: one-channel cell stains
with cell labels (``stain="cells"``) and label-free, phase-contrast-like images (``modality="labelfree"``).

Presets (:data:`PRESETS`): ``"nuclei"``, ``"nuclei_sparse"``, ``"nuclei_dense"``, ``"nuclei_3d"``,
``"cells_2ch"``; the realism training families ``"realistic"`` (nuclei 8–60 px, every realism feature),
``"realistic_cells"`` and ``"realistic_labelfree"``; and the held-out evaluation presets
(:data:`HELD_OUT`, each wider than its training family, :data:`TRAINING_OF`): ``"wide"``, ``"touching"``
(dense touching nuclei with dim seams), ``"small"`` (objects 8–15 px across), ``"cells"`` (cytoplasm or
membrane stain, labels = cells) and ``"labelfree"`` (label-free cells, labels = cells).

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
:mod:`.config` (the fields and their checks), :mod:`.placement` (orientations, where objects go),
:mod:`.shapes` (object fields, exact labels), :mod:`.noise` (smooth random fields, blur),
:mod:`.appearance` (texture, nucleoli, cells), :mod:`.nuclei` (drawing objects, nuclei emission),
:mod:`.labelfree` (transmitted-light cells), :mod:`.realism` (seams, condensed nuclei, out-of-focus
nuclei, debris), :mod:`.halfmax` (the half-maximum labels), :mod:`.imaging` (microscope and camera),
:mod:`.scene` (realism applied in order), :mod:`.generator` (:class:`SyntheticConfig`, :func:`generate`)
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
from .presets import HELD_OUT, PRESETS, TRAINING_OF, cells_2d, nuclei_2d, nuclei_3d, preset

__all__ = [
    "HELD_OUT",
    "PRESETS",
    "TRAINING_OF",
    "SyntheticConfig",
    "SyntheticSample",
    "cells_2d",
    "generate",
    "nuclei_2d",
    "nuclei_3d",
    "preset",
]
