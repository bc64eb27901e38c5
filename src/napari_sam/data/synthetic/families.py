"""The realism preset families (issue 19): nuclei, one-channel cell stains and label-free cells, each a
training family and a wider held-out family, all with half-maximum labels (see :mod:`.presets`)."""

from __future__ import annotations

from .generator import SyntheticConfig

_NUCLEI = SyntheticConfig()

#: the realism of real fluorescence images at plausible ranges (training families)
_REAL = {
    "camera_offset": (0.02, 0.12),
    "vignetting": (0.0, 0.3),
    "saturated": (0.0, 0.06),
    "defocused": (0.0, 0.5),
    "defocused_brightness": (0.05, 0.3),
    "seam": (0.1, 0.45),
    "debris": (0.0, 1.0),
    "label_boundary": "half_max",
}
#: the same, wider (held-out evaluation families)
_REAL_WIDE = {
    **_REAL,
    "camera_offset": (0.0, 0.2),
    "vignetting": (0.0, 0.45),
    "saturated": (0.0, 0.1),
    "defocused": (0.0, 0.8),
    "defocused_brightness": (0.03, 0.4),
    "seam": (0.05, 0.6),
    "debris": (0.0, 2.0),
}
#: nuclei of every size with all realism features: the training family of nano v2
_REALISTIC = _NUCLEI.replace(
    **_REAL,
    diameter=(8.0, 60.0),
    density=(0.3, 8.0),
    cluster_probability=(0.0, 0.6),
    overlap=(-0.05, 0.25),
    overlap_brightness=(0.0, 0.3),
    illumination_variation=(0.0, 0.4),
)
#: one-channel cell stains (cytoplasm or membrane, drawn per image), labels = cells: training family
_REALISTIC_CELLS = _NUCLEI.replace(
    **_REAL,
    stain="cells",
    second_channel="mixed",
    diameter=(8.0, 24.0),
    density=(0.5, 4.0),
    cell_extent=(0.4, 1.2),
    cell_intensity=(0.3, 1.0),
    cluster_probability=(0.0, 0.5),
    overlap=(-0.1, 0.1),
    min_area=20,
)
#: label-free cells (phase-contrast / brightfield look) on a grey, unevenly lit field: training family
_REALISTIC_LABELFREE = _NUCLEI.replace(
    **{
        **_REAL,
        "saturated": (0.0, 0.0),
        "defocused": (0.0, 0.3),
        "vignetting": (0.1, 0.35),
        "debris": (0.0, 0.5),
    },
    modality="labelfree",
    stain="cells",
    diameter=(15.0, 60.0),
    density=(0.2, 3.0),
    aspect=(1.0, 2.2),
    irregularity=(0.05, 0.25),
    cluster_probability=(0.2, 0.7),
    overlap=(0.0, 0.12),
    background=(0.0, 0.05),
    background_variation=(0.0, 0.3),
    illumination_variation=(0.1, 0.4),
    haze=(0.0, 0.0),
    blur=(0.5, 1.3),
    photons=(200.0, 3000.0),
    read_noise=(0.002, 0.01),
    labelfree_contrast=(0.15, 0.4),
    min_area=30,
)

#: the realism presets by name (merged into :data:`~napari_sam.data.synthetic.PRESETS`)
REALISM_PRESETS: dict[str, SyntheticConfig] = {
    # training family of nano v2: nuclei 8-60 px with camera offset, vignetting, saturated condensed
    # nuclei, out-of-focus nuclei, dim seams between touching nuclei, debris; half-maximum labels
    "realistic": _REALISTIC,
    # training family: one-channel cytoplasm or membrane stain, labels = cells, realism as "realistic"
    "realistic_cells": _REALISTIC_CELLS,
    # training family: label-free cells (dark with a bright halo, or the reverse), labels = cells
    "realistic_labelfree": _REALISTIC_LABELFREE,
    # held out: dense clumps of touching nuclei separated only by dim seams; wider realism ranges
    "touching": _REALISTIC.replace(
        **_REAL_WIDE,
        diameter=(10.0, 40.0),
        size_spread=(0.0, 0.3),
        density=(3.0, 15.0),
        aspect=(1.0, 2.0),
        irregularity=(0.0, 0.2),
        cluster_probability=(0.7, 1.0),
        overlap=(0.0, 0.3),
        overlap_brightness=(0.0, 0.2),
        intensity=(0.15, 1.0),
        edge_falloff=(0.0, 0.6),
        blur=(0.5, 2.2),
        photons=(20.0, 4000.0),
    ),
    # held out: small objects, 8-15 px across (low magnification); wider realism ranges
    "small": _REALISTIC.replace(
        **_REAL_WIDE,
        diameter=(8.0, 15.0),
        size_spread=(0.0, 0.3),
        density=(2.0, 30.0),
        cluster_probability=(0.0, 0.7),
        nucleoli=(0, 1),
        blur=(0.4, 2.0),
        photons=(20.0, 4000.0),
    ),
    # held out: one-channel cytoplasm or membrane stain, labels = cells; wider than "realistic_cells"
    "cells": _REALISTIC_CELLS.replace(
        **_REAL_WIDE,
        diameter=(6.0, 30.0),
        density=(0.3, 6.0),
        aspect=(1.0, 2.0),
        irregularity=(0.0, 0.2),
        cell_extent=(0.3, 1.6),
        cell_intensity=(0.15, 1.0),
        cluster_probability=(0.0, 0.7),
        overlap=(-0.15, 0.15),
        background=(0.0, 0.2),
        illumination_variation=(0.0, 0.5),
        blur=(0.4, 2.4),
        photons=(20.0, 4000.0),
    ),
    # held out: label-free cells; wider than "realistic_labelfree"
    "labelfree": _REALISTIC_LABELFREE.replace(
        **{
            **_REAL_WIDE,
            "saturated": (0.0, 0.0),
            "defocused": (0.0, 0.5),
            "vignetting": (0.05, 0.5),
            "debris": (0.0, 1.0),
        },
        diameter=(12.0, 80.0),
        density=(0.1, 4.0),
        aspect=(1.0, 2.8),
        irregularity=(0.0, 0.3),
        cluster_probability=(0.1, 0.9),
        overlap=(0.0, 0.18),
        background_variation=(0.0, 0.5),
        illumination_variation=(0.05, 0.55),
        blur=(0.4, 1.8),
        photons=(100.0, 5000.0),
        read_noise=(0.0, 0.02),
        labelfree_contrast=(0.08, 0.6),
    ),
}
