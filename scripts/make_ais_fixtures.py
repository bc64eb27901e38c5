"""Generate the AIS parity fixtures: instance-decoder maps and micro-sam's labels for them.

Run it in the reference environment (``.venv-ref``, with ``pip install xxhash`` for micro-sam's imports),
never from the library:

    .venv-ref/bin/python scripts/make_ais_fixtures.py

micro-sam's AIS post-processing is ``InstanceSegmentationWithDecoder.generate``: the foreground map is
smoothed (``bioimage_cpp.filters.gaussian_smoothing``), then torch_em's
``watershed_from_center_and_boundary_distances`` smooths the two distance maps, seeds where both are
below their thresholds inside the foreground, labels the seeds and grows them by a watershed on the
boundary distances, and drops objects under ``min_size``. This script sets the segmenter's state (the
three maps) directly with ``set_state`` and calls ``generate``; no SAM model or decoder is involved.

The maps are built so that the watershed has work to do: from synthetic instance labels with touching
and non-convex objects, per object the distance to its centre and to its boundary normalised to
``[0, 1]`` (micro-sam's training targets: small near the centre), blurred, with noise. They are stored
quantised to uint16 (``maps = q / 65535`` in float32, the exact values both sides segment). One more case
takes the maps of the seeded-random micro-sam decoder of ``make_instance_decoder_fixtures.py``
(``small_b.npz``) with thresholds at their quantiles, so that it has seeds.

Per case, in ``tests/fixtures/instance_decoder/ais_<case>.npz``: ``maps_u16`` ``(3, [Z,] H, W)`` (absent
for the decoder case, which reads ``small_b.npz``), ``labels`` (micro-sam's, uint16) and ``params`` (the
``generate`` keyword arguments as JSON).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from micro_sam.instance_segmentation import InstanceSegmentationWithDecoder
from scipy import ndimage

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "instance_decoder"

#: the random-decoder case whose maps are segmented (the one with most structure: 45 objects)
DECODER_CASE = "small_b"

#: micro-sam's ``generate`` defaults, spelled out
DEFAULTS = {
    "center_distance_threshold": 0.5,
    "boundary_distance_threshold": 0.5,
    "foreground_threshold": 0.5,
    "foreground_smoothing": 1.0,
    "distance_smoothing": 1.6,
    "min_size": 0,
}


def ellipsoid_labels(shape: tuple[int, ...], n: int, radii: tuple[float, float], seed: int) -> np.ndarray:
    """``n`` random ellipses (ellipsoids in 3D) painted in order, so that later ones cut into earlier ones
    (touching objects); plus one dumbbell (two discs joined by a bar) as a non-convex object."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint16)
    for i in range(1, n + 1):
        centre = [rng.uniform(r, s - r) for s, r in zip(shape, [radii[1] * 0.6] * len(shape), strict=True)]
        axes = rng.uniform(*radii, size=len(shape))
        inside = sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes, strict=True)) <= 1.0
        labels[inside] = i
    # a dumbbell along the last axis, through the middle of the other axes
    mid = [s / 2 for s in shape[:-1]]
    w = shape[-1]
    left, right = w * 0.2, w * 0.45
    r = radii[1] * 0.9
    d_left = sum((g - c) ** 2 for g, c in zip(grid[:-1], mid, strict=True)) + (grid[-1] - left) ** 2
    d_right = sum((g - c) ** 2 for g, c in zip(grid[:-1], mid, strict=True)) + (grid[-1] - right) ** 2
    bar = (np.abs(sum(g - c for g, c in zip(grid[:-1], mid, strict=True))) <= r * 0.35) & (
        (grid[-1] >= left) & (grid[-1] <= right)
    )
    labels[(d_left <= r**2) | (d_right <= r**2) | bar] = n + 1
    return labels


