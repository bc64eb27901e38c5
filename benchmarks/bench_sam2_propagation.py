"""Ours vs the official ``sam2`` video predictor: per-frame propagation time and memory (issue 21).

Run it with the reference environment's python (it has both packages; ``scripts/setup_reference_env.sh``):

    .venv-ref/bin/python benchmarks/bench_sam2_propagation.py                     # tiny, 32 frames + memory
    .venv-ref/bin/python benchmarks/bench_sam2_propagation.py --frames 16 --image-size 512 --json out.json
    .venv-ref/bin/python benchmarks/bench_sam2_propagation.py --memory-only --memory-frames 500
    .venv-ref/bin/python benchmarks/bench_sam2_propagation.py --device cuda
    .venv-ref/bin/python benchmarks/bench_sam2_propagation.py --precision bfloat16   # ours in bfloat16

Both sides get the same seeded random weights (``scripts/make_sam2_fixtures.py``'s generator: the
official model's state dict, loaded strictly into our :class:`~napari_sam.model.sam2.sam2.Sam2`), so
nothing is downloaded. The official model is ``SAM2VideoPredictor`` built from its classes as the
sam2.1 yaml files compose them (``fill_hole_area=0``: hole filling needs sam2's CUDA extension), float32.

- frames: a synthetic time-lapse (``--frames``, ``--size``² RGB): a bright blob circling over a
  textured background with two dimmer distractors; resized to the canvas and normalised once, and
  the same tensor given to both (the official predictor through a patched ``load_video_frames``).
- prompt: one object, a box around the blob on the middle frame; propagated forwards, then backwards.
- encoder: each side's image encoder on every frame (``forward_image``: trunk, neck and the decoder's
  high-res projections), timed per frame; the features are cached, so **propagation times exclude
  the encoder** (the official predictor finds each frame's features in its own one-frame cache; ours
  gets them from its feature source).
- propagation: the time from one yielded frame to the next (memory attention, heads, memory encoder,
  the output resize), per tracked frame; ``--runs`` rounds, official and ours alternating.
- agreement: our masks against the official ones on every frame (logits and IoU of ``> 0``).
- memory (``--memory-frames M``): each side prompts and propagates ``M // 10`` and ``M`` frames in its
  own subprocess, on cheap features (4 encoded frames, reused cyclically: no ``M`` encoder passes),
  and reports the peak resident set size while tracking (``VmHWM`` after resetting it once the model
  and features are ready; ``ru_maxrss`` where the reset is not allowed) and its growth over the set-up.
  The official predictor's frames are an expanded zero tensor there, so its figure is its inference
  state (every frame's memory and low-res mask) without the decoded video, which it would also hold
  (``3 × S² × 4`` bytes per frame, given in the notes). On CUDA the peak CUDA allocation is reported too.

The issue's goals are printed as met / not met: per-frame propagation time ≤ 0.7× the official
predictor's (CPU), and our peak RSS for ``M`` frames ≤ 1.2× that for ``M // 10`` frames. With
``--precision bfloat16`` our tracked frames run in bfloat16 (``Sam2Tracker(compute_dtype=...)``) against
the official float32 run: the time is printed beside the agreement, and not counted as the goal (the
goal compares the same arithmetic).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
try:
    import napari_sam
except ImportError:  # not installed in this environment: use the working tree
    sys.path.insert(0, str(ROOT / "src"))
    import napari_sam

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402
from _process_memory import reset_peak_rss, rss_now_kb, tensor_bytes, trim_heap  # noqa: E402
from _strict_json import strict  # noqa: E402

from napari_sam.model.sam2.configs import SAM2_CONFIGS, Sam2Config  # noqa: E402
from napari_sam.model.sam2.sam2 import PIXEL_MEAN, PIXEL_STD, FrameFeatures, Sam2  # noqa: E402
from napari_sam.model.sam2.tracking import Prompt, Sam2Tracker  # noqa: E402

GOAL_TIME_RATIO = 0.7
GOAL_RSS_RATIO = 1.2
MEMORY_FACTOR = 10
#: distinct encoded frames the memory runs cycle through
MEMORY_FEATURE_FRAMES = 4
#: added to the object-score head's last bias: with the seeded random weights the object is then judged
#: present (its score is near -0.7 without), so masks are compared where they are not all "absent"
OBJ_SCORE_BIAS = 1.0
#: Sam2Config fields the reference builder takes; every other field must keep its default
_REFERENCE_FIELDS = (
    "hiera_embed_dim",
    "hiera_num_heads",
    "hiera_stages",
    "hiera_global_att_blocks",
    "hiera_window_spec",
    "hiera_window_pos_embed_bkg_spatial_size",
    "mem_attn_num_layers",
    "mem_attn_dim_feedforward",
    "image_size",
)


# ----------------------------------------------------------------------------------------------------------
# set-up shared by both sides


def fixture_script() -> ModuleType:
    """``scripts/make_sam2_fixtures.py`` as a module: the seeded weights and the official builder."""
    spec = importlib.util.spec_from_file_location(
        "make_sam2_fixtures", ROOT / "scripts" / "make_sam2_fixtures.py"
    )
    if spec is None or spec.loader is None:
        raise SystemExit("scripts/make_sam2_fixtures.py is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_config(name: str, image_size: int | None) -> Sam2Config:
    if name not in SAM2_CONFIGS:
        raise SystemExit(f"unknown --config {name!r}; one of {sorted(SAM2_CONFIGS)}")
    data = SAM2_CONFIGS[name].to_dict()
    if image_size is not None:
        data["image_size"] = image_size
    return Sam2Config.from_dict(data)


def reference_fields(config: Sam2Config) -> dict[str, Any]:
    """The fields the official builder of the fixture script takes (it knows no others)."""
    defaults, data = Sam2Config().to_dict(), config.to_dict()
    other = sorted(k for k in data if k not in _REFERENCE_FIELDS and data[k] != defaults[k])
    if other:
        raise SystemExit(f"the reference builder cannot set {other}: use an official size")
    return {k: data[k] for k in _REFERENCE_FIELDS}


def seeded_weights(model: torch.nn.Module, seed: int, bias: float) -> dict[str, torch.Tensor]:
    """The fixture script's seeded state dict for ``model``'s keys (equal on both sides), ``bias``
    added to the object-score head's output."""
    script = fixture_script()
    return script.seeded_state_dict(script.key_listing(model), seed, bias)


