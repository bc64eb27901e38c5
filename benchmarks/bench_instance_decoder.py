"""Automatic instance segmentation (AIS) with a micro-sam-format model: ours against micro-sam's.

One command, from this package's environment (micro-sam runs in the reference environment made by
``scripts/setup_reference_env.sh``, in a subprocess; its ``instance_segmentation`` module also needs
``.venv-ref/bin/pip install -q xxhash``):

    python benchmarks/bench_instance_decoder.py                 # 2 threads, 2 timed runs, ~4 min
    python benchmarks/bench_instance_decoder.py --runs 3 --json out.json

Both sides get the same file: a seeded random ``vit_b`` with a micro-sam-size instance decoder
(``initial_features=64``, random batch-norm statistics), saved once in micro-sam's checkpoint format
``{"model_state": {"sam." + key: tensor}, "decoder_state": {...}}`` in a temporary directory, and the same
seeded 512² RGB uint8 image. Random weights cost the same time as trained ones.

The two sides run alternately (micro-sam's in a worker process that waits between runs), one warm-up
run each, then ``--runs`` timed runs each; every stage is reported as its best run:

| stage | micro-sam 1.8.14 | ours |
|---|---|---|
| embedding | ``util.precompute_image_embeddings(predictor, image, ndim=2)`` | ``compute_embeddings(image, sam, normalize=None)`` |
| decoder | ``InstanceSegmentationWithDecoder.initialize(image, image_embeddings=…)`` | ``predict_maps(sam, embeddings)`` |
| watershed | ``InstanceSegmentationWithDecoder.generate()`` | ``ais_labels(maps)`` |
| total AIS | the sum of the three | the sum of the three |

Ours is loaded by ``build_sam(path)`` (the micro-sam checkpoint with its ``decoder_state``). The decoder
stage is the maps at the image's size (up-sampling and crop included) copied to numpy on both sides.
The output gives the CPU, the torch versions, the thread count, then the table (ratio = ours / micro-sam;
below 1 we are faster) and the largest difference of the two sides' maps. micro-sam 1.8.14's
``get_predictor_and_decoder`` returns its decoder in *training* mode (nothing calls ``.eval()``), so its
batch norms use each image's batch statistics; ours does the same for decoders from micro-sam's files
(``InstanceDecoder(batch_statistics=True)``, set by the loader), so the maps agree. They are also compared
with micro-sam's decoder switched to eval mode (untimed), to show how far apart the two modes are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("embedding", "decoder", "watershed")
DEFAULT_REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"


def make_image(seed: int, size: int = 512) -> np.ndarray:
    """A blocky seeded RGB uint8 image ``(size, size, 3)`` (structure at 8 px)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(size // 8, size // 8, 3)).astype(np.uint8)
    return np.kron(base, np.ones((8, 8, 1), np.uint8))


def _seeded_weights(module: Any, seed: int) -> None:
    """Every parameter (and batch-norm statistic) replaced by seeded values of a trained-like scale.

    PyTorch's default initialisation of a 12-block ViT gives activations so large that float rounding
    decides the maps; at these scales both implementations' maps agree to ~1e-4.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(module.named_parameters()):
            noise = torch.randn(param.shape, generator=gen)
            if param.ndim == 1:
                param.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.05 * noise)
            elif "pos_embed" in name:
                param.copy_(0.5 * noise)
            else:
                param.copy_(noise / float(np.sqrt(max(1, int(np.prod(param.shape[1:]))))))
        for name, buf in sorted(module.named_buffers()):
            if name.endswith("running_mean"):
                buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
            elif name.endswith("running_var"):
                buf.copy_(1.0 + 0.3 * torch.rand(buf.shape, generator=gen))


def write_checkpoint(path: Path, seed: int) -> None:
    """Seeded random vit_b + micro-sam-size decoder in micro-sam's checkpoint format."""
    import torch

    from napari_sam.model import InstanceDecoder, build_sam

    sam = build_sam("vit_b")
    _seeded_weights(sam, seed)
    decoder = InstanceDecoder(initial_features=64)
    _seeded_weights(decoder, seed + 1)
    model_state = {f"sam.{k}": v for k, v in sam.state_dict().items() if not k.startswith("instance_decoder")}
    torch.save({"model_state": model_state, "decoder_state": decoder.state_dict()}, path)


def _best(timings: list[dict[str, float]]) -> dict[str, float]:
    return {stage: min(run[stage] for run in timings) for stage in STAGES}


# ------------------------------------------------------------------------------------------- sides


class Ours:
    """Our AIS of one image: build_sam (the micro-sam file), compute_embeddings, predict_maps, ais_labels."""

    def __init__(self, checkpoint: Path, image: np.ndarray) -> None:
        import napari_sam
        from napari_sam.model import build_sam

        self.image = image
        self.sam = build_sam(checkpoint)
        if self.sam.instance_decoder is None:
            raise SystemExit(f"build_sam({checkpoint}) attached no instance decoder")
        self.info = {"napari_sam": getattr(napari_sam, "__version__", "?")}
        self.maps = np.zeros(0)
        self.objects = 0

    def run(self) -> dict[str, float]:
        import napari_sam
        from napari_sam.engine.automatic.ais import ais_labels
        from napari_sam.engine.automatic.maps import predict_maps

        t0 = time.perf_counter()
        embeddings = napari_sam.compute_embeddings(self.image, self.sam, normalize=None)
        t1 = time.perf_counter()
        self.maps = predict_maps(self.sam, embeddings)
        t2 = time.perf_counter()
        self.objects = int(ais_labels(self.maps).max())
        t3 = time.perf_counter()
        return {"embedding": t1 - t0, "decoder": t2 - t1, "watershed": t3 - t2}


def micro_sam_worker(checkpoint: Path, image_path: Path, out: Path, threads: int) -> None:
    """micro-sam's AIS in the reference environment, one run per ``run`` line on stdin.

    Answers each ``run`` with one JSON line of stage timings; ``save`` writes the last maps
    (``out``.npy) and versions (``out``) and answers ``saved``; end of input ends it.
    """
    import micro_sam
    import torch
    from micro_sam import util
    from micro_sam.instance_segmentation import InstanceSegmentationWithDecoder, get_predictor_and_decoder

    torch.set_num_threads(threads)
    image = np.load(image_path)
    predictor, decoder = get_predictor_and_decoder("vit_b", checkpoint, device="cpu")
    segmenter = InstanceSegmentationWithDecoder(predictor, decoder)
    objects = 0
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            t0 = time.perf_counter()
            embeddings = util.precompute_image_embeddings(predictor, image, ndim=2, verbose=False)
            t1 = time.perf_counter()
            segmenter.initialize(image, image_embeddings=embeddings)
            t2 = time.perf_counter()
            objects = int(np.max(segmenter.generate(output_mode="instance_segmentation")))
            t3 = time.perf_counter()
            print(json.dumps({"embedding": t1 - t0, "decoder": t2 - t1, "watershed": t3 - t2}), flush=True)
        elif line.strip() == "save":
            state = segmenter.get_state()
            maps = [state["foreground"], state["center_distances"], state["boundary_distances"]]
            info = {"torch": torch.__version__, "micro_sam": micro_sam.__version__, "objects": objects}
            info.update(threads=torch.get_num_threads(), decoder_training_mode=decoder.training)
            # its maps with batch norm's running statistics too (not timed): a fresh copy, since each
            # training-mode forward moved the running statistics
            _, fresh = get_predictor_and_decoder("vit_b", checkpoint, device="cpu")
            segmenter = InstanceSegmentationWithDecoder(predictor, fresh.eval())
            segmenter.initialize(image, image_embeddings=embeddings)
            state = segmenter.get_state()
            maps += [state["foreground"], state["center_distances"], state["boundary_distances"]]
            np.save(out.with_suffix(".npy"), np.stack(maps).astype(np.float32))
            out.write_text(json.dumps(info), encoding="utf-8")
            print("saved", flush=True)


class MicroSam:
    """micro-sam's side: a worker process in the reference environment, driven one run at a time."""

    def __init__(
        self, ref_python: Path, checkpoint: Path, image: np.ndarray, threads: int, tmp: Path
    ) -> None:
        image_path, self.out = tmp / "image.npy", tmp / "micro_sam.json"
        np.save(image_path, image)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        command = [str(ref_python), __file__, "--threads", str(threads), "--worker"]
        command += [str(checkpoint), str(image_path), str(self.out)]
        self.proc = subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._expect("ready")

    def _expect(self, word: str | None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        answer = self.proc.stdout.readline().strip()
        if not answer or (word is not None and answer != word):
            self.proc.kill()
            _, err = self.proc.communicate()
            raise SystemExit(
                f"micro-sam's side failed (exit {self.proc.returncode}):\n{err[-3000:]}\nIt needs the "
                "reference environment (scripts/setup_reference_env.sh) and `.venv-ref/bin/pip install -q xxhash`."
            )
        return answer

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def run(self) -> dict[str, float]:
        self._send("run")
        return dict(json.loads(self._expect(None)))

    def finish(self) -> tuple[dict[str, Any], np.ndarray]:
        self._send("save")
        self._expect("saved")
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()
        return json.loads(self.out.read_text(encoding="utf-8")), np.load(self.out.with_suffix(".npy"))


# ------------------------------------------------------------------------------------------ report


def table(ours: dict[str, float], theirs: dict[str, float]) -> list[str]:
    rows = [f"{'stage':<12} {'ours s':>9} {'micro-sam s':>12} {'ratio':>7}"]
    for stage in (*STAGES, "total AIS"):
        a, b = ours[stage], theirs[stage]
        rows.append(f"{stage:<12} {a:>9.3f} {b:>12.3f} {a / b:>7.2f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="timed runs per side, after one warm-up run")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    parser.add_argument("--seed", type=int, default=0, help="weights and image")
    parser.add_argument(
        "--ref-python", type=Path, default=DEFAULT_REF_PYTHON, help="the reference env's python"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    parser.add_argument(
        "--no-winograd",
        action="store_true",
        help="our decoder with direct 3x3 convolutions (set_winograd(False))",
    )
    parser.add_argument("--worker", nargs=3, metavar=("CKPT", "IMAGE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.threads < 1:
        parser.error("--runs and --threads must be at least 1")
    if args.worker:
        micro_sam_worker(*(Path(p) for p in args.worker), threads=args.threads)
        return 0
    if not args.ref_python.exists():
        parser.error(
            f"--ref-python {args.ref_python} does not exist (scripts/setup_reference_env.sh makes it)"
        )

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    from napari_sam.model import instance_decoder_fast

    torch.set_num_threads(args.threads)
    instance_decoder_fast.set_winograd(not args.no_winograd)
    image = make_image(args.seed)
    ours_runs: list[dict[str, float]] = []
    their_runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        checkpoint = tmp / "vit_b_micro_sam.pt"
        write_checkpoint(checkpoint, args.seed)
        theirs_side = MicroSam(args.ref_python, checkpoint, image, args.threads, tmp)
        ours_side = Ours(checkpoint, image)
        for i in range(args.runs + 1):  # alternating, so that a busy spell slows both; run 0 warms up
            their_run, our_run = theirs_side.run(), ours_side.run()
            if i:
                their_runs.append(their_run)
                ours_runs.append(our_run)
            print(
                f"run {i}{' (warm-up)' if not i else ''}: ours {our_run}, micro-sam {their_run}", flush=True
            )
        theirs_info, their_maps = theirs_side.finish()
    ours_info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "runs": ours_runs}
    ours_info.update(ours_side.info, objects=ours_side.objects)
    ours_info["winograd"] = instance_decoder_fast.winograd_enabled()
    theirs_info["runs"] = their_runs
    our_maps = ours_side.maps
    ours, theirs = _best(ours_runs), _best(their_runs)
    ours["total AIS"], theirs["total AIS"] = sum(ours.values()), sum(theirs.values())
    diff = float(np.abs(our_maps - their_maps[:3]).max())
    diff_eval = float(np.abs(our_maps - their_maps[3:]).max())

    print(f"device: {cpu_name()} ({os.cpu_count()} CPUs), {args.threads} threads on both sides")
    print(
        f"ours: torch {ours_info['torch']}, napari_sam {ours_info['napari_sam']}, "
        f"Winograd 3x3 convolutions {'on' if ours_info['winograd'] else 'off'}; "
        f"micro-sam {theirs_info['micro_sam']}, torch {theirs_info['torch']}"
    )
    print(f"image 512x512 RGB uint8, seed {args.seed}; best of {args.runs} timed runs per stage\n")
    print("\n".join(table(ours, theirs)))
    mode = "training" if theirs_info["decoder_training_mode"] else "eval"
    print(
        f"\nmax |maps ours - micro-sam| = {diff:.2e} (micro-sam's decoder as get_predictor_and_decoder "
        f"returns it, in {mode} mode: batch norm with {'batch' if mode == 'training' else 'running'} "
        f"statistics); {diff_eval:.2e} against it in eval mode (running statistics)"
    )
    print(f"objects (default thresholds): ours {ours_info['objects']}, micro-sam {theirs_info['objects']}")
    if args.json is not None:
        record = {"ours": ours_info, "micro_sam": theirs_info, "best": {"ours": ours, "micro_sam": theirs}}
        record.update(device=cpu_name(), threads=args.threads, seed=args.seed)
        record.update(max_map_diff=diff, max_map_diff_eval_mode=diff_eval)
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
