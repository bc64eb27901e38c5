"""Registered models: names, download URLs, sha256, and finding or fetching their weights.

Where weights are looked for, in order:

1. ``NAPARI_SAM_WEIGHTS``: one or more folders (or files), separated by ``os.pathsep``, holding the
   official file names (``sam_vit_b_01ec64.pth`` …) — for offline sites;
2. the cache folder (``NAPARI_SAM_CACHE``, else the user cache dir), where downloads go;
3. a download through pooch, checked against the published sha256.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsHashError, WeightsUnavailableError

OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


@dataclass(frozen=True)
class WeightsInfo:
    """Where a registered model's weights come from."""

    name: str
    filename: str
    url: str
    sha256: str


OFFICIAL_WEIGHTS: dict[str, WeightsInfo] = {
    info.name: info
    for info in (
        WeightsInfo(
            "vit_b",
            "sam_vit_b_01ec64.pth",
            OFFICIAL_BASE_URL + "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        ),
        WeightsInfo(
            "vit_l",
            "sam_vit_l_0b3195.pth",
            OFFICIAL_BASE_URL + "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        ),
        WeightsInfo(
            "vit_h",
            "sam_vit_h_4b8939.pth",
            OFFICIAL_BASE_URL + "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        ),
    )
}

#: The nano model shipped inside the package (trained by scripts/train_nano.py on synthetic data).
NANO_FILENAME = "nano.safetensors"
NANO_SHA256 = "3d700b3594d8e42b664b7df804a1134c1e644a054d127778b610f82413032408"


#: The nano model's instance decoder, shipped beside it (trained by scripts/train_nano_instance_decoder.py
#: on the frozen nano encoder); None while no decoder is registered (nano then segments automatically
#: with the prompt grid, AMG).
NANO_DECODER_FILENAME = "nano_decoder.safetensors"
NANO_DECODER_SHA256: str | None = "3d080d55ae6a3c5b4f9505b7ab428e7fc7885b3c948aad3ba985e8bcc7f5ae4a"


def shipped_nano_path() -> Path:
    """Path of the nano weights inside the installed package."""
    return Path(__file__).resolve().parents[1] / "weights" / NANO_FILENAME


def shipped_nano_decoder_path() -> Path:
    """Path of the nano instance decoder's weights inside the installed package."""
    return shipped_nano_path().with_name(NANO_DECODER_FILENAME)


_verified: dict[tuple[str, int, int], str] = {}


def cache_dir() -> Path:
    """Folder for downloaded weights: ``$NAPARI_SAM_CACHE`` or the user cache dir."""
    env = os.environ.get("NAPARI_SAM_CACHE")
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("napari-sam")) / "weights"


def _weights_search_paths() -> list[Path]:
    env = os.environ.get("NAPARI_SAM_WEIGHTS", "")
    return [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered for the process while size and mtime stay the same."""
    from .checkpoint import sha256_file

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return _verified[key]


#: File in :func:`cache_dir` remembering the sha256 of local weights files for ``napari-sam models``.
SHA256_RECORD = "sha256-record.json"


def _read_record(record: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_record(record: Path, entries: dict[str, dict[str, object]]) -> None:
    """Write ``entries`` atomically; a cache folder that cannot be written just means no record."""
    kept = {path: entry for path, entry in entries.items() if Path(path).is_file()}
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        partial = record.with_name(f".{record.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(kept, indent=1, sort_keys=True))
        os.replace(partial, record)
    except OSError:
        pass


def remembered_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered across processes while its size and mtime stay the same.

    The result is kept in ``SHA256_RECORD`` in :func:`cache_dir`, keyed by the resolved path, so
    that listing a 2.5 GB file a second time does not read it again. Loading weights does not trust
    this record: :func:`fetch_weights` hashes the file once in every process.

    Parameters
    ----------
    path
        An existing file.

    Returns
    -------
    str
        64 hex digits.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _verified:
        return _verified[key]
    record = cache_dir() / SHA256_RECORD
    entries = _read_record(record)
    entry = entries.get(key[0])
    known = entry.get("sha256") if isinstance(entry, dict) else None
    fresh = isinstance(entry, dict) and entry.get("size") == key[1] and entry.get("mtime_ns") == key[2]
    if fresh and isinstance(known, str) and re.fullmatch(r"[0-9a-f]{64}", known):
        _verified[key] = known
        return known
    digest = file_sha256(path)
    entries[key[0]] = {"size": key[1], "mtime_ns": key[2], "sha256": digest}
    _write_record(record, entries)
    return digest


def local_weights_status(info: WeightsInfo) -> str:
    """Where the local copy of ``info``'s file is and whether its sha256 is the published one.

    Returns
    -------
    str
        ``"-"`` (no local copy), ``"PATH (sha256 ok)"``, or ``"PATH (WRONG HASH: …)"`` with the
        hash found, the one expected and what to do.
    """
    local = find_local_weights(info)
    if local is None:
        return "-"
    try:
        actual = remembered_sha256(local)
    except OSError as exc:
        return f"{local} (UNREADABLE: {exc.strerror or exc})"
    if actual == info.sha256.lower():
        return f"{local} (sha256 ok)"
    return (
        f"{local} (WRONG HASH: sha256 {actual[:12]}…, published {info.sha256[:12]}…; the file is "
        "corrupt, truncated or not the published one — delete it and download it again)"
    )


@dataclass(frozen=True)
class ModelEntry:
    """One row of :func:`model_catalogue`: a name ``model=`` accepts, what it is for, its weights."""

    name: str
    purpose: str
    weights: str  # the file name (and its size where it is downloaded)
    status: str  # where it is on this machine and whether its sha256 is the published one


#: What each registered model is for, in one line (facts of the published models; nano is ours).
PURPOSES = {
    "nano": "offline, fast on a CPU; trained on synthetic fluorescence nuclei only",
    "vit_b": "official SAM ViT-B: general purpose, the usual choice on a GPU",
    "vit_l": "official SAM ViT-L: larger and slower than vit_b, a little better",
    "vit_h": "official SAM ViT-H: the largest and slowest, the best official masks",
}
#: Download sizes of the official files.
DOWNLOAD_SIZES = {"vit_b": "375 MB", "vit_l": "1.25 GB", "vit_h": "2.56 GB"}


def shipped_nano_status() -> str:
    """``"PATH (shipped, sha256 ok)"``, or what is wrong with this installation's nano weights."""
    path = shipped_nano_path()
    if not path.is_file():
        return f"MISSING from this installation ({path}): reinstall napari-sam-pipeline"
    if remembered_sha256(path) != NANO_SHA256:
        return f"{path} (WRONG HASH: this installation is damaged; reinstall napari-sam-pipeline)"
    return f"{path} (shipped, sha256 ok)"


def model_catalogue() -> list[ModelEntry]:
    """Every registered model name: what it is for, its weights file and its state on this machine.

    Returns
    -------
    list of ModelEntry
        nano first, then the official models in :data:`OFFICIAL_WEIGHTS` order. Official files are
        hashed once and remembered (see :func:`remembered_sha256`).
    """
    rows = [ModelEntry("nano", PURPOSES["nano"], f"{NANO_FILENAME} (in the package)", shipped_nano_status())]
    for name, info in OFFICIAL_WEIGHTS.items():
        size = DOWNLOAD_SIZES.get(name)
        weights = f"{info.filename} ({size} download)" if size else info.filename
        rows.append(ModelEntry(name, PURPOSES.get(name, ""), weights, local_weights_status(info)))
    return rows


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`WeightsHashError` unless ``path`` has sha256 ``expected``."""
    actual = file_sha256(path)
    if actual != expected.lower():
        raise WeightsHashError(
            f"{path} has sha256 {actual}, expected {expected}: the file is corrupt, truncated or "
            "not the published one. Delete it and download it again."
        )


def find_local_weights(info: WeightsInfo) -> Path | None:
    """The first existing local copy of ``info.filename`` (``NAPARI_SAM_WEIGHTS``, then cache)."""
    for entry in [*_weights_search_paths(), cache_dir()]:
        is_that_file = entry.is_file() and entry.name == info.filename
        candidate = entry if is_that_file else entry / info.filename
        if candidate.is_file():
            return candidate
    return None


def _offline_help(info: WeightsInfo, *, tried_download: bool = True, directory: Path | None = None) -> str:
    where = (
        f"could not be downloaded from {info.url}"
        if tried_download
        else f"downloading is off (download=False); they come from {info.url}"
    )
    # with an explicit directory only that folder is searched, so only it helps
    put = (
        f"put it in {directory}"
        if directory is not None
        else f"either put it in {cache_dir()}, point NAPARI_SAM_WEIGHTS at its folder,"
    )
    return (
        f"Weights for {info.name!r} ({info.filename}) are not on this machine and {where}. "
        f"On a machine with internet access download that file (sha256 {info.sha256}), then "
        f"{put} or pass model='/path/to/{info.filename}'. model='nano' works offline."
    )


def fetch_weights(
    info: WeightsInfo | str,
    *,
    download: bool = True,
    directory: Path | str | None = None,
    progressbar: bool = True,
) -> Path:
    """Return a verified local path to a registered model's weights, downloading if needed.

    Parameters
    ----------
    info
        A :class:`WeightsInfo` or a registered name (``"vit_b"`` …).
    download
        If False, only look on disk.
    directory
        Download folder; defaults to :func:`cache_dir`.
    progressbar
        Show a download progress bar.

    Raises
    ------
    WeightsUnavailableError
        Not on disk and not downloadable (offline, or ``download=False``).
    WeightsHashError
        A local or downloaded file has the wrong sha256.
    """
    if isinstance(info, str):
        if info not in OFFICIAL_WEIGHTS:
            raise ValueError(
                f"model {info!r} has no downloadable weights; registered: {sorted(OFFICIAL_WEIGHTS)}"
            )
        info = OFFICIAL_WEIGHTS[info]
    local = find_local_weights(info) if directory is None else None
    if local is not None:
        verify_sha256(local, info.sha256)
        return local
    explicit_dir = Path(directory).expanduser() if directory is not None else None
    target_dir = explicit_dir if explicit_dir is not None else cache_dir()
    target = target_dir / info.filename
    if target.is_file():
        verify_sha256(target, info.sha256)
        return target
    if not download:
        raise WeightsUnavailableError(_offline_help(info, tried_download=False, directory=explicit_dir))
    import pooch

    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        path = pooch.retrieve(
            info.url,
            known_hash=f"sha256:{info.sha256}",
            fname=info.filename,
            path=target_dir,
            progressbar=progressbar,
        )
    except ValueError as exc:  # pooch's hash mismatch (the bad download is removed)
        if "hash" in str(exc).lower():
            raise WeightsHashError(
                f"downloaded {info.url} but its sha256 is not {info.sha256}: {exc}"
            ) from exc
        raise
    except Exception as exc:  # network errors: requests / urllib / OS
        raise WeightsUnavailableError(
            _offline_help(info, directory=explicit_dir) + f" (download error: {exc})"
        ) from exc
    return Path(path)
