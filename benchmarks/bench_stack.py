"""Embedding a large 3D stack into the zarr cache: peak memory, speed, cache size.

A synthetic ``(Z, size, size)`` uint16 zarr stack (bright blobs on noise) is written to disk chunk
by chunk — it is never held in memory — and then embedded with ``compute_embeddings(stack, model,
cache=...)`` in a fresh child process per run, so the peak resident memory (``ru_maxrss``) is that
of the embedding alone (model, torch and one slice at a time). Running two stack depths shows that
the peak does not grow with Z.

    python benchmarks/bench_stack.py                                   # 50 and 200 slices of 2048²
    python benchmarks/bench_stack.py --slices 4 8 --size 512           # a quick check
    python benchmarks/bench_stack.py --device cuda --batch-size 4 --json out.json

Columns: slices, slice size, peak RSS of the child (MiB), wall time of ``compute_embeddings``,
slices/s, cache bytes on disk per slice, and (``--resume``) the time of a second call that finds
every slice done (hashes every input slice, reads nothing else).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_stack(path: Path, slices: int, size: int, seed: int = 0) -> None:
    """Write a ``(slices, size, size)`` uint16 zarr v3 array, one slice-chunk at a time."""
    import zarr

    arr = zarr.create_array(
        str(path), shape=(slices, size, size), chunks=(1, size, size), dtype="uint16", overwrite=True
    )
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for z in range(slices):
        plane = rng.normal(600, 40, (size, size)).astype(np.float32)
        for _ in range(max(4, size // 64)):
            cy, cx = rng.uniform(0, size, 2)
            r = rng.uniform(size / 80, size / 30)
            y0, y1 = max(0, int(cy - r)), min(size, int(cy + r) + 1)
            x0, x1 = max(0, int(cx - r)), min(size, int(cx + r) + 1)
            disc = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= r * r
            plane[y0:y1, x0:x1][disc] += rng.uniform(2000, 8000)
        arr[z] = np.clip(plane, 0, 65535).astype(np.uint16)


def embed_child(args: argparse.Namespace) -> None:
    """Runs in the child: embed the stack into the cache and print a JSON line."""
    import torch
    import zarr

    import napari_sam as ns

    stack = zarr.open_array(args.stack, mode="r")
    sam = ns.load_model(args.model, args.device)
    t0 = time.perf_counter()
    vol = ns.compute_embeddings(
        stack, sam, cache=args.cache, batch_size=args.batch_size, precision=args.precision, progress=False
    )
    elapsed = time.perf_counter() - t0
    assert vol.is_complete
    resume = None
    if args.resume:
        t0 = time.perf_counter()
        ns.compute_embeddings(stack, sam, cache=args.cache, batch_size=args.batch_size)
        resume = time.perf_counter() - t0
    out = {
        "elapsed_s": elapsed,
        "resume_s": resume,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "device": str(sam.device),
        "torch": torch.__version__,
    }
    print("RESULT " + json.dumps(out), flush=True)


def cache_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, nargs="+", default=[50, 200], help="stack depths to run")
    parser.add_argument("--size", type=int, default=2048, help="rows = cols of each slice")
    parser.add_argument("--model", default="nano")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--resume", action="store_true", help="also time a second, fully cached call")
    parser.add_argument("--workdir", type=Path, default=None, help="where the stack and cache go (temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stack", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        embed_child(args)
        return 0

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_stack_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in args.slices:
            stack = work / f"stack_{n}x{args.size}.zarr"
            cache = work / f"cache_{n}x{args.size}.zarr"
            t0 = time.perf_counter()
            make_stack(stack, n, args.size)
            gen_s = time.perf_counter() - t0
            shutil.rmtree(cache, ignore_errors=True)
            cmd = [
                sys.executable, __file__, "--child", "--stack", str(stack), "--cache", str(cache),
                "--model", args.model, "--device", args.device, "--precision", args.precision,
                "--batch-size", str(args.batch_size),
            ] + (["--resume"] if args.resume else [])  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(proc.stdout, proc.stderr, file=sys.stderr)
                return 1
            res = json.loads(line[len("RESULT ") :])
            size = cache_bytes(cache)
            rows.append(
                {
                    "slices": n,
                    "size": args.size,
                    "peak_rss_mib": round(res["peak_rss_mib"], 1),
                    "embed_s": round(res["elapsed_s"], 2),
                    "slices_per_s": round(n / res["elapsed_s"], 3),
                    "cache_bytes_per_slice": size // n,
                    "resume_s": None if res["resume_s"] is None else round(res["resume_s"], 2),
                    "generate_s": round(gen_s, 1),
                    "device": res["device"],
                    "torch": res["torch"],
                    "batch_size": args.batch_size,
                    "model": args.model,
                }
            )
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    print(f"# {platform.platform()} | python {platform.python_version()} | torch {rows[0]['torch']}")
    header = ["slices", "size", "peak RSS MiB", "embed s", "slices/s", "cache B/slice", "resume s", "device"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        values = [
            r["slices"], f"{r['size']}²", r["peak_rss_mib"], r["embed_s"], r["slices_per_s"],
            r["cache_bytes_per_slice"], r["resume_s"] if r["resume_s"] is not None else "-", r["device"],
        ]  # fmt: skip
        print("| " + " | ".join(str(v) for v in values) + " |")
    if len(rows) > 1:
        growth = rows[-1]["peak_rss_mib"] - rows[0]["peak_rss_mib"]
        print(f"peak RSS change from {rows[0]['slices']} to {rows[-1]['slices']} slices: {growth:+.1f} MiB")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
