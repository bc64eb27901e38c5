"""The weights registry: official table, local look-up, sha256 checks and pooch downloads.

Downloads are exercised against a loopback HTTP server only; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from napari_sam.errors import (
    CheckpointError,
    NapariSamError,
    WeightsHashError,
    WeightsUnavailableError,
)
from napari_sam.model import registry
from napari_sam.model.registry import (
    OFFICIAL_BASE_URL,
    OFFICIAL_WEIGHTS,
    WeightsInfo,
    cache_dir,
    fetch_weights,
    find_local_weights,
    verify_sha256,
)

OFFICIAL = {
    "vit_b": (
        "sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "vit_l": (
        "sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_h": (
        "sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
}
PAYLOAD = bytes(range(256)) * 16  # 4 KiB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
FILENAME = "tiny_weights.pth"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch) -> Path:
    """Never touch the real user cache; never go through a proxy for loopback requests."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(cache))
    monkeypatch.delenv("NAPARI_SAM_WEIGHTS", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # the in-process sha256 memo must not leak verified files between tests
    monkeypatch.setattr(registry, "_verified", {})
    return cache


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


class LoopbackServer:
    """A static file server on 127.0.0.1 that counts GET requests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server_self = self

        class Handler(_QuietHandler):
            def do_GET(self):
                server_self.requests.append(self.path)
                super().do_GET()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.running = True

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.running:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self.running = False


@pytest.fixture
def server(tmp_path) -> Iterator[LoopbackServer]:
    root = tmp_path / "served"
    root.mkdir()
    (root / FILENAME).write_bytes(PAYLOAD)
    srv = LoopbackServer(root)
    yield srv
    srv.stop()


@pytest.fixture
def info(server) -> WeightsInfo:
    return WeightsInfo("tiny", FILENAME, server.url(FILENAME), PAYLOAD_SHA)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- official table


def test_official_table_matches_the_published_files():
    assert sorted(OFFICIAL_WEIGHTS) == ["vit_b", "vit_h", "vit_l"]
    assert OFFICIAL_BASE_URL == "https://dl.fbaipublicfiles.com/segment_anything/"
    for name, (filename, sha) in OFFICIAL.items():
        entry = OFFICIAL_WEIGHTS[name]
        assert isinstance(entry, WeightsInfo)
        assert entry.name == name
        assert entry.filename == filename
        assert entry.sha256 == sha
        assert entry.url == f"https://dl.fbaipublicfiles.com/segment_anything/{filename}"


def test_weights_info_is_immutable():
    with pytest.raises(AttributeError):
        OFFICIAL_WEIGHTS["vit_b"].sha256 = "0" * 64  # type: ignore[misc]


def test_unknown_name_lists_registered_names():
    with pytest.raises(ValueError, match="vit_x") as excinfo:
        fetch_weights("vit_x", download=False)
    message = str(excinfo.value)
    for name in ("vit_b", "vit_l", "vit_h"):
        assert name in message


def test_error_hierarchy():
    # callers catch these as the builtin kinds too
    assert issubclass(WeightsHashError, CheckpointError)
    assert issubclass(WeightsHashError, ValueError)
    assert issubclass(WeightsUnavailableError, FileNotFoundError)
    assert issubclass(WeightsUnavailableError, NapariSamError)


# --------------------------------------------------------------------------- cache dir


def test_cache_dir_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"


def test_cache_dir_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NAPARI_SAM_CACHE", "~/weights-here")
    assert cache_dir() == tmp_path / "weights-here"


def test_cache_dir_default_is_a_user_cache(monkeypatch):
    monkeypatch.delenv("NAPARI_SAM_CACHE")
    default = cache_dir()
    assert default.name == "weights"
    assert "napari-sam" in str(default)


# --------------------------------------------------------------------------- downloads


def test_download_lands_in_cache_and_is_not_repeated(server, info, isolated_env):
    assert find_local_weights(info) is None
    path = fetch_weights(info, progressbar=False)
    assert path == isolated_env / FILENAME
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [f"/{FILENAME}"]
    assert find_local_weights(info) == path

    server.stop()
    again = fetch_weights(info, progressbar=False)
    assert again == path
    assert server.requests == [f"/{FILENAME}"]  # nothing new fetched
    # and with downloading off, too
    assert fetch_weights(info, download=False) == path


def test_download_into_explicit_directory(server, info, tmp_path, isolated_env):
    target = tmp_path / "explicit" / "nested"
    path = fetch_weights(info, directory=target, progressbar=False)
    assert path == target / FILENAME
    assert path.read_bytes() == PAYLOAD
    assert not (isolated_env / FILENAME).exists()

    server.stop()
    assert fetch_weights(info, directory=str(target), progressbar=False) == path
    assert len(server.requests) == 1


def test_download_with_progressbar(server, info):
    path = fetch_weights(info, progressbar=True)
    assert path.read_bytes() == PAYLOAD


def test_download_hash_mismatch_keeps_no_file(server, isolated_env):
    wrong = "f" * 64
    bad = WeightsInfo("tiny", FILENAME, server.url(FILENAME), wrong)
    with pytest.raises(WeightsHashError) as excinfo:
        fetch_weights(bad, progressbar=False)
    message = str(excinfo.value)
    assert wrong in message
    assert server.url(FILENAME) in message
    # no file (not even a temporary one) that a later call could take as valid
    leftovers = list(isolated_env.iterdir()) if isolated_env.exists() else []
    assert leftovers == []
    assert find_local_weights(bad) is None
    with pytest.raises(WeightsUnavailableError):
        fetch_weights(bad, download=False)


def test_download_hash_mismatch_then_good_hash_downloads(server, isolated_env):
    with pytest.raises(WeightsHashError):
        fetch_weights(WeightsInfo("t", FILENAME, server.url(FILENAME), "0" * 64), progressbar=False)
    good = WeightsInfo("t", FILENAME, server.url(FILENAME), PAYLOAD_SHA)
    assert fetch_weights(good, progressbar=False).read_bytes() == PAYLOAD
    assert len(server.requests) == 2


def _assert_offline_help(message: str, info: WeightsInfo) -> None:
    assert info.filename in message
    assert info.sha256 in message
    assert "NAPARI_SAM_WEIGHTS" in message
    assert info.url in message


def test_closed_port_is_weights_unavailable(isolated_env):
    info = WeightsInfo("tiny", FILENAME, f"http://127.0.0.1:{_closed_port()}/{FILENAME}", PAYLOAD_SHA)
    with pytest.raises(WeightsUnavailableError) as excinfo:
        fetch_weights(info, progressbar=False)
    _assert_offline_help(str(excinfo.value), info)
    assert str(isolated_env) in str(excinfo.value)  # tells where to put the file
    assert not (isolated_env / FILENAME).exists()
    # a FileNotFoundError to callers that do not know our errors
    assert isinstance(excinfo.value, FileNotFoundError)


def test_http_404_is_weights_unavailable(server):
    info = WeightsInfo("tiny", "absent.pth", server.url("absent.pth"), PAYLOAD_SHA)
    with pytest.raises(WeightsUnavailableError, match=r"absent\.pth") as excinfo:
        fetch_weights(info, progressbar=False)
    _assert_offline_help(str(excinfo.value), info)


def test_download_false_with_nothing_on_disk(server, info):
    with pytest.raises(WeightsUnavailableError) as excinfo:
        fetch_weights(info, download=False)
    _assert_offline_help(str(excinfo.value), info)
    assert "download=False" in str(excinfo.value)
    assert server.requests == []


def test_download_false_for_official_name_offline():
    info = OFFICIAL_WEIGHTS["vit_b"]
    with pytest.raises(WeightsUnavailableError) as excinfo:
        fetch_weights("vit_b", download=False)
    _assert_offline_help(str(excinfo.value), info)


def test_explicit_directory_help_names_that_directory(tmp_path):
    info = WeightsInfo("tiny", FILENAME, f"http://127.0.0.1:{_closed_port()}/x", PAYLOAD_SHA)
    folder = tmp_path / "only-here"
    with pytest.raises(WeightsUnavailableError) as excinfo:
        fetch_weights(info, download=False, directory=folder)
    assert str(folder) in str(excinfo.value)


# --------------------------------------------------------------------------- local files


def test_corrupt_file_in_cache_raises_hash_error(info, server, isolated_env):
    isolated_env.mkdir(parents=True)
    bad = isolated_env / FILENAME
    bad.write_bytes(PAYLOAD[:-1] + b"\x00")
    with pytest.raises(WeightsHashError) as excinfo:
        fetch_weights(info, progressbar=False)
    message = str(excinfo.value)
    assert str(bad) in message
    assert PAYLOAD_SHA in message
    assert "Delete it and download it again" in message
    assert server.requests == []  # the bad local copy is reported, not silently replaced
    with pytest.raises(WeightsHashError):
        fetch_weights(info, download=False)


def test_corrupt_file_in_explicit_directory_raises_hash_error(info, tmp_path):
    folder = tmp_path / "dl"
    folder.mkdir()
    (folder / FILENAME).write_bytes(b"not the weights")
    with pytest.raises(WeightsHashError, match="download it again"):
        fetch_weights(info, directory=folder, download=False)


def test_verify_sha256(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    verify_sha256(path, PAYLOAD_SHA)
    verify_sha256(path, PAYLOAD_SHA.upper())  # hex case does not matter
    with pytest.raises(WeightsHashError, match=PAYLOAD_SHA[:16]):
        verify_sha256(path, hashlib.sha256(b"other").hexdigest())


def test_verify_sha256_notices_a_rewritten_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    verify_sha256(path, PAYLOAD_SHA)
    path.write_bytes(PAYLOAD + b"tail")  # new size and mtime: the memo must not answer
    with pytest.raises(WeightsHashError):
        verify_sha256(path, PAYLOAD_SHA)


def _offline_info() -> WeightsInfo:
    return WeightsInfo("tiny", FILENAME, f"http://127.0.0.1:{_closed_port()}/x", PAYLOAD_SHA)


def test_weights_env_folder_is_found_and_verified(tmp_path, monkeypatch, isolated_env):
    folder = tmp_path / "offline site"
    folder.mkdir()
    (folder / FILENAME).write_bytes(PAYLOAD)
    monkeypatch.setenv("NAPARI_SAM_WEIGHTS", str(folder))
    info = _offline_info()
    assert find_local_weights(info) == folder / FILENAME
    assert fetch_weights(info, progressbar=False) == folder / FILENAME
    assert not isolated_env.exists() or not any(isolated_env.iterdir())  # nothing copied


def test_weights_env_file_path_is_found(tmp_path, monkeypatch):
    path = tmp_path / FILENAME
    path.write_bytes(PAYLOAD)
    monkeypatch.setenv("NAPARI_SAM_WEIGHTS", str(path))
    info = _offline_info()
    assert fetch_weights(info, download=False) == path


def test_weights_env_file_with_another_name_is_not_taken(tmp_path, monkeypatch):
    path = tmp_path / "something_else.pth"
    path.write_bytes(PAYLOAD)
    monkeypatch.setenv("NAPARI_SAM_WEIGHTS", str(path))
    assert find_local_weights(_offline_info()) is None


def test_weights_env_pathsep_list(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "does-not-exist"
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / FILENAME).write_bytes(PAYLOAD)
    value = os.pathsep.join([str(empty), str(missing), "", "  ", str(holder)])
    monkeypatch.setenv("NAPARI_SAM_WEIGHTS", value)
    info = _offline_info()
    assert fetch_weights(info, download=False) == holder / FILENAME


def test_weights_env_takes_precedence_over_cache(tmp_path, monkeypatch, isolated_env):
    isolated_env.mkdir(parents=True)
    (isolated_env / FILENAME).write_bytes(PAYLOAD)
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / FILENAME).write_bytes(PAYLOAD)
    monkeypatch.setenv("NAPARI_SAM_WEIGHTS", str(holder))
    assert fetch_weights(_offline_info(), download=False) == holder / FILENAME


def test_weights_env_file_with_wrong_hash_raises(tmp_path, monkeypatch):
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / FILENAME).write_bytes(PAYLOAD[::-1])
    monkeypatch.setenv("NAPARI_SAM_WEIGHTS", str(holder))
    with pytest.raises(WeightsHashError, match=FILENAME):
        fetch_weights(_offline_info(), download=False)


def test_official_name_resolves_through_weights_env(tmp_path, monkeypatch):
    """A registered name looks for its official file name (content checked against the table)."""
    holder = tmp_path / "holder"
    holder.mkdir()
    filename = OFFICIAL["vit_b"][0]
    (holder / filename).write_bytes(b"fake, small")
    monkeypatch.setenv("NAPARI_SAM_WEIGHTS", str(holder))
    assert find_local_weights(OFFICIAL_WEIGHTS["vit_b"]) == holder / filename
    with pytest.raises(WeightsHashError, match=OFFICIAL["vit_b"][1]):
        fetch_weights("vit_b", download=False)