def maps_from_labels(labels: np.ndarray, *, blur: float, noise: float, seed: int) -> np.ndarray:
    """``(3, ...)`` float maps: foreground, normalised distance to each object's centre and to its boundary
    (1 outside objects), blurred by ``blur`` and with Gaussian ``noise``, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    foreground = (labels > 0).astype(np.float32)
    centre = np.ones(labels.shape, dtype=np.float32)
    boundary = np.ones(labels.shape, dtype=np.float32)
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        if region is None:
            continue
        mask = labels[region] == index
        inner = ndimage.distance_transform_edt(np.pad(mask, 1))[tuple(slice(1, -1) for _ in mask.shape)]
        boundary[region][mask] = 1.0 - inner[mask] / inner[mask].max()
        coords = np.argwhere(mask).astype(np.float32)
        dist = np.sqrt(((coords - coords.mean(axis=0)) ** 2).sum(axis=1))
        centre[region][mask] = dist / max(float(dist.max()), 1.0)
    maps = np.stack([foreground, centre, boundary])
    maps = ndimage.gaussian_filter(maps, [0] + [blur] * labels.ndim)
    maps += rng.normal(0.0, noise, size=maps.shape).astype(np.float32)
    return np.clip(maps, 0.0, 1.0)


def quantise(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(uint16 codes, the float32 maps they stand for)``."""
    codes = np.round(maps * 65535).astype(np.uint16)
    return codes, codes.astype(np.float32) / np.float32(65535)


def micro_sam_labels(maps: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """micro-sam's AIS labels of ``(3, ...)`` float32 maps, its segmenter's state set directly."""
    segmenter = InstanceSegmentationWithDecoder(predictor=None, decoder=None)
    segmenter.set_state({"foreground": maps[0], "center_distances": maps[1], "boundary_distances": maps[2]})
    return np.asarray(segmenter.generate(**params))


def save(name: str, labels: np.ndarray, params: dict[str, float], codes: np.ndarray | None) -> None:
    assert labels.max() < 2**16, labels.max()
    arrays = {"labels": labels.astype(np.uint16), "params": np.array(json.dumps(params))}
    if codes is not None:
        arrays["maps_u16"] = codes
    np.savez_compressed(OUT / f"ais_{name}.npz", **arrays)
    sizes = np.bincount(labels.ravel())[1:]
    print(
        f"ais_{name}: shape {labels.shape}, {int((sizes > 0).sum())} objects "
        f"(sizes {sizes.min() if sizes.size else 0}–{sizes.max() if sizes.size else 0}), params {params}"
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    synthetic = {
        # name: (shape, objects, radii, blur, noise, seed, params over the defaults)
        "nuclei_2d": ((96, 128), 16, (6.0, 13.0), 1.5, 0.04, 1, {}),
        "params_2d": (
            (96, 128),
            20,
            (4.0, 11.0),
            1.0,
            0.06,
            2,
            {
                "center_distance_threshold": 0.4,
                "boundary_distance_threshold": 0.6,
                "foreground_threshold": 0.35,
                "foreground_smoothing": 0.7,
                "distance_smoothing": 2.2,
                "min_size": 40,
            },
        ),
        "unsmoothed_2d": (
            (96, 128),
            14,
            (5.0, 12.0),
            2.0,
            0.02,
            3,
            {"foreground_smoothing": 0.0, "distance_smoothing": 0.0, "min_size": 12},
        ),
        "stack_3d": ((14, 44, 44), 10, (4.0, 7.0), 0.7, 0.03, 4, {}),
    }
    for name, (shape, n, radii, blur, noise, seed, overrides) in synthetic.items():
        labels_in = ellipsoid_labels(shape, n, radii, seed)
        codes, maps = quantise(maps_from_labels(labels_in, blur=blur, noise=noise, seed=seed + 100))
        params = {**DEFAULTS, **overrides}
        save(name, micro_sam_labels(maps, params), params, codes)

    decoder_maps = np.load(OUT / f"{DECODER_CASE}.npz")["maps"][0].astype(np.float32)
    params = dict(DEFAULTS)  # thresholds at the maps' quantiles: the random maps sit near 0.5
    params["foreground_threshold"] = float(np.quantile(decoder_maps[0], 0.4))
    params["center_distance_threshold"] = float(np.quantile(decoder_maps[1], 0.5))
    params["boundary_distance_threshold"] = float(np.quantile(decoder_maps[2], 0.5))
    save("random_decoder", micro_sam_labels(decoder_maps, params), params, None)


if __name__ == "__main__":
    main()
