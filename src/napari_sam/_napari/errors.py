"""The error the napari side shows to the user as a message (never as a traceback)."""

from __future__ import annotations

from ..errors import NapariSamError


class AnnotatorError(NapariSamError, ValueError):
    """Something the user can fix in the viewer: a missing layer, a point off the image, …"""
