"""Registered models: names, download URLs, published hashes, and finding or fetching their weights.

Where weights are looked for, in order:

1. ``NAPARI_SAM_WEIGHTS``: one or more folders (or files), separated by ``os.pathsep``, holding the
   registered file names (``sam_vit_b_01ec64.pth``, ``vit_b_lm.pt`` …) — for offline sites;
2. the cache folder (``NAPARI_SAM_CACHE``, else the user cache dir), where downloads go;
3. folders a caller adds (micro-sam's own cache, for micro-sam's models: see :mod:`.zoo`);
4. a download through pooch, checked against the published hash: sha256 for the official files,
   xxh128 (the ``xxhash`` package) for micro-sam's, as each publisher states it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsHashError, WeightsUnavailableError

OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


#: Hash algorithms checked, and the length of their hex digests.
HASH_LENGTHS = {"sha256": 64, "xxh128": 32}


@dataclass(frozen=True)
class WeightsInfo:
    """Where a registered model's weights come from (a file published with its sha256)."""

    name: str
    filename: str
    url: str
    sha256: str

    @property
    def known_hash(self) -> str:
        """The published hash as pooch writes it: ``"sha256:<64 hex digits>"``."""
        return f"sha256:{self.sha256}"

    @property
    def file_names(self) -> tuple[str, ...]:
        """The names a local copy may have."""
        return (self.filename,)


@dataclass(frozen=True)
class HostedFile:
    """A downloadable file whose publisher states its hash in pooch's form (``"xxh128:<32 hex>"``).

    Attributes
    ----------
    name
        What the file is, for messages (``"vit_b_lm"``, ``"vit_b_lm_decoder"``).
    filename
        The name it gets in the cache folder.
    url
        Where it is downloaded from.
    known_hash
        ``"<algorithm>:<hex digest>"``; ``sha256`` and ``xxh128`` are checked.
    aliases
        Other names a local copy may have (micro-sam's cache names its files without a suffix).
    """

    name: str
    filename: str
    url: str
    known_hash: str
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        algorithm, _, digest = self.known_hash.partition(":")
        if algorithm not in HASH_LENGTHS or not re.fullmatch(
            rf"[0-9a-f]{{{HASH_LENGTHS[algorithm]}}}", digest
        ):
            raise ValueError(
                f"known_hash of {self.name!r} must be 'sha256:<64 hex>' or 'xxh128:<32 hex>', "
                f"got {self.known_hash!r}"
            )

    @property
    def file_names(self) -> tuple[str, ...]:
        """The names a local copy may have: :attr:`filename`, then the aliases."""
        return (self.filename, *self.aliases)


#: A file :func:`fetch_weights` can find or download.
Downloadable = WeightsInfo | HostedFile


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
NANO_SHA256 = "92b34944b61df03fe569f0f3a099e28c31cc3b0ba9ce9d1c301166e7a982b291"


#: The nano model's instance decoder, shipped beside it (trained by scripts/train_nano_instance_decoder.py
#: on the frozen nano encoder); None while no decoder is registered (nano then segments automatically
#: with the prompt grid, AMG).
NANO_DECODER_FILENAME = "nano_decoder.safetensors"
NANO_DECODER_SHA256: str | None = "4faf8e895dc6d894dc420060c420a6dbad15b5efb43429f41910028b735f4e46"


def shipped_nano_path() -> Path:
    """Path of the nano weights inside the installed package."""
    return Path(__file__).resolve().parents[1] / "weights" / NANO_FILENAME


def shipped_nano_decoder_path() -> Path:
    """Path of the nano instance decoder's weights inside the installed package."""
    return shipped_nano_path().with_name(NANO_DECODER_FILENAME)


_verified: dict[tuple[str, int, int], str] = {}  # sha256 by (path, size, mtime)
_verified_xxh128: dict[tuple[str, int, int], str] = {}


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


