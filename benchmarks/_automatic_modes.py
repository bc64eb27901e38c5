"""``bench_automatic.py modes``: AIS, APG and AMG side by side with the watershed baselines (issue 18).

One run, one machine, the same images for every method:

- **2D** (presets ``nuclei`` and ``wide`` of :mod:`napari_sam.data.synthetic`, held-out seeds 10000+,
  512² and 1024²): ``segment(image)`` (AIS: the model carries an instance decoder), ``segment(image,
  mode="apg")``, ``segment(image, mode="amg")`` (the shipped AMG path: 32 × 32 points, nano's ``nuclei``
  preset; slow, so on ``--amg-images`` images only, one run each) and the Otsu + distance-transform
  watershed baseline.
- **3D** (preset ``nuclei_3d`` stacks, seeds 10000+): ``segment(stack)`` (AIS per slice, then
  ``link_slices``), AIS as one 3D watershed over the per-slice maps stacked to ``(3, Z, H, W)``
  (``compute_embeddings`` + ``predict_maps`` per slice + ``ais_labels``), and an Otsu + 3D
  distance-transform watershed baseline (``bench_3d.baseline``, z spacing of the preset).

Each (method, image set) runs in its own subprocess with ``torch.set_num_threads(--threads)``: the peak
memory is the growth of the process's peak resident set size (``getrusage`` ``ru_maxrss``) from just
before the method's first call (model loaded, images read) to the end of its timed runs — numpy and
torch CPU allocations alike. Times are wall-clock, the median of ``--runs`` calls per image (AMG: one
call) after a warm-up on a 128² crop, then the median over images. One embedding of the image
(``compute_embeddings``; a stack's with ``percentile_scope="volume"``, as ``segment`` normalises it) is
timed just before each call, so that both see the same load; it is *included* in every total, and
``total / embedding`` is per image, then the median. ``maps`` / ``labels``: the
decoder's maps (``predict_maps``) and the watershed (AIS) or the prompting + suppression (APG) alone, on a
precomputed embedding. F1: mean over images of F1 at IoU 0.5 and of the mean F1 over IoU 0.5:0.05:0.95
(``_scoring.f1_scores``; 3D: IoU of voxels). The goals' PASS / FAIL lines are computed from these numbers.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _modes_report import TITLES, print_report  # noqa: E402
from _scoring import f1_scores, watershed_baseline  # noqa: E402

METHODS_2D = ("baseline", "ais", "apg", "amg")
METHODS_3D = ("linked", "watershed3d", "baseline3d")
#: Where the nano decoder's training run writes (scripts/train_nano_instance_decoder.py).
TRAINING_DIR = ROOT / "artifacts" / "nano-decoder"


# ------------------------------------------------------------------------------------------ worker


def _maxrss_mib() -> float:
    """The process's peak resident set size so far, MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _load_sam(decoder: str) -> Any:
    from napari_sam.engine.loading import load_model
    from napari_sam.model import build_sam
    from napari_sam.model.registry import shipped_nano_path

    if decoder == "shipped":
        sam = load_model("nano", "cpu")
    else:
        sam = build_sam(shipped_nano_path(), instance_decoder=decoder)
        sam.name = "nano"  # so that preset="auto" (AMG) is nano's "nuclei" preset, as for load_model
    if sam.instance_decoder is None:
        raise RuntimeError("the model has no instance decoder: pass --decoder")
    return sam