def official_model(config: Sam2Config, seed: int, bias: float, device: torch.device) -> Any:
    """The official ``SAM2VideoPredictor`` with the seeded weights (eval, float32)."""
    try:
        import sam2  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"this benchmark needs the official sam2 package ({exc}); run it with the reference "
            "environment's python: scripts/setup_reference_env.sh, then "
            f".venv-ref/bin/python benchmarks/{Path(__file__).name}"
        ) from exc
    import sam2.sam2_video_predictor as vp

    vp.tqdm = lambda iterable, **_: iterable  # no progress bars in the log
    model = fixture_script().reference_model(reference_fields(config))
    model.load_state_dict(seeded_weights(model, seed, bias), strict=True)
    return model.to(device).eval()


def our_model(config: Sam2Config, seed: int, bias: float, device: torch.device) -> Sam2:
    """Our :class:`Sam2` with the same seeded weights (the keys are the official ones)."""
    model = Sam2(config)
    model.load_state_dict(seeded_weights(model, seed, bias), strict=True)
    return model.to(device).eval()


def blob_centre(t: int, size: int) -> tuple[float, float]:
    """``(x, y)`` of the tracked blob on frame ``t`` (one turn per 48 frames)."""
    angle = 2 * math.pi * t / 48
    return size * (0.5 + 0.22 * math.cos(angle)), size * (0.5 + 0.22 * math.sin(angle))


def blob_radius(size: int) -> float:
    return size * 0.09


