"""Bad arguments and bad files for every ``napari-sam`` subcommand: exit status and message.

Exit status 2 for bad arguments (argparse, or a usage error found before any file is touched), 1 for
a file or request that failed; either way one line on stderr naming the problem, never a traceback.

Cases per subcommand (``CASES``; counted by ``test_case_count``):

=========  =====
(none)         3
models         5
demo           8
train         14
embed         19
segment       19
gui            1
=========  =====
total         69
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from napari_sam.cli import main

from .conftest import Env


def cli(command: str, what: str, args: str, code: int, match: str) -> Any:
    """One row: ``args`` with ``{tmp}`` (a folder of inputs) and ``{w}`` (tiny weights) filled in."""
    return pytest.param(command, args, code, match, id=f"{command or 'none'}-{what}")


BOXES = "--boxes {tmp}/boxes.csv --out {tmp}/labels --model {w} -q"
EMBED = "embed {tmp}/img.tif --out {tmp}/cache --model {w} -q"
TRAIN = "train {tmp}/pairs --out {tmp}/trained --model {w} --steps 1 --device cpu"
DEMO = "demo --out {tmp}/demo --model {w} --size 64"

NONE = [
    cli("", "no-command", "", 2, r"required: command"),
    cli("", "unknown-command", "frobnicate", 2, r"invalid choice: 'frobnicate'"),
    cli("", "unknown-option", "--bogus", 2, r"required: command|unrecognized arguments: --bogus"),
]

MODELS = [
    cli("models", "verify-text-file", "models --verify {tmp}/notes.txt", 1, r"notes.txt: .*corrupt"),
    cli("models", "verify-missing", "models --verify {tmp}/nope.pth", 1, r"not found: .*nope.pth"),
    cli("models", "verify-folder", "models --verify {tmp}/folder", 1, r"is a folder, not a weights file"),
    cli(
        "models",
        "download-unknown",
        "models --download vit_z",
        2,
        r"--download 'vit_z': not a model name; the names",
    ),
    cli("models", "verify-no-value", "models --verify", 2, r"--verify: expected one argument"),
]

DEMO_CASES = [
    cli("demo", "size-abc", "demo --size abc", 2, r"argument --size: expected a positive integer, got 'abc'"),
    cli("demo", "size-0", "demo --size 0", 2, r"argument --size: expected a positive integer"),
    cli("demo", "size-negative", "demo --size -5", 2, r"argument --size"),
    cli(
        "demo",
        "size-huge",
        "demo --size 1000000",
        2,
        r"argument --size: expected an image side of 16 to 8192",
    ),
    cli("demo", "objects-negative", "demo --objects -1", 2, r"argument --objects: expected an integer >= 0"),
    cli("demo", "model-unknown", "demo --model vit_z --out {tmp}/demo", 2, r"--model 'vit_z' is neither"),
    cli("demo", "device-tpu", DEMO + " --device tpu", 2, r"--device: device must be .*got 'tpu'"),
    cli("demo", "out-is-a-file", "demo --out {tmp}/notes.txt --model {w} --size 64", 1, r"notes.txt"),
]

TRAIN_CASES = [
    cli("train", "no-out", "train {tmp}/pairs", 2, r"required: --out"),
    cli("train", "steps-negative", TRAIN + " --steps -1", 2, r"argument --steps: expected an integer >= 0"),
    cli("train", "steps-abc", TRAIN + " --steps abc", 2, r"argument --steps"),
    cli(
        "train", "batch-images-0", TRAIN + " --batch-images 0", 2, r"argument --batch-images: expected a pos"
    ),
    cli("train", "objects-0", TRAIN + " --objects 0", 2, r"argument --objects: expected a positive"),
    cli("train", "crop-negative", TRAIN + " --crop -16", 2, r"argument --crop"),
    cli("train", "lr-nan", TRAIN + " --lr nan", 2, r"argument --lr: expected a positive number, got 'nan'"),
    cli("train", "lr-negative", TRAIN + " --lr -1", 2, r"argument --lr"),
    cli("train", "lr-inf", TRAIN + " --lr inf", 2, r"argument --lr"),
    cli("train", "data-missing", "train {tmp}/nope --out {tmp}/t", 1, r"training folder not found: .*nope"),
    cli("train", "data-no-pairs", "train {tmp}/folder --out {tmp}/t", 1, r"no image/label pairs found"),
    cli(
        "train",
        "labels-of-other-shape",
        TRAIN.replace("pairs", "mismatch"),
        1,
        r"b_labels.tif has shape \(30, 30\), expected the image's \(40, 50\)",
    ),
    cli("train", "device-tpu", TRAIN.replace("cpu", "tpu"), 2, r"--device: .*'tpu'"),
    cli("train", "model-unknown", TRAIN.replace("{w}", "vit_q"), 2, r"--model 'vit_q' is neither"),
]

EMBED_CASES = [
    cli("embed", "no-out", "embed {tmp}/img.tif", 2, r"required: --out"),
    cli("embed", "no-inputs", "embed --out {tmp}/cache", 2, r"required: INPUT"),
    cli("embed", "input-missing", "embed {tmp}/nope.tif --out {tmp}/c -q", 2, r"input not found: .*nope.tif"),
    cli("embed", "folder-without-images", "embed {tmp}/folder --out {tmp}/c -q", 2, r"holds no images"),
    cli(
        "embed", "text-as-tif", "embed {tmp}/text.tif --out {tmp}/c --model {w} -q", 1, r"not a readable TIFF"
    ),
    cli(
        "embed",
        "out-is-a-file",
        "embed {tmp}/img.tif --out {tmp}/notes.txt -q",
        2,
        r"cannot create the output",
    ),
    cli("embed", "batch-size-0", EMBED + " --batch-size 0", 2, r"argument --batch-size: expected a positive"),
    cli("embed", "tile-negative", EMBED + " --tile -1", 2, r"argument --tile: expected an integer >= 0"),
    cli("embed", "tile-too-small", EMBED + " --tile 3", 1, r"tile_size must be at least 16 pixels, got 3"),
    cli("embed", "halo-without-tile", EMBED + " --halo 8", 2, r"--halo needs --tile"),
    cli("embed", "precision-fp8", EMBED + " --precision fp8", 2, r"argument --precision: invalid choice"),
    cli("embed", "channel-abc", EMBED + " --channel abc", 2, r"argument --channel: expected a channel index"),
    cli("embed", "channel-4-picks", EMBED + " --channel 0,1,2,3", 2, r"argument --channel"),
    cli("embed", "channel-out-of-range", EMBED + " --channel 5", 1, r"channel \[5\] out of range"),
    cli("embed", "slices-per-task-negative", EMBED + " --slices-per-task -1", 2, r"--slices-per-task"),
    cli("embed", "model-unknown", EMBED.replace("{w}", "vit_z"), 2, r"--model 'vit_z' is neither a model"),
    cli("embed", "model-missing-file", EMBED.replace("{w}", "{tmp}/no.pth"), 2, r"--model .*no.pth"),
    cli(
        "embed", "device-cuda7", EMBED + " --device cuda:7", 2, r"--device: device='cuda:7' is not available"
    ),
    cli("embed", "device-tpu", EMBED + " --device tpu", 2, r"--device: device must be"),
]

SEGMENT_CASES = [
    cli("segment", "no-prompt-option", "segment {tmp}/img.tif --out {tmp}/l", 2, r"one of the arguments"),
    cli("segment", "boxes-and-auto", "segment {tmp}/img.tif --auto " + BOXES, 2, r"not allowed with"),
    cli("segment", "format-png", "segment {tmp}/img.tif --format png " + BOXES, 2, r"argument --format"),
    cli(
        "segment",
        "boxes-csv-missing",
        "segment {tmp}/img.tif --boxes {tmp}/no.csv --out {tmp}/l",
        2,
        "not found",
    ),
    cli(
        "segment",
        "csv-columns",
        "segment {tmp}/img.tif --boxes {tmp}/bad.csv --out {tmp}/l",
        2,
        r"missing min_",
    ),
    cli(
        "segment", "csv-empty", "segment {tmp}/img.tif --boxes {tmp}/empty.csv --out {tmp}/l", 2, r"is empty"
    ),
    cli(
        "segment",
        "csv-text",
        "segment {tmp}/img.tif --boxes {tmp}/notes.txt --out {tmp}/l",
        2,
        r"need columns",
    ),
    cli(
        "segment", "csv-folder", "segment {tmp}/img.tif --boxes {tmp}/folder --out {tmp}/l", 2, r"cannot read"
    ),
    cli(
        "segment", "box-min>max", "segment {tmp}/img.tif --boxes {tmp}/flip.csv --out {tmp}/l", 2, r"greater"
    ),
    cli(
        "segment",
        "box-nan",
        "segment {tmp}/img.tif --boxes {tmp}/nan.csv --out {tmp}/l",
        2,
        r"must be finite",
    ),
    cli(
        "segment",
        "box-str",
        "segment {tmp}/img.tif --boxes {tmp}/str.csv --out {tmp}/l",
        2,
        r"must be a number",
    ),
    cli(
        "segment",
        "box-outside",
        "segment {tmp}/img.tif --boxes {tmp}/far.csv --out {tmp}/l --model {w} -q",
        1,
        r"lies entirely outside the image of shape \(40, 50\)",
    ),
    cli(
        "segment",
        "point-label-7",
        "segment {tmp}/img.tif --points {tmp}/pts.csv --out {tmp}/l",
        2,
        r"label must",
    ),
    cli(
        "segment",
        "input-text-as-tif",
        "segment {tmp}/text.tif " + BOXES,
        1,
        r"text.tif is not a readable TIFF",
    ),
    cli("segment", "input-missing", "segment {tmp}/nope.tif " + BOXES, 2, r"input not found"),
    cli(
        "segment",
        "out-is-a-file",
        BOXES.replace("labels", "notes.txt").join(["segment {tmp}/img.tif ", ""]),
        2,
        "out",
    ),
    cli("segment", "cache-is-a-file", "segment {tmp}/img.tif --cache {tmp}/notes.txt " + BOXES, 2, r"cache"),
    cli(
        "segment",
        "model-unknown",
        "segment {tmp}/img.tif " + BOXES.replace("{w}", "vit_z"),
        2,
        r"--model 'vit_z'",
    ),
    cli(
        "segment", "device-tpu", "segment {tmp}/img.tif --device tpu " + BOXES, 2, r"--device: device must be"
    ),
]

GUI = [cli("gui", "sample-unknown", "gui --sample nuclei_9d", 2, r"argument --sample: invalid choice")]

CASES = [*NONE, *MODELS, *DEMO_CASES, *TRAIN_CASES, *EMBED_CASES, *SEGMENT_CASES, *GUI]

BOX_HEADER = "file,min_row,min_col,max_row,max_col\n"


@pytest.fixture(scope="module")
def inputs(env: Env, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cli_inputs")
    rng = np.random.default_rng(1)
    tifffile.imwrite(tmp / "img.tif", (rng.random((40, 50)) * 1000).astype(np.uint16))
    (tmp / "text.tif").write_text("not a tiff")
    (tmp / "notes.txt").write_text("notes")
    (tmp / "folder").mkdir()
    (tmp / "folder" / "readme.md").write_text("no images here")
    (tmp / "bad.csv").write_text("foo,bar\n1,2\n")
    (tmp / "empty.csv").write_text("")
    for name, row in {
        "boxes": "1,1,20,20",
        "flip": "20,20,1,1",
        "nan": "nan,1,20,20",
        "str": "a,b,c,d",
        "far": "1e12,1e12,2e12,2e12",
    }.items():
        (tmp / f"{name}.csv").write_text(f"{BOX_HEADER}img.tif,{row}\ntext.tif,{row}\n")
    (tmp / "pts.csv").write_text("file,row,col,label\nimg.tif,5,5,7\n")
    pairs = tmp / "pairs"
    pairs.mkdir()
    labels = np.zeros((40, 50), np.uint16)
    labels[5:20, 5:25] = 1
    tifffile.imwrite(pairs / "a.tif", (rng.random((40, 50)) * 255).astype(np.uint8))
    tifffile.imwrite(pairs / "a_labels.tif", labels)
    mismatch = tmp / "mismatch"
    mismatch.mkdir()
    tifffile.imwrite(mismatch / "b.tif", (rng.random((40, 50)) * 255).astype(np.uint8))
    tifffile.imwrite(mismatch / "b_labels.tif", labels[:30, :30])
    return tmp


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NAPARI_SAM_WEIGHTS", raising=False)


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return int(exc.code or 0)


@pytest.mark.parametrize(("command", "args", "code", "match"), CASES)
def test_bad_cli_call_exits_with_status_and_message(env, inputs, capsys, command, args, code, match):
    argv = args.format(tmp=inputs, w=env.weights).split()
    assert run(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(match, err), err[-600:]


def test_case_count():
    counts = Counter(p.values[0] or "(none)" for p in CASES)
    rows = [re.fullmatch(r"(\S+) +(\d+)", line.strip()) for line in (__doc__ or "").splitlines()]
    table = {m[1]: int(m[2]) for m in rows if m}
    assert table.pop("total") == len(CASES)
    assert table == dict(counts)
    ids = [p.id for p in CASES]
    assert len(set(ids)) == len(ids)


def test_failed_file_does_not_stop_the_batch(env, inputs, tmp_path, capsys):
    out = tmp_path / "labels"
    argv = f"segment {inputs}/img.tif {inputs}/text.tif {BOXES.format(tmp=inputs, w=env.weights)}".split()
    argv[argv.index("--out") + 1] = str(out)
    assert run(argv) == 1
    assert "1 done, 0 skipped (already done), 1 failed" in capsys.readouterr().out
    assert tifffile.imread(out / "img_labels.tif").shape == (40, 50)
