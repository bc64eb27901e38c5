"""resolve_device: "auto", explicit names, and clear errors for devices this machine lacks."""

from __future__ import annotations

import pytest
import torch

from napari_sam.engine.device import available_devices, resolve_device

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def test_available_devices_end_with_cpu():
    names = available_devices()
    assert names[-1] == "cpu"
    assert names.count("cpu") == 1
    assert all(n == "cpu" or n == "mps" or n.startswith("cuda:") for n in names)
    if not HAS_CUDA:
        assert not any(n.startswith("cuda") for n in names)


@pytest.mark.parametrize("spelling", ["auto", "AUTO", " auto ", None])
def test_auto_picks_the_best_available(spelling):
    expected = "cuda" if HAS_CUDA else ("mps" if HAS_MPS else "cpu")
    dev = resolve_device(spelling)
    assert isinstance(dev, torch.device)
    assert dev.type == expected
    assert dev == torch.device(available_devices()[0])


@pytest.mark.skipif(HAS_CUDA or HAS_MPS, reason="auto picks an accelerator here")
def test_auto_is_cpu_without_accelerators():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")


@pytest.mark.parametrize("spelling", ["cpu", "CPU", "  cpu ", "cpu:1", torch.device("cpu")])
def test_cpu_spellings(spelling):
    dev = resolve_device(spelling)
    assert dev == torch.device("cpu")
    assert dev.index is None
    # a tensor really goes there
    assert torch.zeros(1, device=dev).device.type == "cpu"


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3", "CUDA:3"])
def test_missing_cuda_raises_naming_device_and_alternatives(name):
    with pytest.raises(ValueError, match="available") as info:
        resolve_device(name)
    message = str(info.value)
    assert repr(name) in message
    assert "0 CUDA device" in message
    for available in available_devices():
        assert available in message


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_missing_cuda_as_torch_device_raises():
    with pytest.raises(ValueError, match=r"available: \[.*'cpu'\]"):
        resolve_device(torch.device("cuda", 1))


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_cuda_index_out_of_range_raises():
    count = torch.cuda.device_count()
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=f"{count} CUDA device"):
        resolve_device(f"cuda:{count}")


@pytest.mark.skipif(HAS_MPS, reason="this machine has MPS")
@pytest.mark.parametrize("name", ["mps", "MPS"])
def test_missing_mps_raises_naming_device_and_alternatives(name):
    with pytest.raises(ValueError, match="not available") as info:
        resolve_device(name)
    message = str(info.value)
    assert repr(name) in message
    assert "MPS" in message
    assert str(available_devices()) in message


@pytest.mark.parametrize("garbage", ["gpu", "foo", "", "cuda:x", "cuda:-1", "cpu:cpu", "auto:0"])
def test_garbage_strings_raise_value_error(garbage):
    with pytest.raises(ValueError, match=r"'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") as info:
        resolve_device(garbage)
    assert repr(garbage) in str(info.value)


@pytest.mark.parametrize("device", ["meta", torch.device("meta")])
def test_real_torch_devices_we_do_not_support_raise(device):
    with pytest.raises(ValueError, match="unsupported device") as info:
        resolve_device(device)
    assert "'cpu'" in str(info.value)


def test_non_string_garbage_raises_value_error():
    with pytest.raises(ValueError, match="device must be"):
        resolve_device(3.5)  # type: ignore[arg-type]
