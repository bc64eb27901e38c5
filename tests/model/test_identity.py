"""State token and content digest: what they see and what they leave alone."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from napari_sam.model.identity import WeightsIds, content_digest, state_token


def _module(**tensors: torch.Tensor) -> nn.Module:
    module = nn.Module()
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            module.register_parameter(name, nn.Parameter(tensor))
        else:
            module.register_buffer(name, tensor)
    return module


def test_digest_sees_one_changed_value_in_a_large_tensor():
    module = _module(w=torch.randn(1000, 1001))  # not a whole number of 4 KiB blocks
    before = content_digest(module)
    module.w.data[500, 999] = torch.nextafter(module.w.data[500, 999], torch.tensor(1e9))  # one ulp
    assert content_digest(module) != before
    module.w.data.view(-1)[-1] += 1.0  # in the trailing bytes
    assert len({before, content_digest(module)}) == 2


def test_digest_is_the_same_for_the_same_values_in_new_tensors():
    module = _module(w=torch.randn(64, 65), b=torch.arange(7))
    before = content_digest(module)
    assert content_digest(copy.deepcopy(module)) == before
    module.to(torch.float64).to(torch.float32)
    assert content_digest(module) == before
    module.w.data = module.w.data.t().contiguous().t()  # another memory layout, same values
    assert content_digest(module) == before


def test_digest_tells_dtypes_names_and_swapped_blocks_apart():
    values = torch.randn(4096)
    base = content_digest(_module(w=values.clone()))
    assert content_digest(_module(w=values.double())) != base
    assert content_digest(_module(v=values.clone())) != base
    swapped = torch.cat([values[2048:], values[:2048]])  # two 4 KiB blocks swapped
    assert content_digest(_module(w=swapped)) != base


def _swap_two(words: torch.Tensor) -> None:
    first = words[0].clone()
    words[0] = words[1]
    words[1] = first


def _reverse_block(words: torch.Tensor) -> None:
    words[:1024] = words[:1024].flip(0).clone()


def _opposite_ulps(words: torch.Tensor) -> None:
    words[0] += 1
    words[5] -= 1


def _opposite_big_steps(words: torch.Tensor) -> None:
    words[0] += 2**22  # about ×2 and ÷2 of two floats: the same block sum
    words[1] -= 2**22


@pytest.mark.parametrize("change", [_swap_two, _reverse_block, _opposite_ulps, _opposite_big_steps])
def test_digest_sees_changes_that_keep_a_block_sum(change):
    module = _module(w=torch.randn(4096))
    before = content_digest(module)
    change(module.w.data.view(torch.int32))  # inside the first 4 KiB block, behind the token
    assert content_digest(module) != before


def test_digest_of_odd_tensors():
    bytes_at_offset_one = torch.arange(5000, dtype=torch.int64).to(torch.uint8)[1:]  # not 4-byte aligned
    module = _module(
        flags=torch.tensor([True, False, True]),
        scalar=torch.tensor(3.5),
        empty=torch.zeros(0, 3),
        fp16=torch.ones(4097, dtype=torch.float16),
        complex=torch.zeros(3, dtype=torch.complex128),
        raw=bytes_at_offset_one,
    )
    before = content_digest(module)
    module.raw[2] += 1
    assert content_digest(module) != before
    module.raw[2] -= 1
    assert content_digest(module) == before


def test_token_sees_in_place_changes_through_the_tensor_but_not_through_data():
    module = _module(w=torch.randn(8, 8))
    token = state_token(module)
    module.w.data.mul_(2.0)  # PyTorch gives .data its own version counter: the digest's case
    assert state_token(module) == token
    with torch.no_grad():
        module.w.mul_(2.0)
    assert state_token(module) != token


def test_weights_ids_latest_then_first_then_none():
    module = _module(w=torch.randn(16))
    ids = WeightsIds()
    assert ids.current(module, check_content=True) is None
    original = module.w.detach().clone()
    ids.give(module, "a" * 64)  # e.g. the file's sha256
    with torch.no_grad():
        module.w.add_(1.0)
    assert ids.current(module, check_content=False) is None
    ids.give(module, "b" * 64)  # the fingerprint of the changed weights
    assert ids.current(module, check_content=False) == "b" * 64
    module.w.data.copy_(original)  # back to the file's values, behind the version counter
    assert ids.current(module, check_content=False) == "b" * 64  # the cheap check cannot see it
    assert ids.current(module, check_content=True) == "a" * 64
    ids.give(module, None)
    assert ids.current(module, check_content=False) == "a" * 64  # still the file's values
    module.w.data.zero_()
    assert ids.current(module, check_content=True) is None
