"""Tests never reach the internet (the guard in tests/conftest.py); SAM 2 weights offline."""

from __future__ import annotations

import socket
import urllib.request

import pytest


def test_resolving_a_remote_host_fails_at_once():
    with pytest.raises(socket.gaierror, match="never reach the internet"):
        socket.getaddrinfo("dl.fbaipublicfiles.com", 443)
    with pytest.raises(OSError, match="never reach the internet"):
        urllib.request.urlopen("https://dl.fbaipublicfiles.com/", timeout=5)
    assert socket.getaddrinfo("127.0.0.1", 80)  # loopback servers still work


def test_fetching_sam2_weights_offline_says_what_to_fetch(tmp_path, monkeypatch):
    from napari_sam.errors import WeightsUnavailableError
    from napari_sam.model import fetch_sam2_weights

    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path))
    monkeypatch.delenv("NAPARI_SAM_WEIGHTS", raising=False)
    with pytest.raises(WeightsUnavailableError, match=r"sam2\.1_hiera_tiny\.pt.*NAPARI_SAM_WEIGHTS"):
        fetch_sam2_weights("sam2.1_hiera_tiny", directory=tmp_path, progressbar=False)
