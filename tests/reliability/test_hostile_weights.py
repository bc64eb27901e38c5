"""Weights files that lie: a declared architecture their tensors do not have, a wrong sha256.

Issue 16, item 8: a few hundred bytes of ``.safetensors`` whose metadata declares a huge
architecture used to be built (allocated and initialised) before its tensors were looked at, and
died in the allocator. Item 13: ``napari-sam models`` listed a local copy of an official file whose
sha256 is wrong as if it were fine.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap

import pytest

from tests._faults import spawn
from tests.conftest import GOLDEN

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="resource limits are POSIX")

#: Address space the child may use: enough for Python, torch and a small model, far from a big one.
ADDRESS_LIMIT = 3 << 30
#: Peak resident memory the child may reach (torch alone takes about 300 MB).
RSS_LIMIT_MB = 700


def _hostile(path, config: dict, tensors: dict) -> None:
    """A safetensors file holding tiny ``tensors`` and the architecture ``config`` as metadata."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"napari_sam_config": json.dumps(config)})


def _vit(**fields) -> dict:
    return {"encoder_depth": 12, "encoder_num_heads": 16, "encoder_global_attn_indexes": [], **fields}


LOAD_UNDER_A_LIMIT = """
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[3]), int(sys.argv[3])))
    import napari_sam as ns
    from napari_sam.errors import CheckpointError
    from napari_sam.model import build_sam

    how, path = sys.argv[1], sys.argv[2]
    start = time.perf_counter()
    try:
        if how == "load_model":
            ns.load_model(path, device="cpu")
        elif how == "build_sam":
            build_sam(path)
        else:
            build_sam(how, checkpoint=path)
    except CheckpointError as exc:
        print("refused:", exc)
    except BaseException as exc:
        print("failed otherwise:", type(exc).__name__, exc)
    else:
        print("loaded")
    print("seconds", time.perf_counter() - start)
    # VmHWM is this process image's own peak; ru_maxrss would keep the pytest parent's peak at fork
    try:
        with open("/proc/self/status") as status:
            hwm = next(line for line in status if line.startswith("VmHWM:"))
        print("peak_rss_mb", int(hwm.split()[1]) / 1024)
    except (OSError, StopIteration):
        print("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _load_in_child(tmp_path, how: str, path) -> tuple[str, float, float]:
    """``how`` loads ``path`` in a child limited to :data:`ADDRESS_LIMIT`; (message, seconds, peak MB)."""
    args = [how, str(path), str(ADDRESS_LIMIT)]
    proc = spawn(f"import sys\nsys.argv[1:] = {args!r}\n" + textwrap.dedent(LOAD_UNDER_A_LIMIT), tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    message = next(line for line in out.splitlines() if line.startswith(("refused", "failed", "loaded")))
    seconds = float(re.search(r"^seconds (\S+)", out, re.MULTILINE).group(1))
    peak = float(re.search(r"^peak_rss_mb (\S+)", out, re.MULTILINE).group(1))
    return message, seconds, peak


#: A few tiny tensors under real key names (enough of them for the small declared depths below).
TINY = {
    "image_encoder.patch_embed.proj.weight": (2, 3, 2, 2),
    "image_encoder.stem.0.weight": (2, 3, 1, 1),
    "prompt_encoder.no_mask_embed.weight": (1, 2),
    "mask_decoder.iou_token.weight": (1, 2),
}

HOSTILE = {
    # (declared architecture, tensors, words the refusal must contain)
    "issue-16-file": (  # ~300 bytes
        _vit(encoder_embed_dim=16384, encoder_depth=32),
        {"image_encoder.patch_embed.proj.weight": (2, 3, 2, 2)},
        ("encoder_embed_dim=16384", "encoder_depth=32", "holds only 1 tensor"),
    ),
    "huge-embed-dim": (
        _vit(encoder_embed_dim=16384, encoder_depth=1),
        TINY,
        (
            "encoder_embed_dim=16384",
            "image_encoder.patch_embed.proj.weight (file (2, 3, 2, 2), metadata (16384, 3, 16, 16))",
        ),
    ),
    "million-blocks": (
        _vit(encoder_embed_dim=768, encoder_depth=1_000_000),
        {"image_encoder.pos_embed": (1, 1, 1, 4)},
        ("encoder_depth=1000000", "holds only 1 tensor"),
    ),
    "huge-nano": (
        {
            "encoder_type": "nano",
            "encoder_embed_dim": 65536,
            "encoder_depth": 1,
            "encoder_num_heads": 1,
            "encoder_global_attn_indexes": [],
            "encoder_widths": [32, 64, 65536],
        },
        TINY,
        (
            "encoder_embed_dim=65536",
            "image_encoder.stem.0.weight (file (2, 3, 1, 1), metadata (32, 3, 4, 4))",
        ),
    ),
}


@pytest.mark.parametrize("how", ["build_sam", "load_model"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_declared_architecture_is_checked_before_anything_is_allocated(tmp_path, case, how):
    import torch

    config, shapes, words = HOSTILE[case]
    path = tmp_path / f"{case}.safetensors"
    _hostile(path, config, {k: torch.zeros(shape) for k, shape in shapes.items()})
    assert path.stat().st_size < 2000

    message, seconds, peak = _load_in_child(tmp_path, how, path)
    assert message.startswith("refused:"), message
    assert path.name in message
    for word in words:
        assert word in message, message
    assert seconds < 10
    assert peak < RSS_LIMIT_MB


def test_weights_of_a_smaller_model_are_refused_before_the_requested_one_is_built(tmp_path):
    """``build_sam("vit_h", checkpoint=small)``: vit_h (2.5 GB) is never allocated."""
    message, _, peak = _load_in_child(tmp_path, "vit_h", GOLDEN / "small_a" / "weights.pth")
    assert message.startswith("refused:"), message
    assert "does not fit 'vit_h'" in message and "weights.pth" in message
    assert peak < RSS_LIMIT_MB


def test_honest_file_still_loads_under_the_same_limit(tmp_path):
    from napari_sam.model.registry import shipped_nano_path

    message, _, peak = _load_in_child(tmp_path, "build_sam", shipped_nano_path())
    assert message == "loaded"
    assert peak < RSS_LIMIT_MB


# ---------------------------------------------------------------------------------- napari-sam models


@pytest.fixture
def weights_folder(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("NAPARI_SAM_WEIGHTS", str(folder))
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "cache"))
    return folder


def _listing(capsys, name: str) -> tuple[int, str]:
    from napari_sam.cli import main

    code = main(["models"])
    out = capsys.readouterr().out
    return code, next(row for row in out.splitlines() if row.startswith(name + " "))


def test_models_flags_a_local_file_with_a_wrong_hash(weights_folder, capsys):
    bad = weights_folder / "sam_vit_b_01ec64.pth"
    bad.write_bytes(b"an interrupted download")
    _, line = _listing(capsys, "vit_b")
    assert str(bad) in line
    assert "WRONG HASH" in line
    _, other = _listing(capsys, "vit_l")
    assert "WRONG HASH" not in other  # nothing there


def test_models_hashes_once_and_again_when_the_file_changes(weights_folder, capsys, monkeypatch):
    import os

    import napari_sam.model.checkpoint as checkpoint
    import napari_sam.model.registry as registry
    from napari_sam.model.checkpoint import sha256_file

    path = weights_folder / "sam_vit_l_0b3195.pth"
    path.write_bytes(b"pretend these are the published weights")
    info = registry.OFFICIAL_WEIGHTS["vit_l"]
    published = registry.WeightsInfo(info.name, info.filename, info.url, sha256_file(path))
    monkeypatch.setitem(registry.OFFICIAL_WEIGHTS, "vit_l", published)
    hashed = []

    def counting(p, **kwargs):
        hashed.append(p)
        return sha256_file(p, **kwargs)

    monkeypatch.setattr(checkpoint, "sha256_file", counting)
    _, line = _listing(capsys, "vit_l")
    assert "sha256 ok" in line and "WRONG" not in line
    registry._verified.clear()  # a new process: only the on-disk record is left
    _, line = _listing(capsys, "vit_l")
    assert "sha256 ok" in line
    assert hashed.count(path) == 1  # remembered by (path, size, mtime)

    path.write_bytes(b"pretend these are the published weights, changed")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    _, line = _listing(capsys, "vit_l")
    assert "WRONG HASH" in line
    assert hashed.count(path) == 2
