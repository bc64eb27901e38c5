"""Embedding one big 2D image from a memory-mapped tif: peak memory and time, before / after.

A synthetic ``size × size`` uint8 tif (soft blobs on a gradient with noise) is written row band by
row band (never held in memory), read back the way ``napari-sam embed`` reads it
(:func:`napari_sam.io.read_image`: a ``numpy.memmap`` for an uncompressed tif) and embedded into a
zarr cache with ``compute_embeddings(image, model, cache=...)`` — 1024-pixel tiles with a 128-pixel
halo, the defaults for images over 2048 pixels — in a fresh child process per run. The peak
resident memory of that child (``ru_maxrss`` from ``os.wait4``) is the embedding's: torch, the model
and whatever the pipeline holds of the image.

    python benchmarks/bench_big_image.py                          # 8192² and 16384², this checkout
    python benchmarks/bench_big_image.py --quick                  # 4096², 8 tiles: a CI-sized check
    python benchmarks/bench_big_image.py --sizes 8192 --max-tiles 20
    git worktree add /tmp/base <commit>                           # the code to compare against …
    python benchmarks/bench_big_image.py --baseline-src /tmp/base/src   # … as a "before" column

``--max-tiles N`` stops each run after N encoded tiles (through ``cancel=``; the encoder calls are
counted, so it works on older code whose progress moves per slice): peak memory is reached within
the first tiles, so the figure stands for the whole image while the run takes a fraction of the
time; the time column is then per tile. With ``--baseline-src``, each size is also embedded by the
code under that ``src`` folder (put first on the child's ``PYTHONPATH``), and the table gets
before / after columns and their ratios.

Columns: image side, tiles (encoded / of the image), peak RSS of the child (MiB) and the image's own
size (MiB), peak / image, embedding wall time (s), seconds per tile, and the before / after ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROW_BAND = 1024


def make_tif(path: Path, size: int, seed: int = 0) -> None:
    """Write a ``(size, size)`` uint8 uncompressed tif, ``ROW_BAND`` rows at a time."""
    import tifffile

    out = tifffile.memmap(path, shape=(size, size), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size, (max(8, (size // 96) ** 2 // 16), 2))
    radii = rng.uniform(12, 40, len(centres))
    cols = np.arange(size, dtype=np.float32)
    for r0 in range(0, size, ROW_BAND):
        rows = np.arange(r0, min(size, r0 + ROW_BAND), dtype=np.float32)
        band = 40 + 30 * (rows[:, None] + cols[None, :]) / (2 * size)
        band = band + rng.normal(0, 6, band.shape).astype(np.float32)
        near = np.flatnonzero((centres[:, 0] > rows[0] - 50) & (centres[:, 0] < rows[-1] + 50))
        for k in near:
            (cy, cx), rad = centres[k], radii[k]
            c0, c1 = max(0, int(cx - rad)), min(size, int(cx + rad) + 1)
            yy = rows[:, None] - cy
            xx = cols[None, c0:c1] - cx
            band[:, c0:c1] += 150 * np.exp(-(yy**2 + xx**2) / (2 * (rad / 2) ** 2))
        out[r0 : r0 + len(rows)] = np.clip(band, 0, 255).astype(np.uint8)
    out.flush()
    del out


def embed_child(args: argparse.Namespace) -> None:
    """Runs in the child: embed the tif into the cache and print a JSON line."""
    import torch

    import napari_sam as ns
    import napari_sam.engine.embed.pipeline as emb_mod
    from napari_sam.errors import Cancelled
    from napari_sam.io import read_image

    image = read_image(args.tif)
    sam = ns.load_model(args.model, args.device)
    cancel = threading.Event()
    encoded = [0]
    real = emb_mod.encode_images

    def counting(*a: Any, **kw: Any) -> Any:
        out = real(*a, **kw)
        encoded[0] += int(out.shape[0])
        if args.max_tiles and encoded[0] >= args.max_tiles:
            cancel.set()
        return out

    emb_mod.encode_images = counting
    t0 = time.perf_counter()
    with contextlib.suppress(Cancelled):  # --max-tiles
        ns.compute_embeddings(image, sam, cache=args.cache, batch_size=args.batch_size, cancel=cancel)
    elapsed = time.perf_counter() - t0
    out = {
        "elapsed_s": elapsed,
        "tiles": encoded[0],
        "image_type": type(image).__name__,
        "device": str(sam.device),
        "torch": torch.__version__,
        "napari_sam": os.path.dirname(ns.__file__),
        "vm_hwm_mib": _own_peak_mib(),
    }
    print("RESULT " + json.dumps(out), flush=True)


def _own_peak_mib() -> float | None:
    """This process image's peak resident memory (Linux ``VmHWM``); None elsewhere.

    ``ru_maxrss`` of a child starts at its parent's resident size when it was forked, so the child
    reports its own peak as well.
    """
    try:
        with open("/proc/self/status") as status:
            line = next(ln for ln in status if ln.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


def run_child(tif: Path, cache: Path, args: argparse.Namespace, src: Path | None) -> dict[str, Any]:
    """Embed ``tif`` in a child process; its result with ``peak_rss_mib`` (from ``os.wait4``)."""
    shutil.rmtree(cache, ignore_errors=True)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [
        sys.executable, __file__, "--child", "--tif", str(tif), "--cache", str(cache),
        "--model", args.model, "--device", args.device, "--batch-size", str(args.batch_size),
        "--max-tiles", str(args.max_tiles or 0),
    ]  # fmt: skip
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{stdout}\n{stderr}")
    res = json.loads(line[len("RESULT ") :])
    own = res.pop("vm_hwm_mib", None)
    res["peak_rss_mib"] = own if own is not None else usage.ru_maxrss / 1024  # kilobytes on Linux
    return res


def n_tiles(size: int) -> int:
    from napari_sam.engine.embed.tiling import tile_windows
    from napari_sam.engine.types import TileSpec

    return len(tile_windows((size, size), TileSpec()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384], help="image sides to run")
    parser.add_argument("--quick", action="store_true", help="one 4096² image, 8 tiles")
    parser.add_argument("--max-tiles", type=int, default=None, help="stop each run after N tiles")
    parser.add_argument("--baseline-src", type=Path, default=None, help="src folder of the code to compare")
    parser.add_argument("--model", default="nano")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="where the tifs and caches go (temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tif", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        embed_child(args)
        return 0
    if args.quick:
        args.sizes = [4096]
        args.max_tiles = args.max_tiles or 8

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_big_image_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for size in args.sizes:
            tif = work / f"image_{size}.tif"
            if not tif.exists():
                make_tif(tif, size)
            row: dict[str, Any] = {"size": size, "image_mib": size * size / 2**20, "of_tiles": n_tiles(size)}
            if args.baseline_src is not None:
                row["before"] = run_child(tif, work / f"before_{size}.zarr", args, args.baseline_src)
            row["after"] = run_child(tif, work / f"after_{size}.zarr", args, None)
            rows.append(row)
            print(f"# {size}²: {json.dumps(row)}", file=sys.stderr, flush=True)
            shutil.rmtree(work / f"before_{size}.zarr", ignore_errors=True)
            shutil.rmtree(work / f"after_{size}.zarr", ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    first = rows[0]["after"]
    print(
        f"# {platform.platform()} | python {platform.python_version()} | torch {first['torch']} | "
        f"device {first['device']} | {os.cpu_count()} CPUs | model {args.model} | image {first['image_type']}"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table: one line per size and code version, ratios after / before."""
    header = ["size", "code", "tiles", "peak RSS MiB", "image MiB", "peak / image", "embed s", "s / tile"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        for code in ("before", "after"):
            if code not in row:
                continue
            r = row[code]
            values = [
                f"{row['size']}²", code, f"{r['tiles']} / {row['of_tiles']}", f"{r['peak_rss_mib']:.0f}",
                f"{row['image_mib']:.0f}", f"{r['peak_rss_mib'] / row['image_mib']:.1f}",
                f"{r['elapsed_s']:.1f}", f"{r['elapsed_s'] / max(1, r['tiles']):.2f}",
            ]  # fmt: skip
            lines.append("| " + " | ".join(values) + " |")
        if "before" in row:
            b, a = row["before"], row["after"]
            per_tile = (a["elapsed_s"] / max(1, a["tiles"])) / (b["elapsed_s"] / max(1, b["tiles"]))
            lines.append(
                f"| {row['size']}² | after / before | | {a['peak_rss_mib'] / b['peak_rss_mib']:.2f} | | | "
                f"| {per_tile:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