def _median_time(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _watershed_3d(sam: Any, stack: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """AIS of a stack as one 3D watershed: embed every slice, maps per slice, ``ais_labels`` in 3D."""
    import napari_sam as ns
    from napari_sam.engine.automatic.ais import ais_labels
    from napari_sam.engine.automatic.maps import predict_maps

    start = time.perf_counter()
    volume = ns.compute_embeddings(stack, sam, percentile_scope="volume")
    embedded = time.perf_counter()
    maps = np.stack([predict_maps(sam, volume[z]) for z in range(len(volume))], axis=1)  # (3, Z, H, W)
    mapped = time.perf_counter()
    labels = ais_labels(maps)
    done = time.perf_counter()
    return labels, {
        "embed_in_run_s": embedded - start,
        "maps_s": mapped - embedded,
        "labels_s": done - mapped,
    }


def _method(method: str, sam: Any, z_spacing: float) -> Callable[[np.ndarray], Any]:
    """The call that one image (or stack) of ``method`` times: image -> labels (or (labels, stages))."""
    import napari_sam as ns

    if method == "baseline":
        return watershed_baseline
    if method == "baseline3d":
        from bench_3d import baseline

        return lambda stack: baseline(stack, z_spacing)
    if method in ("ais", "linked"):
        return lambda image: ns.segment(image, model=sam)  # mode "auto": AIS, the model has a decoder
    if method in ("apg", "amg"):
        return lambda image: ns.segment(image, model=sam, mode=method)
    if method == "watershed3d":
        return lambda stack: _watershed_3d(sam, stack)
    raise ValueError(f"unknown method {method!r}")


def _warm_up(method: str, sam: Any, run: Callable[[np.ndarray], Any], image: np.ndarray) -> None:
    """One small call first (lazy initialisation, thread pools), left out of the timings."""
    import napari_sam as ns

    if method == "amg":  # 32 x 32 prompts would cost as much as the real call: 2 x 2 do the same set-up
        ns.automatic(image[:128, :128], model=sam, mode="amg", points_per_side=2)
    elif image.ndim == 3:
        run(image[:2, :128, :128])
    else:
        run(image[:128, :128])


def _embed(sam: Any, image: np.ndarray) -> Any:
    """The image's embeddings as ``segment`` makes them (a stack normalised as one volume)."""
    import napari_sam as ns

    return ns.compute_embeddings(image, sam, percentile_scope="volume" if image.ndim == 3 else "slice")


def _stages(method: str, sam: Any, image: np.ndarray, runs: int) -> dict[str, float]:
    """AIS / APG: the maps, then the labels, each alone on a precomputed embedding, seconds."""
    from napari_sam.engine.automatic.ais import ais_labels
    from napari_sam.engine.automatic.apg import apg_segment
    from napari_sam.engine.automatic.maps import predict_maps
    from napari_sam.engine.types import InstanceOptions

    if method not in ("ais", "apg"):
        return {}
    emb = _embed(sam, image)
    out = {}
    out["maps_s"], maps = _median_time(lambda: predict_maps(sam, emb), runs)
    opts = InstanceOptions()
    if method == "ais":
        out["labels_s"], _ = _median_time(lambda: ais_labels(maps, opts), runs)
    else:
        out["labels_s"], _ = _median_time(lambda: apg_segment(sam, emb, maps, opts), runs)
    return out


def _timed_runs(
    run: Callable[[np.ndarray], Any], sam: Any, image: np.ndarray, runs: int
) -> tuple[float, float | None, Any]:
    """Median time of ``run(image)`` and, with a model, of one embedding of ``image`` timed just before
    each run (so that both see the same load on the machine); and the last run's output."""
    totals, embeds, out = [], [], None
    for _ in range(runs):
        if sam is not None:
            start = time.perf_counter()
            _embed(sam, image)
            embeds.append(time.perf_counter() - start)
        start = time.perf_counter()
        out = run(image)
        totals.append(time.perf_counter() - start)
    return statistics.median(totals), statistics.median(embeds) if embeds else None, out


def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    """Time and score one method on one image set (in this process: its peak memory is the method's)."""
    import torch

    torch.set_num_threads(int(spec["threads"]))
    data = np.load(spec["data"])
    count = int(spec["count"])
    images, truths, seeds = data["images"][:count], data["labels"][:count], data["seeds"][:count]
    method = spec["method"]
    sam = None if method.startswith("baseline") else _load_sam(spec["decoder"])
    run = _method(method, sam, float(data["z_spacing"]))
    runs = int(spec["runs"])
    before = _maxrss_mib()
    _warm_up(method, sam, run, images[0])
    rows = []
    for seed, image, truth in zip(seeds, images, truths, strict=True):
        total, embed, out = _timed_runs(run, sam, image, runs)
        labels, stages = out if isinstance(out, tuple) else (out, {})
        scores = f1_scores(np.asarray(labels), truth)
        row = {
            "seed": int(seed),
            "total_s": total,
            "f1": scores,
            "n_pred": len(np.unique(labels)) - int((labels == 0).any()),
            "n_true": len(np.unique(truth)) - int((truth == 0).any()),
            **stages,
        }
        if embed is not None:
            row["embed_s"] = embed
        rows.append(row)
        print(
            f"  {method} {'x'.join(str(n) for n in image.shape)} seed {seed}: {total:.2f} s"
            + ("" if embed is None else f" (one embedding {embed:.2f} s)")
            + f", F1@0.5 {scores[0]:.3f} ({row['n_pred']} found / {row['n_true']} true)",
            flush=True,
        )
    # an embedding alone never needs more memory than the method, which embeds too
    peak = _maxrss_mib() - before
    if sam is not None:  # after the memory reading: the stages alone
        for row, image in zip(rows, images, strict=True):
            row.update(_stages(method, sam, image, runs))
    return {"method": method, "runs": runs, "peak_rss_mib": peak, "images": rows}


# ------------------------------------------------------------------------------------------ parent


def resolve_decoder(given: Path | None, folder: Path) -> tuple[str, str]:
    """The decoder every worker attaches (``"shipped"`` or a file copied into ``folder``), and what it is.

    Order: ``given``; the shipped nano decoder when registered; the training run's export, then its best
    checkpoint (copied once, so that every worker reads the same weights while training goes on); else a
    seeded random ``InstanceDecoder(initial_features=16, full_resolution=False)`` (timings only).
    """
    if given is not None:
        if not given.is_file():
            raise SystemExit(f"--decoder: no such file {given}")
        copy = folder / f"decoder{''.join(given.suffixes)}"
        shutil.copyfile(given, copy)
        return str(copy), f"{given} (given)"
    from napari_sam.model.registry import NANO_DECODER_SHA256

    if NANO_DECODER_SHA256 is not None:
        return "shipped", f"the shipped nano decoder (sha256 {NANO_DECODER_SHA256[:12]}…)"
    history = TRAINING_DIR / "history.json"
    for name in ("nano_decoder.safetensors", "best.pt"):
        path = TRAINING_DIR / name
        if path.is_file():
            copy = folder / f"decoder{path.suffix}"
            shutil.copyfile(path, copy)
            note = f"{path.relative_to(ROOT)} (not registered yet: a training artefact"
            if name == "best.pt" and history.is_file():
                state = json.loads(history.read_text())
                note += f", best of step {state.get('best_step')} of a run at step {state.get('step')}"
            return str(copy), note + ")"
    import torch
    from safetensors.torch import save_file

    from napari_sam.model import InstanceDecoder

    torch.manual_seed(0)
    decoder = InstanceDecoder(initial_features=16, full_resolution=False)
    path = folder / "random_decoder.safetensors"
    save_file({k: v.contiguous() for k, v in decoder.state_dict().items()}, str(path))
    return str(path), "RANDOM InstanceDecoder(initial_features=16, full_resolution=False): timings only"


def write_sets(args: Any, folder: Path) -> dict[str, Path]:
    """The held-out images as ``.npz`` files (images, labels, seeds, z_spacing), one per image set."""
    from napari_sam.data.synthetic import preset

    sets: dict[str, Path] = {}
    wanted = [(name, (size, size), args.images) for name in args.presets for size in args.sizes]
    if args.stacks:
        wanted.append(("nuclei_3d", tuple(args.stack), args.stacks))
    for name, shape, count in wanted:
        config = preset(name, shape=shape)
        count = count if len(shape) == 3 else max(count, args.amg_images)  # AMG's images among them
        seeds = list(range(args.first_seed, args.first_seed + count))
        samples = [config.sample(seed) for seed in seeds]
        key = f"{name} {'x'.join(str(n) for n in shape)}"
        sets[key] = folder / f"{key.replace(' ', '_')}.npz"
        np.savez(
            sets[key],
            images=np.stack([s.image for s in samples]),
            labels=np.stack([s.labels for s in samples]),
            seeds=np.asarray(seeds),
            z_spacing=np.float64(config.z_spacing),
        )
    return sets


def _spawn(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    name = f"{spec['method']}_{Path(spec['data']).stem}"
    spec_path, out_path = folder / f"{name}.spec.json", folder / f"{name}.out.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
    unit = "stack(s)" if spec["set"].startswith("nuclei_3d") else "image(s)"
    print(
        f"{TITLES[spec['method']]} on {spec['set']} ({spec['count']} {unit}, {spec['runs']} run(s))",
        flush=True,
    )
    done = subprocess.run([sys.executable, __file__, str(spec_path), str(out_path)], env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the worker for {name} failed (exit {done.returncode}); see its output above")
    return {**json.loads(out_path.read_text()), "set": spec["set"]}


def run_modes(args: Any) -> dict[str, Any]:
    """The whole benchmark; prints the tables and the goals, returns every figure."""
    import torch

    import napari_sam

    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "napari_sam": napari_sam.__version__,
        "load_average_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bench_modes_") as tmp:
        folder = Path(tmp)
        decoder, decoder_note = resolve_decoder(args.decoder, folder)
        print(f"instance decoder: {decoder_note}", flush=True)
        sets = write_sets(args, folder)
        plan = [(key, m) for key in sets if not key.startswith("nuclei_3d") for m in METHODS_2D if m != "amg"]
        plan += [(key, m) for key in sets if key.startswith("nuclei_3d") for m in METHODS_3D]
        if args.amg_images:
            plan += [(key, "amg") for key in sets if not key.startswith("nuclei_3d")]
        cells = []
        for key, method in plan:
            count = (
                args.amg_images
                if method == "amg"
                else args.stacks
                if key.startswith("nuclei_3d")
                else args.images
            )
            spec = {
                "method": method,
                "set": key,
                "data": str(sets[key]),
                "count": count,
                "runs": 1 if method == "amg" else args.runs,
                "threads": args.threads,
                "decoder": decoder,
            }
            cells.append(_spawn(spec, folder))
    machine["load_average_end"] = os.getloadavg()
    rows, goals = print_report(cells, machine, decoder_note, args)
    return {"machine": machine, "decoder": decoder_note, "summary": rows, "goals": goals, "cells": cells}


def _worker_main(argv: list[str]) -> int:
    spec_path, out_path = (Path(a) for a in argv)
    result = run_cell(json.loads(spec_path.read_text()))
    out_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
