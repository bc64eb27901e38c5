"""The ``napari-sam`` command: argument parsing and the subcommands; the work is done by the library."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ._version import __version__
from .batch import CSV_HELP
from .errors import NapariSamError, UsageError

if TYPE_CHECKING:
    from .batch import BatchSummary


#: The top-level ``--help`` epilog (plain text: argparse prints it as is).
EPILOG = """
examples:
  napari-sam models                       # the models, what they are for, which are on this machine
  napari-sam models --verify sam_vit_b_01ec64.pth
  napari-sam models --download vit_b_lm   # micro-sam's light-microscopy model and its decoder
  napari-sam export-model trained/model.safetensors vit_b_mine.pt   # back to micro-sam
  napari-sam demo                         # offline demo on synthetic nuclei: picture + labels
  napari-sam gui                          # napari with the annotator docked
  napari-sam embed stacks/ --out cache/   # embed every image of a folder (resumable)
  napari-sam segment stacks/ --boxes boxes.csv --cache cache/ --out labels/

Each command has its own --help. Exit status: 0 all done, 1 some item failed (the others are
done), 2 bad arguments, 130 interrupted (Ctrl-C; rerun the same command to resume).
"""


DEVICE_HELP = "auto (CUDA, then MPS, then the CPU), cpu, cuda[:N] or mps"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions and epilogs as written and adds ``(default: …)`` to options that have one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if text is None or "%(default)" in text or "default" in text:
            return text
        default = action.default
        if not action.option_strings or default is None or default is False or default == argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def _cmd_models(args: argparse.Namespace) -> int:
    from ._cli_models import cmd_export_model, cmd_models

    return (cmd_models if args.command == "models" else cmd_export_model)(args)


def _cmd_gui(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("napari") is None:
        raise UsageError("napari is not installed; install it with pip install 'napari-sam-pipeline[napari]'")
    if args.model is not None:
        _check_model(args.model)
    from ._widgets.launch import run

    run(args.images, sample=args.sample, model=args.model)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from .data.synthetic import nuclei_2d
    from .demo import run_demo

    _check_model_and_device(args)
    image, truth = nuclei_2d((args.size, args.size), n_objects=args.objects, seed=args.seed)
    start = time.perf_counter()
    summary = run_demo(image, truth, model=args.model, out_dir=Path(args.out), device=args.device)
    elapsed = time.perf_counter() - start
    print(summary.text())
    print(f"total {elapsed:.1f} s; wrote {summary.picture}")
    return 0 if np.isfinite(summary.mean_iou) else 1


TRAIN_EXAMPLES = """
Fine-tune on your own annotations (a folder with images/NAME.tif + labels/NAME.tif, or NAME.tif +
NAME_labels.tif side by side; tif, png, zarr or npy; labels are instance labels, 0 = background):

    napari-sam train my_annotations/ --model nano --steps 500 --out finetuned/
    napari-sam train my_annotations/ --model vit_b --freeze-encoder --steps 200 --out vitb-ft/

The run checkpoints to OUT/checkpoint.pt every 100 steps and resumes from it when started again;
the result is OUT/model.safetensors, usable as model="OUT/model.safetensors" everywhere. The nano
model trains on 256-px crops of the 1024 canvas; ViT models train on the whole canvas (slow on a CPU:
use --freeze-encoder, or a GPU with --device cuda).

Train only the instance decoder (automatic segmentation: segment --auto --mode ais/apg) on the frozen
encoder — the model's own decoder is fine-tuned, a model without one gets a new one:

    napari-sam train my_annotations/ --model nano --instance-decoder --out nano-ais/

