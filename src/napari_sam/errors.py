"""Exceptions raised by napari-sam (no heavy imports here)."""

from __future__ import annotations


class NapariSamError(Exception):
    """Base class of napari-sam's own errors."""


class CheckpointError(NapariSamError, ValueError):
    """A weights file cannot be read, or does not fit the requested architecture."""


class WeightsHashError(CheckpointError):
    """A weights file's sha256 differs from the published one (corrupt or wrong file)."""


class WeightsUnavailableError(NapariSamError, FileNotFoundError):
    """Weights are neither on disk nor downloadable (for example, offline)."""


class CacheMismatchError(NapariSamError, ValueError):
    """An embedding cache belongs to another image, model or preprocessing."""


class CacheLockedError(NapariSamError, TimeoutError):
    """An embedding cache stayed locked by another process for longer than the caller would wait."""