def make_video(num_frames: int, size: int, seed: int) -> np.ndarray:
    """``(num_frames, size, size, 3)`` uint8: the blob circling, two dimmer distractors, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    texture = rng.random((size // 8, size // 8, 3)).astype(np.float32)
    background = 0.25 * np.kron(texture, np.ones((8, 8, 1), dtype=np.float32))[:size, :size]
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    r = blob_radius(size)
    for t in range(num_frames):
        image = background.copy()
        x, y = blob_centre(t, size)
        image += 0.65 * (((yy - y) ** 2 + (xx - x) ** 2) <= r**2)[..., None]
        for k, (dx, dy) in enumerate(((0.2, 0.25), (0.78, 0.7))):
            cx, cy = size * dx + 3 * math.sin(t / 5 + k), size * dy
            image += 0.35 * (((yy - cy) ** 2 + (xx - cx) ** 2) <= (0.7 * r) ** 2)[..., None]
        image += 0.08 * rng.random((size, size, 3), dtype=np.float32)
        frames[t] = np.clip(image * 255, 0, 255).astype(np.uint8)
    return frames


def preprocess(video: np.ndarray, canvas: int, device: torch.device) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` → float32 ``(N, 3, S, S)`` on the canvas, normalised (both sides get it)."""
    x = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != (canvas, canvas):
        x = F.interpolate(x, size=(canvas, canvas), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).to(device)


def prompt_box(frame: int, size: int) -> list[float]:
    """``(x0, y0, x1, y1)`` on the video around the blob on ``frame`` (a few pixels of margin)."""
    x, y = blob_centre(frame, size)
    r = blob_radius(size) + 3
    return [x - r, y - r, x + r, y + r]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------------------
# one side: prompt, then propagate both ways, timing every yielded frame


class OfficialRunner:
    """The official predictor on frames whose features are computed beforehand."""

    def __init__(self, model: Any, images: torch.Tensor, video_size: int) -> None:
        import sam2.sam2_video_predictor as vp

        self.model = model
        self.images = images
        self.video_size = video_size
        self.backbone: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}
        vp.load_video_frames = lambda **_: (self.images, video_size, video_size)
        get_feature = model._get_image_feature

        def from_cache(state: dict, frame_idx: int, batch_size: int) -> Any:
            # the official one-frame cache, filled with the precomputed features before it looks
            cached = self.backbone[frame_idx % len(self.backbone)]
            state["cached_features"] = {frame_idx: (self.images[frame_idx].unsqueeze(0), cached)}
            return get_feature(state, frame_idx, batch_size)

        model._get_image_feature = from_cache

    def encode(self, image: torch.Tensor) -> None:
        """Encode ``(1, 3, S, S)`` and cache it as the next frame's features."""
        self.backbone.append(self.model.forward_image(image))

    def run(self, frame: int, device: torch.device, keep: bool) -> Iterator[tuple[int, torch.Tensor | None]]:
        """Yields ``(frame, video-size mask logits)``: the prompt's frame first, then every tracked one."""
        model = self.model
        state = model.init_state(video_path="frames-in-memory")
        self.state = state
        _, _, masks = model.add_new_points_or_box(
            state, frame_idx=frame, obj_id=1, box=prompt_box(frame, self.video_size)
        )
        yield frame, masks if keep else None
        for reverse in (False, True):
            for t, _, masks in model.propagate_in_video(state, reverse=reverse):
                yield t, masks if keep else None


class OurRunner:
    """Our tracker on the same precomputed features."""

    def __init__(
        self, model: Sam2, images: torch.Tensor, video_size: int, precision: str = "float32"
    ) -> None:
        self.model = model
        self.images = images
        self.video_size = video_size
        self.compute_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]
        self.features: list[FrameFeatures] = []
        self.tracker: Sam2Tracker | None = None

    def encode(self, image: torch.Tensor) -> None:
        """Encode ``(1, 3, S, S)`` and cache it as the next frame's features."""
        self.features.append(self.model.forward_image(image))

    def run(self, frame: int, device: torch.device, keep: bool) -> Iterator[tuple[int, torch.Tensor | None]]:
        features = self.features
        tracker = Sam2Tracker(
            self.model,
            lambda i: features[i % len(features)],
            int(self.images.shape[0]),
            output_size=(self.video_size, self.video_size),
            compute_dtype=self.compute_dtype,
        )
        self.tracker = tracker
        scale = self.model.image_size / self.video_size
        box = torch.tensor(prompt_box(frame, self.video_size)) * scale
        result = tracker.add_prompt(Prompt(obj_id=1, frame=frame, box=box))
        yield frame, result.masks if keep else None
        for reverse in (False, True):
            for tracked in tracker.propagate(reverse=reverse):
                yield tracked.frame, tracked.masks if keep else None


