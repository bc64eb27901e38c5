"""Whether a module's weights are still those its weights id was given for.

A model's weights id (the sha256 of the file it was loaded from, or a fingerprint of its tensors)
is written into embedding caches and compared before embeddings are decoded, so it must describe
the weights the model holds *now*. Two checks tell whether they changed since the id was set:

- a **state token** (cheap, about a millisecond for vit_h): for every parameter and buffer its
  identity, version counter, data pointer, shape and dtype. PyTorch bumps a tensor's version on
  every in-place operation through it — optimizer steps, ``load_state_dict`` (a ``copy_``),
  ``p.mul_()`` — and replacing or moving a tensor changes its identity or data pointer.
- a **content digest** (one read of every tensor on its own device, a fraction of a sha256): a
  hash of two exact integer sums per 4 KiB block of the tensors' bytes, the plain sum of its words
  and their sum weighted by position. It catches what the token cannot see — in-place changes
  through ``p.data``, whose version counter is not the parameter's — and tells a model that was
  only moved (``.to("cuda")``, a dtype round trip, ``copy.deepcopy``) from one whose values
  changed: the same bytes give the same digest on any device.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Hashable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

#: Bytes summed into two numbers by :func:`content_digest` (as 1024 int32 words).
_BLOCK_BYTES = 4096
#: Blocks widened to int64 at a time by :func:`_block_sums` (8 MiB of scratch memory).
_CHUNK_BLOCKS = 1024


def _state_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every parameter and buffer (persistent or not) with its qualified name."""
    yield from module.named_parameters()
    yield from module.named_buffers()


