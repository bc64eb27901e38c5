"""The offline demo: segment synthetic nuclei from their boxes and save a picture."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engine.device import DeviceLike


@dataclass
class DemoSummary:
    model: str
    weights: str
    n_objects: int
    mean_iou: float
    embed_seconds: float
    segment_seconds: float
    picture: Path
    labels: Path

    def text(self) -> str:
        return (
            f"model: {self.model} ({self.weights})\n"
            f"objects: {self.n_objects}, mean IoU with the true nuclei: {self.mean_iou:.3f}\n"
            f"embedding: {self.embed_seconds:.2f} s, masks for all boxes: {self.segment_seconds:.2f} s\n"
            f"picture (truth | {self.model} from the boxes): {self.picture}\n"
            f"labels (uint32 tif, object k = box k): {self.labels}"
        )


def _resolve_demo_model(model: str):
    """``auto``: the shipped nano model."""
    if model != "auto":
        return model, "as given"
    return "nano", "shipped nano weights, trained on synthetic nuclei only"


def object_colours(n: int) -> np.ndarray:
    """``n`` bright, well-separated colours, ``(n, 3)`` uint8 (hues spaced by the golden angle)."""
    import colorsys

    hues = (np.arange(n) * 0.618033988749895) % 1.0
    rgb = [colorsys.hsv_to_rgb(float(h), 0.85, 1.0) for h in hues]
    return (np.array(rgb, dtype=np.float64).reshape(n, 3) * 255).round().astype(np.uint8)


def overlay_picture(image: np.ndarray, labels: np.ndarray, *, brightness: float = 0.6) -> np.ndarray:
    """``(H, W)`` image + labels → ``(H, W, 3)`` uint8: the image dimmed, each object outlined in its colour.

    The outlines are two pixels wide (inside the object) and object ``k`` gets colour ``k - 1`` of
    :func:`object_colours`, so the same label has the same colour in every panel.
    """
    from scipy.ndimage import maximum_filter, minimum_filter

    lo, hi = np.percentile(image, [1, 99.8])
    gray = np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1) * brightness
    rgb = (np.stack([gray] * 3, axis=-1) * 255).astype(np.uint8)
    # an object's pixel is outline where another label lies within two pixels (a diamond)
    near = np.add.outer(np.abs(np.arange(-2, 3)), np.abs(np.arange(-2, 3))) <= 2
    mixed = maximum_filter(labels, footprint=near, mode="nearest") != minimum_filter(
        labels, footprint=near, mode="nearest"
    )
    outline = mixed & (labels > 0)
    palette = np.concatenate([np.zeros((1, 3), np.uint8), object_colours(int(labels.max()))])
    rgb[outline] = palette[labels[outline]]
    return rgb


def _panel(rgb: np.ndarray, title: str, boxes: np.ndarray | None = None, corner: str = "") -> np.ndarray:
    """One titled panel: a dark title strip above ``rgb``, the boxes drawn in grey, ``corner`` text."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = rgb.shape[:2]
    size = int(np.clip(width // 28, 10, 22))
    font = ImageFont.load_default(size=size)
    strip = size + 10
    canvas = Image.new("RGB", (width, height + strip), (24, 24, 24))
    canvas.paste(Image.fromarray(rgb), (0, strip))
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 4), title, fill=(255, 255, 255), font=font)
    if corner:
        draw.text((width - 6, 4), corner, fill=(255, 230, 90), font=font, anchor="ra")
    for min_row, min_col, max_row, max_col in [] if boxes is None else boxes:
        draw.rectangle(
            (min_col, min_row + strip, max_col - 1, max_row - 1 + strip), outline=(150, 150, 150), width=1
        )
    return np.asarray(canvas)


def demo_picture(
    image: np.ndarray, truth: np.ndarray, labels: np.ndarray, boxes: np.ndarray, model: str, mean_iou: float
) -> np.ndarray:
    """The demo's picture: ``truth`` and ``labels`` side by side over ``image``, boxes on the right.

    Parameters
    ----------
    image
        ``(H, W)`` image, any numeric dtype.
    truth, labels
        ``(H, W)`` integer labels: the true objects and the model's (object ``k`` of both is box ``k``).
    boxes
        ``(N, 4)`` half-open boxes ``(min_row, min_col, max_row, max_col)``: the prompts.
    model
        Name shown in the right panel's title.
    mean_iou
        Shown in the right panel's corner.

    Returns
    -------
    numpy.ndarray
        ``(H + title, 2 W + 4, 3)`` uint8 RGB.
    """
    left = _panel(overlay_picture(image, truth), "truth")
    score = f"mean IoU {mean_iou:.3f}"
    right = _panel(overlay_picture(image, labels), f"{model} from the grey boxes", boxes=boxes, corner=score)
    gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def run_demo(
    image: np.ndarray,
    truth: np.ndarray,
    *,
    model: str = "auto",
    out_dir: Path = Path("napari-sam-demo"),
    device: DeviceLike = "auto",
) -> DemoSummary:
    """Box every true nucleus, segment, compare with the truth; write ``demo.png``, ``labels.tif``."""
    import time

    from PIL import Image
    from skimage.measure import regionprops

    from .api import segment
    from .engine.embed.embeddings import compute_embeddings
    from .engine.loading import load_model
    from .engine.training.evaluate import masks_iou

    chosen, weights = _resolve_demo_model(model)
    sam = load_model(chosen, device)
    regions = regionprops(truth)
    boxes = np.array([r.bbox for r in regions], dtype=float).reshape(-1, 4)
    start = time.perf_counter()
    emb = compute_embeddings(image, sam)
    embedded = time.perf_counter()
    labels = segment(image, boxes=boxes, embeddings=emb)
    done = time.perf_counter()
    found = np.array([labels == k + 1 for k in range(len(regions))]).reshape(-1, *truth.shape)
    expected = np.array([truth == r.label for r in regions]).reshape(-1, *truth.shape)
    ious = masks_iou(found, expected)
    mean_iou = float(np.mean(ious)) if ious.size else float("nan")
    out_dir.mkdir(parents=True, exist_ok=True)
    picture = out_dir / "demo.png"
    Image.fromarray(demo_picture(image, truth, labels, boxes, sam.name, mean_iou)).save(picture)
    import tifffile

    labels_path = out_dir / "labels.tif"
    tifffile.imwrite(labels_path, labels)
    return DemoSummary(
        model=sam.name,
        weights=weights,
        n_objects=len(boxes),
        mean_iou=mean_iou,
        embed_seconds=embedded - start,
        segment_seconds=done - embedded,
        picture=picture.resolve(),
        labels=labels_path.resolve(),
    )
