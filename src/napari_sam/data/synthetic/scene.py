"""One image's scene before the camera, and the realism applied to it (:func:`realise`), in this order:
condensed saturating nuclei, dim seams between touching objects, the half-maximum label convention,
out-of-focus nuclei, debris, then the camera's offset and vignetting.

Each feature draws from its own random stream, seeded from the image's seed and the feature's number, and
only when it is switched on: a config with every feature off gives the images it gave before they existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ConfigFields
from .halfmax import half_max_labels
from .imaging import Camera, Psf
from .ranges import draw
from .realism import condense, debris, defocused_nuclei, seam_factor
from .shapes import Raster

#: each feature's stream number (``np.random.default_rng([seed, 19, number])``)
STREAMS = {"condense": 1, "seam": 2, "defocused": 3, "debris": 4, "camera": 5, "second_channel": 6}


def stream(seed: int, feature: str) -> np.random.Generator:
    """The random generator of one realism ``feature`` (a key of :data:`STREAMS`) for image ``seed``."""
    return np.random.default_rng([seed, 19, STREAMS[feature]])


@dataclass(eq=False)
class Scene:
    """An image's objects and light before the microscope; :func:`realise` changes it in place."""

    #: uint32 labels ``1..N`` of the objects the image is annotated with
    labels: np.ndarray
    #: ``(N,)`` the drawn object (index into the drawn objects) of label ``k + 1``
    kept: np.ndarray
    #: float32 emission (fluorescence) or transmitted light (label-free)
    signal: np.ndarray
    #: float32 smooth profile of the labelled objects (no texture): what half-maximum labels follow
    profile: np.ndarray
    #: float32 emission left out of the white point (saturating nuclei), or None
    boost: np.ndarray | None = None
    #: float32 fraction of light let through (dark debris), or None
    transmission: np.ndarray | None = None
    #: ``(N,)`` brightness of label ``k + 1`` (nuclei; None for other objects)
    brightness: np.ndarray | None = None


def realise(
    scene: Scene,
    config: ConfigFields,
    seed: int,
    raster: Raster,
    spacing: np.ndarray,
    mean_d: float,
    kind: str,
    psf: Psf,
    params: dict[str, float],
) -> Camera | None:
    """Apply the config's realism features to ``scene``; the camera's part is returned for imaging.

    Parameters
    ----------
    scene
        The image's scene, changed in place.
    config
        The image's config (its realism fields; all off changes nothing and returns None).
    seed
        The image's seed (each feature's stream comes from it).
    raster
        The drawn objects' fields (condensed nuclei shrink inside theirs).
    spacing
        ``(ndim,)`` pixel spacing per axis.
    mean_d
        The image's mean object diameter, pixels.
    kind
        The cell stain drawn for this image (``"cytoplasm"`` or ``"membrane"``): membranes get no seams.
    psf
        The image's point-spread function (the half-maximum labels blur by it).
    params
        What each feature drew is added (``saturated``, ``seam``, ``defocused``, ``debris`` counts /
        values).

    Returns
    -------
    Camera or None
        What :func:`~napari_sam.data.synthetic.imaging.acquire` adds; None when nothing.
    """
    fluorescence = config.modality == "fluorescence"
    if config.saturated[1] > 0 and scene.brightness is not None and len(scene.kept):
        _condense(scene, config, seed, raster, params)
    membrane = config.stain == "cells" and kind == "membrane"
    if config.seam[1] > 0 and fluorescence and not membrane:
        rng = stream(seed, "seam")
        factor = seam_factor(rng, scene.labels, spacing, config.seam)
        scene.signal *= factor
        scene.profile *= factor
        if scene.boost is not None:
            scene.boost *= factor
        params["seam"] = float(1.0 - factor.min())
    if config.label_boundary == "half_max":
        _half_max(scene, psf, config.min_area, params)
    n = int(scene.labels.max()) if scene.labels.size else 0
    level = float(scene.profile[scene.labels > 0].mean()) if n else 1.0
    if not fluorescence:
        level = float(params.get("labelfree_contrast", 0.3))
    if config.defocused[1] > 0:
        rng = stream(seed, "defocused")
        halos = defocused_nuclei(
            rng,
            scene.labels.shape,
            spacing,
            n,
            mean_d,
            level,
            amount=config.defocused,
            relative=config.defocused_brightness,
        )
        scene.signal += halos
        params["defocused"] = float(halos.max())
    if config.debris[1] > 0:
        emission, transmission, pieces = debris(
            stream(seed, "debris"), scene.labels.shape, spacing, level, density=config.debris
        )
        scene.signal += emission
        scene.transmission = transmission
        params["debris"] = float(pieces)
    camera_on = config.camera_offset[1] > 0 or config.vignetting[1] > 0
    if not (camera_on or scene.boost is not None or scene.transmission is not None):
        return None
    rng = stream(seed, "camera")
    offset, vignetting = draw(rng, config.camera_offset), draw(rng, config.vignetting)
    return Camera(boost=scene.boost, transmission=scene.transmission, vignetting=vignetting, offset=offset)


def _condense(
    scene: Scene, config: ConfigFields, seed: int, raster: Raster, params: dict[str, float]
) -> None:
    """Bright condensed nuclei: shrunk labels, their emission moved into ``scene.boost`` and brightened."""
    before = scene.labels
    assert scene.brightness is not None  # realise: nuclei only
    labels, chosen, gain = condense(
        stream(seed, "condense"),
        before,
        scene.kept,
        raster,
        scene.brightness,
        config.saturated,
        config.min_area,
    )
    lost = (before > 0) & (labels == 0)
    scene.signal[lost] = 0.0
    scene.profile[lost] = 0.0
    bright = np.isin(labels, chosen)
    boost = np.zeros_like(scene.signal)
    boost[bright] = scene.signal[bright] * gain[labels[bright]]
    scene.signal[bright] = 0.0
    scene.profile *= gain[labels]
    scene.labels, scene.boost = labels, boost
    params["saturated"] = float(len(chosen))


def _half_max(scene: Scene, psf: Psf, min_area: int, params: dict[str, float]) -> None:
    """Labels at the half maximum of each object's blurred profile; dropped objects' light removed."""
    labels, source = half_max_labels(scene.labels, scene.profile, psf.sigma, min_area)
    gone = np.ones(int(scene.labels.max()) + 1, dtype=bool)
    gone[source] = False
    gone[0] = False
    dropped = gone[scene.labels]
    if dropped.any():
        scene.signal[dropped] = 0.0
        if scene.boost is not None:
            scene.boost[dropped] = 0.0
    scene.kept = scene.kept[source - 1]
    if scene.brightness is not None:
        scene.brightness = scene.brightness[source - 1]
    scene.labels = labels
    params["objects"] = float(len(source))
