"""Shared fixtures: the golden parity data made by scripts/make_golden.py."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "fixtures" / "golden"

#: hosts a test may resolve: this machine only (loopback servers, dask's local cluster)
_LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0", socket.gethostname()}
_resolve = socket.getaddrinfo


def _local_only(host, *args, **kwargs):
    if isinstance(host, bytes):
        host = host.decode()
    if host not in _LOCAL_HOSTS and not str(host).startswith("127."):
        raise socket.gaierror(socket.EAI_NONAME, f"tests never reach the internet (asked for {host!r})")
    return _resolve(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def _no_internet():
    """Nothing is downloaded in tests: resolving any host but this machine fails at once, so a test that
    would reach the internet fails (as offline) instead of depending on the network."""
    socket.getaddrinfo = _local_only
    yield
    socket.getaddrinfo = _resolve


SMALL_CONFIGS = ("small_a", "small_b")


def official_prompts_to_ours(case: dict[str, np.ndarray]) -> dict[str, object]:
    """Official prompts of a golden case ((x, y) points, inclusive boxes) → ``predict`` keywords."""
    from napari_sam.engine.decode.coords import boxes_xyxy_to_rc, points_xy_to_rc

    kwargs: dict[str, object] = {"multimask": bool(case["multimask"])}
    if "points" in case:
        kwargs["points"] = points_xy_to_rc(case["points"])
        kwargs["point_labels"] = case["labels"]
    if "box" in case:
        kwargs["box"] = boxes_xyxy_to_rc(case["box"])
    if "mask_input" in case:
        kwargs["mask_input"] = case["mask_input"]
    return kwargs


class Golden:
    """One golden case folder: config, official weights file and the official outputs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config_dict = json.loads((folder / "config.json").read_text())
        self.weights = folder / "weights.pth"
        self.arrays = np.load(folder / "cases.npz")

    def case(self, name: str) -> dict[str, np.ndarray]:
        prefix = f"{name}/"
        return {k[len(prefix) :]: self.arrays[k] for k in self.arrays.files if k.startswith(prefix)}

    def config(self):
        from napari_sam.model import SamConfig

        return SamConfig.from_dict(self.config_dict)

    def model(self):
        from napari_sam.model import build_sam

        return build_sam(self.config(), checkpoint=self.weights)


@pytest.fixture(scope="session", params=SMALL_CONFIGS)
def golden(request) -> Golden:
    return Golden(GOLDEN / request.param)


@pytest.fixture(scope="session")
def small_weights() -> Path:
    """An official-format weights file of a small random architecture."""
    return GOLDEN / "small_a" / "weights.pth"


@pytest.fixture(scope="session")
def small_model():
    return Golden(GOLDEN / "small_a").model()


@pytest.fixture
def one_torch_thread():
    """Tiny convolutions train several times faster on one thread when the cores are shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_sam2():
    """A SAM 2 of the tiny test config (Hiera 16 channels, 128 canvas), seeded, in eval mode, whose
    object-score head is biased so that objects are always present (random weights still paint
    pixels). Shared: tests must not change it (copy its state dict into a new model instead)."""
    import torch

    from napari_sam.model import build_sam
    from napari_sam.model.sam2.configs import tiny_test_config

    torch.manual_seed(0)
    model = build_sam(tiny_test_config())
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.add_(4.0)
    return model.eval()