def _stat_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered for the process while size and mtime stay the same."""
    from .checkpoint import sha256_file

    key = _stat_key(path)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return _verified[key]


def _xxh128_file(path: Path, *, chunk_size: int = 1 << 22) -> str:
    try:
        import xxhash
    except ImportError as exc:  # a dependency; only a broken installation lacks it
        raise ImportError(
            "checking micro-sam's files needs the xxhash package (their publisher states xxh128 "
            "hashes): pip install xxhash"
        ) from exc
    digest = xxhash.xxh128()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return str(digest.hexdigest())


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    """The ``algorithm`` (``"sha256"`` or ``"xxh128"``) hex digest of ``path``, remembered for the
    process while its size and mtime stay the same."""
    if algorithm == "sha256":
        return file_sha256(path)
    if algorithm != "xxh128":
        raise ValueError(f"algorithm must be one of {sorted(HASH_LENGTHS)}, got {algorithm!r}")
    key = _stat_key(path)
    if key not in _verified_xxh128:
        _verified_xxh128[key] = _xxh128_file(path)
    return _verified_xxh128[key]


def _split_hash(known_hash: str) -> tuple[str, str]:
    """``"xxh128:ab…"`` → ``("xxh128", "ab…")``."""
    algorithm, _, digest = known_hash.partition(":")
    return algorithm, digest.lower()


#: File in :func:`cache_dir` remembering the hashes of local weights files for ``napari-sam models``.
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


def remembered_hash(path: Path, algorithm: str = "sha256") -> str:
    """The ``algorithm`` hash of ``path``, remembered across processes while its size and mtime stay.

    The result is kept in ``SHA256_RECORD`` in :func:`cache_dir`, keyed by the resolved path, so
    that listing a 2.5 GB file a second time does not read it again. Loading weights does not trust
    this record: :func:`fetch_weights` hashes the file once in every process.

    Parameters
    ----------
    path
        An existing file.
    algorithm
        ``"sha256"`` (64 hex digits) or ``"xxh128"`` (32).

    Returns
    -------
    str
        The hex digest.
    """
    key = _stat_key(path)
    memo = _verified if algorithm == "sha256" else _verified_xxh128
    if key in memo:
        return memo[key]
    record = cache_dir() / SHA256_RECORD
    entries = _read_record(record)
    entry = entries.get(key[0])
    known = entry.get(algorithm) if isinstance(entry, dict) else None
    fresh = isinstance(entry, dict) and entry.get("size") == key[1] and entry.get("mtime_ns") == key[2]
    length = HASH_LENGTHS.get(algorithm, 0)
    if fresh and isinstance(known, str) and re.fullmatch(rf"[0-9a-f]{{{length}}}", known):
        memo[key] = known
        return known
    digest = file_hash(path, algorithm)
    kept = dict(entry) if fresh and isinstance(entry, dict) else {}
    entries[key[0]] = {**kept, "size": key[1], "mtime_ns": key[2], algorithm: digest}
    _write_record(record, entries)
    return digest


def remembered_sha256(path: Path) -> str:
    """sha256 of ``path`` (64 hex digits), remembered across processes: :func:`remembered_hash`."""
    return remembered_hash(path, "sha256")


def local_file_status(info: Downloadable, *, also: Sequence[Path] = ()) -> str:
    """Where the local copy of ``info``'s file is and whether its hash is the published one.

    Returns
    -------
    str
        ``"-"`` (no local copy), ``"PATH (sha256 ok)"`` / ``"PATH (xxh128 ok)"``, or
        ``"PATH (WRONG HASH: …)"`` with the hash found, the one expected and what to do.
    """
    local = find_local_weights(info, also=also)
    if local is None:
        return "-"
    algorithm, expected = _split_hash(info.known_hash)
    try:
        actual = remembered_hash(local, algorithm)
    except OSError as exc:
        return f"{local} (UNREADABLE: {exc.strerror or exc})"
    if actual == expected:
        return f"{local} ({algorithm} ok)"
    return (
        f"{local} (WRONG HASH: {algorithm} {actual[:12]}…, published {expected[:12]}…; the file is "
        "corrupt, truncated or not the published one — delete it and download it again)"
    )


def local_weights_status(info: WeightsInfo) -> str:
    """``"-"``, ``"PATH (sha256 ok)"`` or ``"PATH (WRONG HASH: …)"``: :func:`local_file_status`."""
    return local_file_status(info)


@dataclass(frozen=True)
class ModelEntry:
    """One row of ``napari-sam models``: a name ``model=`` accepts, what it is for, its weights."""

    name: str
    purpose: str
    weights: str  # the file name (and its size where it is downloaded)
    status: str  # where it is on this machine and whether its hash is the published one
    #: how it segments without prompts: its instance decoder (AIS / APG) or the prompt grid (AMG)
    automatic: str = "AMG (prompt grid; no instance decoder)"


#: ``ModelEntry.automatic`` of a model that carries an instance decoder.
WITH_DECODER = "AIS / APG (instance decoder)"

#: What each registered model is for, in one line (facts of the published models; nano is ours).
PURPOSES = {
    "nano": "ours: offline, fast on a CPU; trained on synthetic fluorescence nuclei only",
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
    """nano and the official models: what each is for, its weights file and its state on this machine.

    Returns
    -------
    list of ModelEntry
        nano first, then the official models in :data:`OFFICIAL_WEIGHTS` order. Official files are
        hashed once and remembered (see :func:`remembered_sha256`). micro-sam's models follow in
        :func:`napari_sam.model.zoo.catalogue`, which lists every name.
    """
    nano_automatic = WITH_DECODER if NANO_DECODER_SHA256 is not None else ModelEntry.automatic
    rows = [
        ModelEntry(
            "nano",
            PURPOSES["nano"],
            f"{NANO_FILENAME} (in the package)",
            shipped_nano_status(),
            nano_automatic,
        )
    ]
    for name, info in OFFICIAL_WEIGHTS.items():
        size = DOWNLOAD_SIZES.get(name)
        weights = f"{info.filename} ({size} download)" if size else info.filename
        rows.append(ModelEntry(name, PURPOSES.get(name, ""), weights, local_weights_status(info)))
    return rows


def verify_hash(path: Path, known_hash: str) -> None:
    """Raise :class:`WeightsHashError` unless ``path`` has the hash ``known_hash``
    (``"sha256:<hex>"`` or ``"xxh128:<hex>"``)."""
    algorithm, expected = _split_hash(known_hash)
    actual = file_hash(path, algorithm)
    if actual != expected:
        raise WeightsHashError(
            f"{path} has {algorithm} {actual}, expected {expected}: the file is corrupt, truncated or "
            "not the published one. Delete it and download it again."
        )


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`WeightsHashError` unless ``path`` has sha256 ``expected``."""
    verify_hash(path, f"sha256:{expected}")