def state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor that makes up ``module``'s computation, by qualified name.

    Unlike ``module.state_dict()``, this includes non-persistent buffers (such as a Sam's
    ``pixel_mean`` and ``pixel_std``, which change what the encoder sees but are not saved in
    weights files), so a fingerprint of it covers everything :func:`content_digest` and
    :func:`state_token` cover.

    Parameters
    ----------
    module
        Any ``nn.Module``.

    Returns
    -------
    dict
        Name → tensor (not copied); a tensor shared under several names appears under each.
    """
    tensors: dict[str, torch.Tensor] = dict(module.named_parameters(remove_duplicate=False))
    tensors.update(module.named_buffers(remove_duplicate=False))
    return tensors


def state_token(module: nn.Module) -> tuple[Hashable, ...]:
    """A cheap value that changes when any parameter or buffer of ``module`` is changed in place.

    Parameters
    ----------
    module
        Any ``nn.Module``.

    Returns
    -------
    tuple
        For each parameter and buffer: ``(id, version, data_ptr, shape, dtype)``. Equal tokens mean
        no tensor was replaced, moved or changed through itself; they say nothing about changes made
        through ``tensor.data`` (see :func:`content_digest`).
    """
    items = []
    for mod in module.modules():
        for tensor in itertools.chain(mod._parameters.values(), mod._buffers.values()):
            if tensor is not None:
                items.append(
                    (id(tensor), tensor._version, tensor.data_ptr(), tuple(tensor.shape), tensor.dtype)
                )
    return tuple(items)


def _as_words(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bytes of ``tensor`` as ``(blocks, 1024)`` int32 words, and the trailing bytes (uint8)."""
    raw = tensor.detach().reshape(-1).view(torch.uint8)
    full = raw.numel() - raw.numel() % _BLOCK_BYTES
    head, tail = raw[:full], raw[full:]
    try:
        words = head.view(torch.int32)
    except RuntimeError:  # a view at an offset that is not a multiple of 4 bytes
        words = head.clone().view(torch.int32)
    return words.view(-1, _BLOCK_BYTES // 4), tail


def _block_sums(words: torch.Tensor) -> torch.Tensor:
    """Two exact sums per block of ``(blocks, n)`` int32 words, on their device.

    Parameters
    ----------
    words
        ``(blocks, n)`` int32.

    Returns
    -------
    torch.Tensor
        ``(blocks, 2)`` int64: each block's sum ``Σ w[i]`` and position-weighted sum
        ``Σ (i + 1) · w[i]``. Both are exact (at most ``2**31 · n (n + 1) / 2``, well inside int64
        for ``n = 1024``), so they are the same on every device and in every summation order.
        Together they see any one changed word, two words swapped, and two words changed by
        opposite amounts (``±1`` ulp): such a change moves the weighted sum by ``(i - j) · d != 0``.
    """
    n_blocks, n = words.shape
    sums = torch.empty((n_blocks, 2), dtype=torch.int64, device=words.device)
    if n_blocks == 0:
        return sums
    weights = torch.arange(1, n + 1, dtype=torch.int64, device=words.device)
    scratch = torch.empty((min(n_blocks, _CHUNK_BLOCKS), n), dtype=torch.int64, device=words.device)
    for start in range(0, n_blocks, _CHUNK_BLOCKS):
        chunk = words[start : start + _CHUNK_BLOCKS]
        wide = scratch[: chunk.shape[0]]
        wide.copy_(chunk)
        sums[start : start + chunk.shape[0], 0] = wide.sum(dim=1)
        wide.mul_(weights)
        sums[start : start + chunk.shape[0], 1] = wide.sum(dim=1)
    return sums


def content_digest(module: nn.Module) -> str:
    """A hash of the names, shapes, dtypes and values of every parameter and buffer of ``module``.

    Each 4 KiB block of a tensor's bytes, read as 1024 int32 words, gives two exact int64 numbers
    on the tensor's own device: the sum of its words and their position-weighted sum (see
    :func:`_block_sums`); those numbers, the few trailing bytes and the names, shapes and dtypes
    are hashed with blake2b. The same bytes give the same digest on every device. Any change of one
    value, two values swapped within a block, a block reversed (unless it reads the same backwards)
    and a pair of opposite changes (``+1`` and ``-1`` ulp) change the digest; a change is missed
    only when it keeps both sums of every block, which takes at least three values changed in one
    block in a balanced pattern (such as ``+d``, ``-2d``, ``+d`` at three consecutive words).

    Parameters
    ----------
    module
        Any ``nn.Module`` whose tensors hold data (not on the ``meta`` device).

    Returns
    -------
    str
        32 hex digits.
    """
    digest = hashlib.blake2b(digest_size=16)
    pieces: dict[torch.device, list[torch.Tensor]] = {}
    for name, tensor in _state_tensors(module):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        words, tail = _as_words(tensor)
        sums = _block_sums(words).reshape(-1)
        pieces.setdefault(tensor.device, []).extend((sums, tail.to(torch.int64)))
    for device in sorted(pieces, key=str):
        values = torch.cat(pieces[device]).cpu()
        digest.update(f"{len(values)}|".encode())
        digest.update(values.numpy().tobytes())
    return digest.hexdigest()


@dataclass
class WeightsStamp:
    """A weights id together with what the weights looked like when it was given.

    Attributes
    ----------
    sha256
        The id: 64 hex digits.
    token
        :func:`state_token` of the module then (updated when equal values move to new tensors).
    digest
        :func:`content_digest` of the module then.
    """

    sha256: str
    token: tuple[Hashable, ...]
    digest: str


class WeightsIds:
    """The ids given to a module's weights: the first one (its file's) and the latest one.

    :meth:`current` answers with the latest id while the module still holds the weights it was
    given for, with the first id when the module holds those weights again (a change undone), and
    with None otherwise.
    """

    def __init__(self) -> None:
        self.first: WeightsStamp | None = None
        self.latest: WeightsStamp | None = None

    def give(self, module: nn.Module, sha256: str | None) -> None:
        """Record that ``module``'s current weights have the id ``sha256`` (None: forget the latest)."""
        if sha256 is None:
            self.latest = None
            return
        stamp = WeightsStamp(sha256, state_token(module), content_digest(module))
        self.first = self.first or stamp
        self.latest = stamp

    def current(self, module: nn.Module, *, check_content: bool) -> str | None:
        """The id of the weights ``module`` holds now, if one was given for them.

        Parameters
        ----------
        module
            The module the ids were given for (or a copy of it).
        check_content
            Also compare the content digest when the state token is unchanged (catches changes
            made through ``tensor.data``; costs one read of every tensor). When the token changed,
            the digest is always compared: equal values in new tensors (a device or dtype round
            trip, a copy) keep the id, and the new token is remembered.

        Returns
        -------
        str or None
        """
        stamps = [stamp for stamp in (self.latest, self.first) if stamp is not None]
        if not stamps:
            return None
        token = state_token(module)
        if self.latest is not None and token == self.latest.token and not check_content:
            return self.latest.sha256
        digest = content_digest(module)
        for stamp in stamps:
            if stamp.digest == digest:
                stamp.token = token
                self.latest = stamp
                return stamp.sha256
        return None