1 pair in 5 is held out (none under 5 pairs, at most 8) and picks the decoder kept; it writes
OUT/model.safetensors (the model with the decoder) and OUT/model_decoder.pt (the decoder alone, in
micro-sam's format).
"""


def _cmd_train(args: argparse.Namespace) -> int:
    from .api import train

    _check_model_and_device(args)
    sam_only = {
        "--objects": args.objects,
        "--crop": args.crop,
        "--freeze-encoder": args.freeze_encoder or None,
    }
    given = [name for name, value in sam_only.items() if value is not None]
    if args.instance_decoder and given:
        raise UsageError(
            f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to --instance-decoder"
        )
    result = train(
        args.data,
        model=args.model,
        out=args.out,
        steps=args.steps,
        batch_images=args.batch_images,
        objects_per_image=8 if args.objects is None else args.objects,
        crop_size=256 if args.crop is None else args.crop,
        lr=args.lr,
        freeze_encoder=args.freeze_encoder,
        instance_decoder=args.instance_decoder,
        seed=args.seed,
        device=args.device,
    )
    last = result.history[-1] if result.history else {}
    loss = last.get("loss", float("nan"))
    if result.decoder is None:
        print(f"trained {result.step} steps (last loss {loss:.3f}); wrote {result.weights}")
        return 0
    validated = [entry for entry in result.history if "val_loss" in entry]
    best = min(validated, key=lambda entry: entry["val_loss"]) if validated else None
    kept = f", kept step {best['step']:.0f} (validation loss {best['val_loss']:.3f})" if best else ""
    print(
        f"trained the instance decoder {result.step} steps (last loss {loss:.3f}{kept}); wrote "
        f"{result.weights} and {result.decoder}"
    )
    return 0


def _int_at_least(text: str, low: int, expected: str) -> int:
    """``text`` as an integer of at least ``low``; else an argparse error saying what was ``expected``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def _non_negative_int(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def _demo_size(text: str) -> int:
    value = _positive_int(text)
    if not 16 <= value <= 8192:
        raise argparse.ArgumentTypeError(f"expected an image side of 16 to 8192 pixels, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _object_size(text: str) -> float | str:
    """``--object-size``: ``auto``, ``fixed`` or the objects' diameter in pixels (a positive number)."""
    from .engine.types import check_object_size

    if text in ("auto", "fixed"):
        return text
    try:
        value = float(text)
        check_object_size(value, "--object-size")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto, fixed or the objects' diameter in pixels (a number from 1), got {text!r}"
        ) from None
    return value


OBJECT_SIZE_HELP = (
    "scale images so that objects of this diameter (pixels) get the size the model segments best; "
    "auto: estimate it (from the boxes with --boxes); fixed: no object scaling "
    "(default: the model's, auto for nano, fixed for vit_b/l/h)"
)


def _check_model_and_device(args: argparse.Namespace) -> None:
    """Bad ``--model`` / ``--device`` are usage errors, found before any file is touched.

    With ``--scheduler`` the workers resolve both (their devices and storage may differ from here).
    """
    if getattr(args, "scheduler", None):
        return
    from .engine.device import resolve_device

    try:
        resolve_device(args.device)
    except ValueError as exc:
        raise UsageError(f"--device: {exc}") from None
    from ._cli_sam2 import sam2_names

    _check_model(args.model, also={"demo": ("auto",), "segment": sam2_names()}.get(args.command, ()))


def _check_model(model: str, also: tuple[str, ...] = ()) -> None:
    """A ``--model`` that is neither a model name (nor one of ``also``) nor a file is a usage error."""
    from .model.zoo import model_names

    names = (*model_names(), *also)
    if model not in names and not Path(model).expanduser().is_file():
        raise UsageError(f"--model {model!r} is neither a model name ({', '.join(names)}) nor a weights file")


def _channels(text: str) -> int | tuple[int, ...]:
    error = argparse.ArgumentTypeError(
        f"expected a channel index or up to 3 indices like 0,2,1, got {text!r}"
    )
    try:
        picks = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise error from None
    if not 1 <= len(picks) <= 3 or min(picks) < 0:
        raise error
    return picks[0] if len(picks) == 1 else picks


def _finish(summary: BatchSummary, strict: bool = False) -> int:
    print(summary.text())
    return summary.exit_status(strict)


EMBED_EXAMPLES = """
Each input gets one cache, OUT/NAME.embeddings.zarr (zarr v3, one chunk per slice). A run that was
stopped (Ctrl-C, kill, crash) resumes where it stopped when started again; slices whose image content
changed are recomputed; a cache made with another model or preprocessing is an error for that file
unless --overwrite. A cache path that is one of the inputs, or a folder there that is not a cache, is
never written, even with --overwrite; an OUT folder inside an input (an OME-Zarr store) is refused.

Inputs: tif / OME-TIFF, zarr / OME-Zarr (full-resolution level), png / jpg; folders are expanded to
the images directly inside them.

examples:
    napari-sam embed stack.tif --out cache/
    napari-sam embed data/*.ome.zarr --out cache/ --model vit_b --device cuda --batch-size 4
    napari-sam embed big_scan.tif --out cache/ --tile 1024 --halo 128
    napari-sam embed data/ --out /shared/cache --scheduler tcp://10.0.0.5:8786
    napari-sam embed huge_stack.zarr --out /shared/cache --scheduler tcp://10.0.0.5:8786 --slices-per-task 16

With --scheduler every file (or, with --slices-per-task, every N slices of a stack) is a task on that
dask.distributed cluster (pip install 'napari-sam-pipeline[distributed]'); inputs and OUT must be on
storage all workers see.
Exit status: 0 all done, 1 some file failed (the others are done), 2 bad arguments, 130 interrupted
(Ctrl-C: what was finished is kept; rerun the same command to resume).
"""

SEGMENT_EXAMPLES = f"""
{CSV_HELP}

Labels are written to OUT/NAME_labels.tif (or .zarr); for an OME-Zarr input with --format zarr they
are an OME-Zarr label image (multiscales + image-label metadata, the input's axes and scale).
Beside each goes OUT/NAME_labels.tif.napari-sam.json, a record of how it was made: the input (and
its size, modification time and a hash of its content), the prompts, the mode (boxes, points or
auto, and with --auto the method that ran: AIS, APG or AMG), the model, --propagate, --channel and
the format.

Outputs and inputs are told apart by that record:
  * labels whose record names this input, unchanged since, made from the same version of the
    input with the same prompts, mode, model and options, are skipped (a stopped batch resumes);
    --overwrite redoes them;
  * labels made another way (other prompts, mode, method or model, another version of the image, or
    unknown settings: records of earlier versions) are kept and that input fails with one line
    saying what changed; --overwrite redoes them;
  * any other file at a labels path (no record, another input's labels, labels edited since) is
    kept and that input fails with one error line; --overwrite replaces it;
  * a labels path that is one of the inputs, lies inside one or holds one is never written, even
    with --overwrite; an OUT or --cache folder inside an input is refused (exit 2);
  * labels with a record are not inputs: a folder scan leaves them out, and named on the command
    line (a shell glob over OUT) they are dropped with a note, so OUT may be the input folder.

A prompted object that gets no pixels (a box on background, a duplicated row) does not fail its
file: the other objects are segmented, the file is done, and its line says which objects are empty,
e.g. "stack.tif done (objects 4 (slice 2), 7 (slice 5) empty)"; the summary counts such files.
An input that no row of the table names is skipped ("skipped (no prompts)" in the summary) and
does not change the exit status, unless --strict; a table that names none of the inputs is an
error (exit 2). The same input given twice (or by its folder and by name) is segmented once.

examples:
    napari-sam segment cells.tif --boxes boxes.csv --out labels/
    napari-sam segment plates/ --points clicks.csv --out labels/ --format zarr
    napari-sam embed stacks/ --out cache/          # embed once, then segment as often as needed:
    napari-sam segment stacks/ --boxes boxes.csv --cache cache/ --out labels/
    napari-sam segment images/ --auto --out labels/
    napari-sam segment images/ --auto --mode ais --model my_microsam.pt --out labels/

--auto --mode: auto (default) runs the model's instance decoder (AIS: its foreground and distance
maps and a watershed; fast) when the model carries one, else the grid of point prompts (AMG; slow);
ais, apg (the watershed's seeds as prompts for SAM's mask decoder) and amg choose one; ais and apg
need a model with an instance decoder (micro-sam's checkpoints, or <weights>_decoder.pt beside the
weights file).

boxes.csv for two stacks:
    file,z,min_row,min_col,max_row,max_col
    stack1.tif,3,10,20,60,90
    stack2.tif,0,5,5,40,40

Exit status: 0 all done, 1 some file failed (the others are done; with --strict also: some input
had no prompts), 2 bad arguments, 130 interrupted (Ctrl-C: what was finished is kept; rerun the
same command to resume).
"""


def _tile_option(args: argparse.Namespace) -> object:
    if args.halo is not None and args.tile is None:
        raise UsageError("--halo needs --tile SIZE")
    if args.tile is None:
        return None
    if args.tile == 0:
        return False
    return (args.tile, args.halo) if args.halo is not None else args.tile


def _cmd_embed(args: argparse.Namespace) -> int:
    from .batch import embed_files

    _check_model_and_device(args)
    summary = embed_files(
        args.inputs,
        args.out,
        model=args.model,
        device=args.device,
        channel=args.channel,
        tile=_tile_option(args),
        batch_size=args.batch_size,
        precision=args.precision,
        object_size=args.object_size,
        overwrite=args.overwrite,
        scheduler=args.scheduler,
        slices_per_task=args.slices_per_task,
        progress=not args.quiet,
    )
    return _finish(summary)


def _cmd_segment(args: argparse.Namespace) -> int:
    from ._cli_sam2 import check_sam2_segment
    from .batch import read_prompts_csv, segment_files

    if args.mode is not None and not args.auto:
        raise UsageError(f"--mode {args.mode} applies to automatic segmentation: add --auto")
    _check_model_and_device(args)
    check_sam2_segment(args)  # a SAM 2 --model: prompts on stacks only (usage errors naming --model)
    if args.masks:
        from ._cli_refine import cmd_refine_masks

        return cmd_refine_masks(args)
    boxes = read_prompts_csv(args.boxes, "boxes") if args.boxes else None
    points = read_prompts_csv(args.points, "points") if args.points else None
    summary = segment_files(
        args.inputs,
        args.out,
        boxes=boxes,
        points=points,
        auto=args.auto,
        mode=args.mode or "auto",
        format=args.format,
        cache=args.cache,
        model=args.model,
        device=args.device,
        channel=args.channel,
        object_size=args.object_size,
        overwrite=args.overwrite,
        scheduler=args.scheduler,
        progress=not args.quiet,
        propagate=args.propagate,
        precision=args.precision,
    )
    return _finish(summary, strict=args.strict)


def _add_batch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="nano", help="nano, vit_b/l/h or a weights path")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument(
        "--channel",
        type=_channels,
        metavar="C[,C,C]",
        help="multi-channel images: the channel to use, or up to 3 mapped to red, green, blue",
    )
    parser.add_argument("--object-size", type=_object_size, metavar="PX|auto|fixed", help=OBJECT_SIZE_HELP)
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that exist (never an input)")
    parser.add_argument(
        "--scheduler", metavar="ADDRESS", help="dask.distributed scheduler: run every file as a task there"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


#: What ``add_subparsers`` returns: the subcommands are added to it.
Subcommands = argparse._SubParsersAction


def _subcommand(
    sub: Subcommands, name: str, help: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand's parser, with this command's help formatting."""
    return sub.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=HelpFormatter
    )


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")


def _add_models(sub: Subcommands) -> None:
    models = _subcommand(
        sub,
        "models",
        help="list registered models, download or verify weights",
        description="List every model name this version knows: what it is for, where its weights\n"
        "are, whether they are on this machine, whether it segments automatically with an instance\n"
        "decoder. Download a model's files (official, or micro-sam's with their decoders), or check a\n"
        "weights file.",
    )
    models.add_argument(
        "--download", metavar="NAME", help="download NAME's files (checks sha256, or xxh128 for micro-sam's)"
    )
    models.add_argument("--verify", metavar="FILE", help="read FILE, name its architecture and hash")
    models.set_defaults(func=_cmd_models)


def _add_export_model(sub: Subcommands) -> None:
    export = _subcommand(
        sub,
        "export-model",
        help="write a model in micro-sam's checkpoint format (or ours)",
        description="Write MODEL (a name, or a weights file such as train's model.safetensors) to OUT in\n"
        "micro-sam's format, which its get_sam_model / get_predictor_and_decoder load. The nano\n"
        "model has no micro-sam counterpart: write it with --format napari_sam.",
    )
    export.add_argument("model", metavar="MODEL", help="a model name or a weights file")
    export.add_argument("out", metavar="OUT", help="the file to write (e.g. vit_b_mine.pt)")
    export.add_argument(
        "--format", default="micro_sam", choices=["micro_sam", "napari_sam"], help="the file's format"
    )
    export.add_argument(
        "--decoder",
        default="inside",
        choices=["inside", "beside", "none"],
        help="micro_sam format: the instance decoder in the file, beside it as OUT_decoder.pt "
        "(as micro-sam's zoo ships them), or left out",
    )
    export.set_defaults(func=_cmd_models)


def _add_demo(sub: Subcommands) -> None:
    demo = _subcommand(
        sub,
        "demo",
        help="segment synthetic nuclei offline and write a picture",
        description="Make a synthetic image of nuclei, segment every nucleus from its box with the\n"
        "shipped nano model (offline), print the mean IoU with the true nuclei and write\n"
        "OUT/demo.png (truth | model, the boxes drawn) and OUT/labels.tif.",
    )
    demo.add_argument("--model", default="auto", help="auto (the shipped nano), a name or a weights path")
    demo.add_argument("--out", default="napari-sam-demo", help="output folder (created)")
    demo.add_argument("--size", type=_demo_size, default=512, help="image side in pixels (16 to 8192)")
    demo.add_argument("--objects", type=_non_negative_int, default=25, help="number of nuclei")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the synthetic image")
    demo.add_argument("--device", default="auto", help=DEVICE_HELP)
    demo.set_defaults(func=_cmd_demo)


def _add_gui(sub: Subcommands) -> None:
    gui = _subcommand(
        sub,
        "gui",
        help="open napari with sample data (or your images) and the annotator docked",
        description="Open napari with the Annotator docked, on synthetic nuclei or on the given images.",
    )
    gui.add_argument("images", nargs="*", metavar="IMAGE", help="images to open instead of the sample")
    gui.add_argument(
        "--sample", default="nuclei_2d", choices=["nuclei_2d", "nuclei_3d"], help="sample data to open"
    )
    gui.add_argument(
        "--model",
        default=None,
        help="the model the annotator starts with: a name (nano, vit_b, micro-sam's vit_b_lm …) or a "
        "weights file (default: nano)",
    )
    gui.set_defaults(func=_cmd_gui)


def _add_train(sub: Subcommands) -> None:
    train = _subcommand(
        sub,
        "train",
        help="fine-tune a model on a folder of image/label pairs",
        description="Fine-tune a model (SAM-style interactive training) on your annotated images.",
        epilog=TRAIN_EXAMPLES,
    )
    train.add_argument("data", help="folder of image/label pairs")
    train.add_argument("--model", default="nano", help="starting model: nano, vit_b/l/h or a weights path")
    train.add_argument("--out", required=True, help="output folder (checkpoint, history, model)")
    train.add_argument(
        "--instance-decoder",
        action="store_true",
        help="train only the instance decoder (automatic segmentation, --mode ais/apg) on the frozen "
        "encoder: fine-tune the model's own, or a new one; also writes OUT/model_decoder.pt",
    )
    train.add_argument(
        "--steps",
        type=_non_negative_int,
        help="optimizer steps in all (default: 500); 800 with --instance-decoder",
    )
    train.add_argument("--batch-images", type=_positive_int, default=4, help="images per optimizer step")
    train.add_argument(
        "--objects", type=_positive_int, help="objects prompted per image and step (default: 8)"
    )
    train.add_argument("--crop", type=_positive_int, help="crop side on the canvas, nano only (default: 256)")
    train.add_argument(
        "--lr",
        type=_positive_float,
        help="peak learning rate, AdamW (default: 0.0001); 0.001 with --instance-decoder for a new decoder",
    )
    train.add_argument("--freeze-encoder", action="store_true", help="train prompt encoder + decoder only")
    train.add_argument(
        "--seed", type=int, default=0, help="random seed (crops, prompts, order; held-out pairs)"
    )
    train.add_argument("--device", default="auto", help=DEVICE_HELP)
    train.set_defaults(func=_cmd_train)


def _add_embed(sub: Subcommands) -> None:
    embed = _subcommand(
        sub,
        "embed",
        help="compute embedding caches of images and stacks (resumable, batch)",
        description="Compute the image embeddings of every input into a zarr cache, one slice at a time.",
        epilog=EMBED_EXAMPLES,
    )
    _add_inputs(embed)
    embed.add_argument("--out", required=True, metavar="DIR", help="folder of the caches (created)")
    embed.add_argument(
        "--tile",
        type=_non_negative_int,
        metavar="SIZE",
        help="tile slices larger than SIZE px (0: never; default: over 2048 px, in 1024 px tiles)",
    )
    embed.add_argument(
        "--halo", type=_non_negative_int, metavar="PX", help="tile overlap (default: 128, ≤ SIZE / 8)"
    )
    embed.add_argument("--batch-size", type=_positive_int, default=1, help="slices per encoder call")
    _add_precision(embed)
    embed.add_argument(
        "--slices-per-task",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="with --scheduler: split stacks into tasks of N slices (default 0: one task per file)",
    )
    _add_batch_options(embed)
    embed.set_defaults(func=_cmd_embed)


def _add_segment(sub: Subcommands) -> None:
    segment = _subcommand(
        sub,
        "segment",
        help="segment images from box / point tables, or automatically (batch)",
        description="Segment every input from prompt tables (CSV) or automatically; write labels.",
        epilog=SEGMENT_EXAMPLES,
    )
    _add_inputs(segment)
    prompts = segment.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--boxes", metavar="CSV", help="box prompts (format below)")
    prompts.add_argument("--points", metavar="CSV", help="point prompts (format below)")
    prompts.add_argument("--auto", action="store_true", help="automatic segmentation (no prompts)")
    prompts.add_argument(
        "--masks", metavar="LABELS", help="refine these labels of one INPUT (e.g. Cellpose's), ids kept"
    )
    segment.add_argument(
        "--mode",
        choices=["auto", "ais", "apg", "amg"],
        help="with --auto: auto (default: the instance decoder's AIS when the model has one, else AMG), "
        "ais, apg or amg (see below)",
    )
    segment.add_argument("--out", required=True, metavar="DIR", help="folder of the labels (created)")
    segment.add_argument(
        "--format", choices=["tif", "zarr"], help="labels format (default: zarr for zarr inputs, else tif)"
    )
    segment.add_argument(
        "--cache",
        metavar="DIR",
        help="folder of embedding caches (from napari-sam embed) to reuse; not inside an input",
    )
    segment.add_argument(
        "--propagate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="3D stacks: follow each prompted object up and down the stack (default); --no-propagate: "
        "segment the prompted slices only. With --auto: link the slices' objects into 3D objects",
    )
    segment.add_argument(
        "--strict",
        action="store_true",
        help="exit status 1 when an input has no prompts (by default it is skipped, exit 0)",
    )
    _add_batch_options(segment)
    _add_precision(segment, " (a SAM 2 --model: bf16 tracks in bfloat16, ~2x faster where supported)")
    segment.set_defaults(func=_cmd_segment)


def _add_precision(parser: argparse.ArgumentParser, more: str = "") -> None:
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help=f"encoder arithmetic; auto: bf16 on a CUDA GPU that has it (else fp16), fp32 elsewhere{more}",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-sam`` parser: one subcommand each for models, demo, gui, train, embed, segment and
    export-model."""
    parser = argparse.ArgumentParser(
        prog="napari-sam",
        description="Segment Anything for microscopy: embed, segment and fine-tune from the shell.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"napari-sam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_models, _add_demo, _add_gui, _add_train, _add_embed, _add_segment, _add_export_model):
        add(sub)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    print(f"napari-sam: warning: {message}", file=sys.stderr)


#: Exit status of a command stopped by Ctrl-C (SIGINT), as shells report it: 128 + 2.
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run the ``napari-sam`` command; returns its exit status (0, 1, 2 or 130: interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args))
    except KeyboardInterrupt:
        # what was finished is kept: batch outputs and cache slices are written atomically; zarr's I/O
        # tasks cut short by the interrupt are reported by asyncio at exit ("Task was destroyed but it is
        # pending!") — expected after Ctrl-C, so not shown
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        print(f"napari-sam {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        print(f"napari-sam {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (NapariSamError, ValueError, OSError, NotImplementedError) as exc:
        print(f"napari-sam: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