def find_local_weights(info: Downloadable, *, also: Sequence[Path] = ()) -> Path | None:
    """The first existing local copy of ``info``'s file: in ``NAPARI_SAM_WEIGHTS``, then the cache,
    then the folders ``also``; under :attr:`WeightsInfo.file_names` (a file named in
    ``NAPARI_SAM_WEIGHTS`` counts when its name is one of them)."""
    for entry in [*_weights_search_paths(), cache_dir(), *also]:
        for name in info.file_names:
            candidate = entry if entry.is_file() and entry.name == name else entry / name
            if candidate.is_file():
                return candidate
    return None


def describe_hash(known_hash: str) -> str:
    """``"sha256:ab…"`` → ``"sha256 ab…"`` (the words a message shows)."""
    algorithm, digest = _split_hash(known_hash)
    return f"{algorithm} {digest}"


def _offline_help(info: Downloadable, *, tried_download: bool = True, directory: Path | None = None) -> str:
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
        f"On a machine with internet access download that file ({describe_hash(info.known_hash)}), then "
        f"{put} or pass model='/path/to/{info.filename}'. model='nano' works offline."
    )


def _check_algorithm(info: Downloadable) -> None:
    """An unusable hash algorithm is found before anything is downloaded."""
    algorithm, _ = _split_hash(info.known_hash)
    if algorithm == "xxh128":
        import importlib.util

        if importlib.util.find_spec("xxhash") is None:
            raise ImportError(
                f"checking {info.filename} needs the xxhash package (its publisher states an xxh128 "
                "hash): pip install xxhash"
            )


def fetch_weights(
    info: Downloadable | str,
    *,
    download: bool = True,
    directory: Path | str | None = None,
    progressbar: bool = True,
    also: Sequence[Path] = (),
) -> Path:
    """Return a verified local path to a registered file, downloading it if needed.

    Parameters
    ----------
    info
        A :class:`WeightsInfo` / :class:`HostedFile`, or an official name (``"vit_b"`` …; micro-sam's
        models have two files each: :func:`napari_sam.model.zoo.fetch_zoo_model`).
    download
        If False, only look on disk.
    directory
        Download folder; defaults to :func:`cache_dir`. Given, only that folder is searched.
    progressbar
        Show a download progress bar.
    also
        More folders to search after ``NAPARI_SAM_WEIGHTS`` and the cache (never written to).

    Raises
    ------
    WeightsUnavailableError
        Not on disk and not downloadable (offline, or ``download=False``).
    WeightsHashError
        A local or downloaded file has the wrong hash (a bad download is not kept).
    """
    if isinstance(info, str):
        if info not in OFFICIAL_WEIGHTS:
            raise ValueError(
                f"model {info!r} has no downloadable weights; registered: {sorted(OFFICIAL_WEIGHTS)}"
            )
        info = OFFICIAL_WEIGHTS[info]
    _check_algorithm(info)
    local = find_local_weights(info, also=also) if directory is None else None
    if local is not None:
        verify_hash(local, info.known_hash)
        return local
    explicit_dir = Path(directory).expanduser() if directory is not None else None
    target_dir = explicit_dir if explicit_dir is not None else cache_dir()
    target = target_dir / info.filename
    if target.is_file():
        verify_hash(target, info.known_hash)
        return target
    if not download:
        raise WeightsUnavailableError(_offline_help(info, tried_download=False, directory=explicit_dir))
    import pooch

    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        path = pooch.retrieve(
            info.url,
            known_hash=info.known_hash,
            fname=info.filename,
            path=target_dir,
            progressbar=progressbar,
        )
    except ValueError as exc:  # pooch's hash mismatch (the bad download is removed)
        if "hash" in str(exc).lower():
            raise WeightsHashError(
                f"downloaded {info.url} but its {describe_hash(info.known_hash)} does not match: {exc}"
            ) from exc
        raise
    except Exception as exc:  # network errors: requests / urllib / OS
        raise WeightsUnavailableError(
            _offline_help(info, directory=explicit_dir) + f" (download error: {exc})"
        ) from exc
    return Path(path)