def timed_run(
    runner: OfficialRunner | OurRunner, frame: int, device: torch.device, keep: bool
) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Prompt + propagation, with the time of each yield: the prompt, the two pass starts (the
    prompted frame again: the first also encodes its memory), and every tracked frame."""
    masks: list[torch.Tensor] = []
    intervals: list[float] = []
    starts: list[float] = []
    sync(device)
    last = time.perf_counter()
    prompt_s = 0.0
    areas: list[int] = []
    with torch.inference_mode():
        for i, (t, mask) in enumerate(runner.run(frame, device, keep)):
            sync(device)
            now = time.perf_counter()
            if i == 0:
                prompt_s = now - last
            elif t == frame:
                starts.append(now - last)
            else:
                intervals.append(now - last)
            if mask is not None:
                masks.append(mask.detach().float().cpu())
                areas.append(int((mask > 0).sum()))
            last = now
    return {"prompt_s": prompt_s, "start_s": starts, "frame_s": intervals, "areas": areas}, masks


# ----------------------------------------------------------------------------------------------------------
# memory: one side, one length, in its own process


def state_bytes(runner: OfficialRunner | OurRunner) -> int:
    """What the tracking state holds at the end: every frame's memory, pointer and mask the official
    inference state keeps (its frames and feature cache left out), or our tracker's memories."""
    if isinstance(runner, OfficialRunner):
        return tensor_bytes({k: v for k, v in runner.state.items() if k not in ("images", "cached_features")})
    tracker = runner.tracker
    return 0 if tracker is None else tensor_bytes([tracker._objects, tracker._maskmem_pos])


