"""Where training images come from: our synthetic generator, or a folder of image/label pairs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

#: Draws one training image and its labels: ``rng → (image (Y, X[, C]), labels (Y, X) int)``.
ImageSource = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".zarr", ".npy")


def read_array(path: Path) -> np.ndarray:
    """Read a 2D image or labels file: tif, png / jpg, zarr (the first array) or npy."""
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    if suffix in (".png", ".jpg", ".jpeg"):
        from PIL import Image

        return np.asarray(Image.open(path))
    if suffix == ".zarr":
        import zarr

        node = zarr.open(str(path), mode="r")
        if isinstance(node, zarr.Array):
            return np.asarray(node[...])
        arrays = sorted(node.arrays(), key=lambda item: item[0])
        if not arrays:
            raise ValueError(f"{path} holds no arrays")
        return np.asarray(arrays[0][1][...])
    if suffix == ".npy":
        return np.load(path)
    raise ValueError(f"unsupported file type {path.suffix!r} ({path}); expected one of {IMAGE_SUFFIXES}")


def find_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """Image/label pairs in ``folder``.

    Two layouts are recognised: ``folder/images/NAME.*`` with ``folder/labels/NAME.*``, or files
    side by side as ``NAME.*`` and ``NAME_labels.*`` (also ``_masks``).
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"training folder not found: {root}")

    def files(directory: Path) -> dict[str, Path]:
        return {p.stem: p for p in sorted(directory.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}

    pairs: list[tuple[Path, Path]] = []
    if (root / "images").is_dir() and (root / "labels").is_dir():
        images, labels = files(root / "images"), files(root / "labels")
        pairs = [(images[k], labels[k]) for k in sorted(images) if k in labels]
    else:
        everything = files(root)
        for stem, path in everything.items():
            for tag in ("_labels", "_masks", "_label", "_mask"):
                if stem.endswith(tag):
                    break
            else:
                for tag in ("_labels", "_masks", "_label", "_mask"):
                    if stem + tag in everything:
                        pairs.append((path, everything[stem + tag]))
                        break
    if not pairs:
        raise ValueError(
            f"no image/label pairs found in {root}: use images/NAME.tif + labels/NAME.tif, or "
            "NAME.tif + NAME_labels.tif"
        )
    return pairs


def read_pair(image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pair of :func:`find_pairs`: the image, and its labels as int64 ``(H, W)``.

    Raises
    ------
    ValueError
        The labels are not 2D or not of the image's ``(H, W)``.
    """
    image, labels = read_array(image_path), read_array(label_path)
    if labels.ndim != 2 or labels.shape != image.shape[:2]:
        raise ValueError(f"{label_path} has shape {labels.shape}, expected the image's {image.shape[:2]}")
    return image, labels.astype(np.int64)


def folder_source(folder: str | Path) -> ImageSource:
    """A source drawing random pairs from :func:`find_pairs` (files are read once and kept)."""
    pairs = find_pairs(folder)
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        index = int(rng.integers(0, len(pairs)))
        if index not in cache:
            cache[index] = read_pair(*pairs[index])
        return cache[index]

    return draw