# ----------------------------------------------------------------------------------------------------------
# SAM 2.1: the official repository publishes no hashes for its checkpoints (checkpoints/download_ckpts.sh
# downloads them with wget, unchecked). A file's sha256 is therefore recorded when it is first downloaded
# or first found (trust on first use, in SAM2_SHA256_RECORD in the cache folder) and checked against that
# record afterwards, so a later truncated or replaced copy is caught. Strict loading catches a corrupt one.

SAM2_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
#: File in :func:`cache_dir` holding the sha256 recorded for each SAM 2 file name.
SAM2_SHA256_RECORD = "sam2-sha256.json"


@dataclass(frozen=True)
class UnhashedFile:
    """A downloadable file whose publisher states no hash (its sha256 is recorded at first use)."""

    name: str
    filename: str
    url: str

    @property
    def file_names(self) -> tuple[str, ...]:
        return (self.filename,)


SAM2_WEIGHTS: dict[str, UnhashedFile] = {
    name: UnhashedFile(name, f"{name}.pt", f"{SAM2_BASE_URL}{name}.pt")
    for name in ("sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large")
}


def _check_recorded_sha256(path: Path, info: UnhashedFile) -> None:
    """Record ``path``'s sha256 under its file name on first use; afterwards it must stay the same."""
    record = cache_dir() / SAM2_SHA256_RECORD
    entries = _read_record(record)
    digest = file_sha256(path)
    known = (
        entries.get(info.filename, {}).get("sha256") if isinstance(entries.get(info.filename), dict) else None
    )
    if known is None:
        entries[info.filename] = {"sha256": digest, "url": info.url}
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(entries, indent=1, sort_keys=True))
        except OSError:
            pass
    elif known != digest:
        raise WeightsHashError(
            f"{path} has sha256 {digest}, but {known} was recorded when {info.filename} was first "
            f"downloaded or used (in {record}): the file is truncated or was replaced. Delete it and "
            "download it again (delete the record's entry to accept another copy)."
        )


def fetch_sam2_weights(
    name: str, *, download: bool = True, directory: Path | str | None = None, progressbar: bool = True
) -> Path:
    """A local path to the official SAM 2.1 checkpoint ``name``, downloading it if needed.

    Looked for like the other official files (``NAPARI_SAM_WEIGHTS``, then the cache folder, or only
    ``directory``). No hash is published: the sha256 is recorded at first download / first use and
    checked on every later use (see the note above :data:`SAM2_WEIGHTS`).

    Raises
    ------
    ValueError
        Unknown name.
    WeightsUnavailableError
        Not on disk and not downloadable.
    WeightsHashError
        The file differs from the one recorded at first use.
    """
    if name not in SAM2_WEIGHTS:
        raise ValueError(f"no SAM 2 checkpoint named {name!r}; registered: {sorted(SAM2_WEIGHTS)}")
    info = SAM2_WEIGHTS[name]
    explicit_dir = Path(directory).expanduser() if directory is not None else None
    local = find_local_weights(info) if explicit_dir is None else None  # type: ignore[arg-type]
    target_dir = explicit_dir if explicit_dir is not None else cache_dir()
    if local is None and (target_dir / info.filename).is_file():
        local = target_dir / info.filename
    if local is not None:
        _check_recorded_sha256(local, info)
        return local
    if not download:
        raise WeightsUnavailableError(
            f"Weights for {name!r} ({info.filename}) are not on this machine and downloading is off; they "
            f"come from {info.url}. Put the file in {target_dir}, point NAPARI_SAM_WEIGHTS at its folder, "
            f"or pass its path."
        )
    import pooch

    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        path = Path(
            pooch.retrieve(
                info.url, known_hash=None, fname=info.filename, path=target_dir, progressbar=progressbar
            )
        )
    except Exception as exc:  # network errors: requests / urllib / OS
        raise WeightsUnavailableError(
            f"Weights for {name!r} ({info.filename}) could not be downloaded from {info.url} ({exc}). On a "
            f"machine with internet access download that file, then put it in {target_dir} or point "
            "NAPARI_SAM_WEIGHTS at its folder."
        ) from exc
    _check_recorded_sha256(path, info)
    return path