def memory_child(impl: str, frames: int, args: argparse.Namespace) -> dict[str, Any]:
    """Prompt the middle frame of a ``frames``-frame stack and track it both ways; memory figures."""
    device = torch.device(args.device)
    config = model_config(args.config, args.image_size)
    canvas = config.image_size
    k = min(MEMORY_FEATURE_FRAMES, frames)
    encoded = preprocess(make_video(k, args.size, args.seed), canvas, device)
    # the frames themselves are not used beyond the k encoded ones: a zero-copy stand-in
    images = torch.zeros(1, 3, canvas, canvas, device=device).expand(frames, -1, -1, -1)
    runner: OfficialRunner | OurRunner
    if impl == "official":
        runner = OfficialRunner(
            official_model(config, args.seed, args.obj_score_bias, device), images, args.size
        )
    else:
        runner = OurRunner(our_model(config, args.seed, args.obj_score_bias, device), images, args.size)
    with torch.inference_mode():
        for t in range(k):
            runner.encode(encoded[t : t + 1])
    del encoded
    gc.collect()
    trim_heap()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_cuda = torch.cuda.memory_allocated(device)
    setup = rss_now_kb()
    reset = reset_peak_rss()
    t0 = time.perf_counter()
    timing, _ = timed_run(runner, frames // 2, device, keep=False)
    elapsed = time.perf_counter() - t0
    after = rss_now_kb()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    peak = after.get("VmHWM", maxrss) if reset else maxrss
    result = {
        "impl": impl,
        "frames": frames,
        "setup_rss_mb": setup.get("VmRSS", 0) / 1024,
        "peak_rss_mb": peak / 1024,
        "peak_is_tracking_only": reset,
        "ru_maxrss_mb": maxrss / 1024,
        "growth_mb": (peak - setup.get("VmRSS", 0)) / 1024,
        "state_mb": state_bytes(runner) / 2**20,
        "tracked_frames": len(timing["frame_s"]),
        "seconds": elapsed,
        "median_frame_ms": 1e3 * statistics.median(timing["frame_s"]) if timing["frame_s"] else None,
    }
    if device.type == "cuda":
        result["cuda_peak_mb"] = (torch.cuda.max_memory_allocated(device) - base_cuda) / 2**20
    return result


def memory_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Both sides, ``M // 10`` and ``M`` frames, each in a fresh subprocess."""
    long = args.memory_frames
    short = max(2, long // MEMORY_FACTOR)
    results = []
    for impl in ("ours", "official"):
        for frames in (short, long):
            command = [sys.executable, str(Path(__file__).resolve()), "--child", f"{impl}:{frames}"]
            command += ["--config", args.config, "--size", str(args.size), "--seed", str(args.seed)]
            command += ["--device", args.device, "--threads", str(args.threads)]
            command += ["--obj-score-bias", str(args.obj_score_bias)]
            if args.image_size is not None:
                command += ["--image-size", str(args.image_size)]
            print(f"memory: {impl}, {frames} frames …", file=sys.stderr, flush=True)
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"the memory run {impl}:{frames} failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"  peak {row['peak_rss_mb']:.0f} MB (set-up {row['setup_rss_mb']:.0f} MB), "
                f"{row['seconds']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            results.append(row)
    return results


# ----------------------------------------------------------------------------------------------------------
# the report


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    x, y = a > 0, b > 0
    union = int((x | y).sum())
    return 1.0 if union == 0 else int((x & y).sum()) / union


def timing_runs(args: argparse.Namespace, config: Sam2Config, device: torch.device) -> dict[str, Any]:
    n = args.frames
    frame = n // 2
    t0 = time.perf_counter()
    video = make_video(n, args.size, args.seed)
    images = preprocess(video, config.image_size, device)
    official = OfficialRunner(
        official_model(config, args.seed, args.obj_score_bias, device), images, args.size
    )
    ours = OurRunner(
        our_model(config, args.seed, args.obj_score_bias, device), images, args.size, args.precision
    )
    print(f"built both models and {n} frames in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    encoder: dict[str, list[float]] = {"official": [], "ours": []}
    with torch.inference_mode():
        for t in range(n):
            for name, runner in (("official", official), ("ours", ours)):
                sync(device)
                start = time.perf_counter()
                runner.encode(images[t : t + 1])
                sync(device)
                encoder[name].append(time.perf_counter() - start)
    feature_diff = max(
        float((ours.features[t].image_embed - official.backbone[t]["vision_features"]).abs().max())
        for t in range(n)
    )
    print(
        f"encoded {n} frames: official {statistics.median(encoder['official']):.2f} s, "
        f"ours {statistics.median(encoder['ours']):.2f} s per frame",
        file=sys.stderr,
    )

    runs: dict[str, list[dict[str, Any]]] = {"official": [], "ours": []}
    masks: dict[str, list[torch.Tensor]] = {}
    for r in range(args.runs):
        for name, runner in (("official", official), ("ours", ours)):
            gc.collect()
            result, kept = timed_run(runner, frame, device, keep=r == 0)
            runs[name].append(result)
            if kept:
                masks[name] = kept
            print(
                f"propagation run {r + 1}/{args.runs}, {name}: median "
                f"{1e3 * statistics.median(result['frame_s']):.0f} ms per frame",
                file=sys.stderr,
            )
    diffs = [float((a - b).abs().max()) for a, b in zip(masks["official"], masks["ours"], strict=True)]
    ious = [mask_iou(a, b) for a, b in zip(masks["official"], masks["ours"], strict=True)]
    present = sum(1 for m in masks["official"] if bool((m > 0).any()))
    return {
        "encoder_s": encoder,
        "runs": runs,
        "agreement": {
            "max_logit_diff": max(diffs),
            "min_mask_iou": min(ious),
            "mean_mask_iou": float(np.mean(ious)),
            "frames_compared": len(ious),
            "frames_with_object_official": present,
            "max_feature_diff": feature_diff,
        },
    }


def table(rows: list[tuple[str, float, float, int]]) -> list[str]:
    width = max(len(r[0]) for r in rows)
    lines = [
        f"| {'metric':<{width}} | {'official':>9} | {'ours':>9} | {'ours / official':>15} |",
        f"|{'-' * (width + 2)}|{'-' * 10}:|{'-' * 10}:|{'-' * 16}:|",
    ]
    for label, official, ours, digits in rows:
        lines.append(
            f"| {label:<{width}} | {official:>9.{digits}f} | {ours:>9.{digits}f} | {ours / official:>15.2f} |"
        )
    return lines


def summarise_timing(timing: dict[str, Any], n: int) -> tuple[dict[str, Any], list[str]]:
    runs = timing["runs"]

    def pooled(name: str, key: str) -> list[float]:
        return [v for run in runs[name] for v in (run[key] if isinstance(run[key], list) else [run[key]])]

    tracked, rounds = len(runs["ours"][0]["frame_s"]), len(runs["ours"])
    metrics: list[tuple[str, str, Any, int]] = [
        ("encoder_median_s", f"encoder, 1 frame (s, median of {n})", lambda m: statistics.median(timing["encoder_s"][m]), 2),
        ("prompt_median_ms", "prompt: 1 box, no memory (ms)", lambda m: 1e3 * statistics.median(pooled(m, "prompt_s")), 1),
        ("frame_median_ms", f"propagation per tracked frame (ms, median of {tracked} × {rounds})", lambda m: 1e3 * statistics.median(pooled(m, "frame_s")), 1),
        ("frame_mean_ms", "propagation per tracked frame (ms, mean)", lambda m: 1e3 * statistics.mean(pooled(m, "frame_s")), 1),
        ("propagation_total_s", f"propagation of {n} frames, both ways (s)", lambda m: statistics.median(sum(r["frame_s"]) + sum(r["start_s"]) for r in runs[m]), 2),
    ]  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    rows = []
    for key, label, fn, digits in metrics:
        o, u = fn("official"), fn("ours")
        results[key] = {"official": o, "ours": u, "ratio": u / o}
        rows.append((label, o, u, digits))
    return results, table(rows)


def memory_table(rows: list[dict[str, Any]], cuda: bool) -> list[str]:
    extra = " CUDA peak MB |" if cuda else ""
    lines = [
        f"| implementation | frames | peak RSS MB | set-up RSS MB | growth MB | state at the end MB "
        f"| median ms / frame |{extra}",
        f"|---|---:|---:|---:|---:|---:|---:|{'---:|' if cuda else ''}",
    ]
    for r in rows:
        cell = f" {r['cuda_peak_mb']:.0f} |" if cuda else ""
        median = "–" if r["median_frame_ms"] is None else f"{r['median_frame_ms']:.1f}"
        lines.append(
            f"| {r['impl']} | {r['frames']} | {r['peak_rss_mb']:.0f} | {r['setup_rss_mb']:.0f} | "
            f"{r['growth_mb']:.0f} | {r['state_mb']:.1f} | {median} |{cell}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="sam2.1_hiera_tiny", help=f"one of {sorted(SAM2_CONFIGS)}")
    parser.add_argument(
        "--image-size", type=int, help="the model's canvas (default: the config's, 1024); smaller is faster"
    )
    parser.add_argument("--frames", type=int, default=32, help="frames of the timed propagation (default 32)")
    parser.add_argument("--size", type=int, default=512, help="side of the synthetic frames (default 512)")
    parser.add_argument(
        "--runs", type=int, default=1, help="timed propagations each, alternating (default 1)"
    )
    parser.add_argument(
        "--memory-frames",
        type=int,
        default=500,
        help=f"memory check: M frames against M // {MEMORY_FACTOR} (default 500); 0 skips it",
    )
    parser.add_argument("--memory-only", action="store_true", help="only the memory check (no timing run)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="our tracked frames' arithmetic (the official side stays float32; default float32)",
    )
    parser.add_argument("--seed", type=int, default=0, help="weights and frames seed")
    parser.add_argument(
        "--obj-score-bias",
        type=float,
        default=OBJ_SCORE_BIAS,
        help=f"added to the object-score head's bias (default {OBJ_SCORE_BIAS}: the object present)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the numbers as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # IMPL:FRAMES, a memory run (internal)
    args = parser.parse_args()
    if args.frames < 3 or args.runs < 1 or args.threads < 1 or args.memory_frames < 0:
        parser.error("--frames ≥ 3, --runs ≥ 1, --threads ≥ 1 and --memory-frames ≥ 0 are required")
    if args.memory_only and args.memory_frames < 2 * MEMORY_FACTOR:
        parser.error(f"--memory-only needs --memory-frames ≥ {2 * MEMORY_FACTOR}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = model_config(args.config, args.image_size)

    if args.child:
        impl, frames = args.child.split(":")
        print(json.dumps(memory_child(impl, int(frames), args)))
        return

    env = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "napari_sam": napari_sam.__version__,
        "sam2": _version("sam2"),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "config": args.config,
        "canvas": config.image_size,
        "video": f"{args.size}x{args.size} RGB uint8, synthetic",
        "frames": args.frames,
        "precision": args.precision,
        "memory_frames": args.memory_frames,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    timing = results = None
    timing_lines: list[str] = []
    if not args.memory_only:
        timing = timing_runs(args, config, device)
        results, timing_lines = summarise_timing(timing, args.frames)
    memory = memory_runs(args) if args.memory_frames >= 2 * MEMORY_FACTOR else []

    print(f"device: {env['device']} ({env['device_name']})")
    print(
        f"torch {env['torch']}, napari_sam {env['napari_sam']}, sam2 {env['sam2']}, python {env['python']}, "
        f"CPU count {env['cpu_count']}, torch threads {env['threads']}, load average {env['load_average']}"
    )
    print(
        f"model: {args.config} (seeded random weights, float32; ours tracks in {args.precision}), "
        f"canvas {config.image_size}², "
        f"video {env['video']}; one box on the middle frame, tracked forwards then backwards"
    )
    goals = {}
    if timing is not None and results is not None:
        print()
        print(f"timing, {args.frames} frames (propagation excludes the image encoder):")
        print()
        print("\n".join(timing_lines))
        a = timing["agreement"]
        print()
        print(
            f"agreement over {a['frames_compared']} outputs: mask logits within {a['max_logit_diff']:.2g}, "
            f"mask IoU min {a['min_mask_iou']:.4f} (mean {a['mean_mask_iou']:.4f}); object present on "
            f"{a['frames_with_object_official']} of them (official); image features within "
            f"{a['max_feature_diff']:.2g}"
        )
        ratio = results["frame_median_ms"]["ratio"]
        if args.precision == "float32":
            goals["time"] = {"ratio": ratio, "goal": GOAL_TIME_RATIO, "met": ratio <= GOAL_TIME_RATIO}
        else:
            print(
                f"ours in {args.precision}: per-frame propagation {ratio:.2f}× the official float32 "
                "predictor's (not the goal's comparison: a lower precision)"
            )
    if memory:
        long = args.memory_frames
        short = max(2, long // MEMORY_FACTOR)
        by = {(r["impl"], r["frames"]): r for r in memory}
        print()
        print(
            f"memory, {short} vs {long} frames (each run in its own process, features of "
            f"{MEMORY_FEATURE_FRAMES} encoded frames reused; peak = resident set while tracking):"
        )
        print()
        print("\n".join(memory_table(memory, device.type == "cuda")))
        print()
        for impl in ("ours", "official"):
            r = by[(impl, long)]["peak_rss_mb"] / by[(impl, short)]["peak_rss_mb"]
            print(f"{impl}: peak RSS {long} / {short} frames = {r:.2f}")
        video_mb = 3 * config.image_size**2 * 4 / 2**20
        print(
            f"(the official predictor would also hold the decoded video: {video_mb:.1f} MB per frame on the "
            f"{config.image_size}² canvas, {video_mb * long / 1024:.2f} GB for {long} frames; not counted above)"
        )
        rss_ratio = by[("ours", long)]["peak_rss_mb"] / by[("ours", short)]["peak_rss_mb"]
        goals["rss"] = {"ratio": rss_ratio, "goal": GOAL_RSS_RATIO, "met": rss_ratio <= GOAL_RSS_RATIO}
    print()
    if "time" in goals:
        g = goals["time"]
        where = "" if device.type == "cpu" else " (measured on GPU; the goal is for CPU)"
        print(
            f"goal: per-frame propagation ≤ {GOAL_TIME_RATIO}× the official: {g['ratio']:.2f}× — "
            f"{'met' if g['met'] else 'not met'}{where}"
        )
    if "rss" in goals:
        g = goals["rss"]
        print(
            f"goal: our peak RSS for {args.memory_frames} frames ≤ {GOAL_RSS_RATIO}× that for "
            f"{max(2, args.memory_frames // MEMORY_FACTOR)}: {g['ratio']:.2f}× — {'met' if g['met'] else 'not met'}"
        )
    if args.json is not None:
        payload = {"env": env, "results": results, "goals": goals, "memory": memory}
        if timing is not None:
            payload["agreement"] = timing["agreement"]
            payload["raw"] = {"encoder_s": timing["encoder_s"], "runs": timing["runs"]}
        args.json.write_text(json.dumps(strict(payload), indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
