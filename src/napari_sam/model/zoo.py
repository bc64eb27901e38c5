"""micro-sam's model zoo by name: ``vit_b_lm``, ``vit_t_em_organelles``, ``vit_b_histopathology`` …

Each name is a Segment Anything model fine-tuned by micro-sam (or, for ``vit_t``, MobileSAM's weights
as micro-sam distributes them) and, for most, micro-sam's instance decoder for automatic segmentation
(AIS / APG). The facts — names, URLs and xxh128 hashes — are those of micro-sam's own registry
(``micro_sam.util.models``, micro-sam 1.8); nothing of micro-sam is imported.

Files are looked for and downloaded like the official ones (:mod:`.registry`): ``NAPARI_SAM_WEIGHTS``,
then our cache folder, then micro-sam's own cache (``$MICROSAM_CACHEDIR/models``, else the user cache
dir's ``micro_sam/models``, so models a micro-sam user already downloaded are used as they are), then a
download through pooch into our cache, each file checked against its published xxh128. In our cache the
files are ``<name>.pt`` and ``<name>_decoder.pt``; micro-sam's cache names them ``<name>`` and
``<name>_decoder`` — both are found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsUnavailableError
from .registry import (
    WITH_DECODER,
    HostedFile,
    ModelEntry,
    cache_dir,
    describe_hash,
    fetch_weights,
    local_file_status,
    model_catalogue,
)

__all__ = [
    "ZOO_MODELS",
    "ZooFiles",
    "ZooModel",
    "catalogue",
    "fetch_zoo_model",
    "microsam_cache_dir",
    "model_names",
    "zoo_help",
]

#: What the models of each family are for (micro-sam's descriptions of its training data, briefly).
_FAMILIES = {
    "lm": "micro-sam, light microscopy: cells and nuclei (fluorescence, label-free)",
    "em_organelles": "micro-sam, electron microscopy: organelles (mitochondria, nuclei …)",
    "histopathology": "micro-sam, histopathology: nuclei in H&E and other stained tissue",
    "medical_imaging": "micro-sam (MedicoSAM), medical imaging: CT, MRI, ultrasound, X-ray …",
}
#: Approximate download sizes, by architecture (the fine-tuned models keep their base's size).
_SIZES = {"vit_t": "~40 MB", "vit_b": "~375 MB", "vit_l": "~1.25 GB", "vit_h": "~2.56 GB"}

_BIOIMAGE_IO = "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/"
_OWNCLOUD = "https://owncloud.gwdg.de/index.php/s/"


@dataclass(frozen=True)
class ZooModel:
    """One of micro-sam's models: its architecture, what it is for, its files.

    Attributes
    ----------
    name
        The name micro-sam gives it (``"vit_b_lm"``), accepted as ``model=``.
    architecture
        The base it was fine-tuned from: ``"vit_t"``, ``"vit_b"``, ``"vit_l"`` or ``"vit_h"``.
    purpose
        One line: what data it was made for.
    weights
        The Segment Anything weights (a plain state dict, or micro-sam's ``{"model_state": …}``).
    decoder
        micro-sam's instance decoder (its bare ``decoder_state``), or None where none is published.
    """

    name: str
    architecture: str
    purpose: str
    weights: HostedFile
    decoder: HostedFile | None = None

    @property
    def files(self) -> tuple[HostedFile, ...]:
        """The weights, then the decoder when there is one."""
        return (self.weights,) if self.decoder is None else (self.weights, self.decoder)


def _model(
    name: str, purpose: str, url: str, xxh128: str, decoder_url: str | None = None, decoder_xxh128: str = ""
) -> ZooModel:
    weights = HostedFile(name, f"{name}.pt", url, f"xxh128:{xxh128}", aliases=(name,))
    decoder = None
    if decoder_url is not None:
        stem = f"{name}_decoder"
        decoder = HostedFile(stem, f"{stem}.pt", decoder_url, f"xxh128:{decoder_xxh128}", aliases=(stem,))
    return ZooModel(name, name[:5], purpose, weights, decoder)


def _bioimage_io(name: str, folder: str, xxh128: str, decoder_xxh128: str) -> ZooModel:
    """A model on the BioImage.IO model zoo: ``<folder>/files/<arch>.pt`` and ``<arch>_decoder.pt``."""
    family = _FAMILIES[name[6:]]
    base = f"{_BIOIMAGE_IO}{folder}/files/{name[:5]}"
    return _model(name, family, f"{base}.pt", xxh128, f"{base}_decoder.pt", decoder_xxh128)


def _owncloud(name: str, share: str, xxh128: str, decoder_share: str, decoder_xxh128: str) -> ZooModel:
    family = _FAMILIES[name[6:]]
    return _model(
        name,
        family,
        f"{_OWNCLOUD}{share}/download",
        xxh128,
        f"{_OWNCLOUD}{decoder_share}/download",
        decoder_xxh128,
    )


#: micro-sam's models by name, in the order ``napari-sam models`` lists them.
ZOO_MODELS: dict[str, ZooModel] = {
    model.name: model
    for model in (
        _model(
            "vit_t",
            "MobileSAM (TinyViT encoder), as micro-sam ships it: general purpose, fast on a CPU",
            f"{_OWNCLOUD}TuDzuwVDHd1ZDnQ/download",
            "8eadbc88aeb9d8c7e0b4b60c3db48bd0",
        ),
        _bioimage_io(
            "vit_t_lm",
            "faithful-chicken/1.1",
            "72ec5074774761a6e5c05a08942f981e",
            "3e914a5f397b0312cdd36813031f8823",
        ),
        _bioimage_io(
            "vit_b_lm",
            "diplomatic-bug/1.2",
            "fe9252a29f3f4ea53c15a06de471e186",
            "708b15ac620e235f90bb38612c4929ba",
        ),
        _bioimage_io(
            "vit_l_lm",
            "idealistic-rat/1.2",
            "017f20677997d628426dec80a8018f9d",
            "2faeafa03819dfe03e7c46a44aaac64a",
        ),
        _bioimage_io(
            "vit_t_em_organelles",
            "greedy-whale/1",
            "253474720c497cce605e57c9b1d18fd9",
            "8f897c7bb93174a4d1638827c4dd6f44",
        ),
        _bioimage_io(
            "vit_b_em_organelles",
            "noisy-ox/1.2",
            "f3bf2ed83d691456bae2c3f9a05fb438",
            "bb6398956a6b0132c26b631c14f95ce2",
        ),
        _bioimage_io(
            "vit_l_em_organelles",
            "humorous-crab/1.2",
            "810b084b6e51acdbf760a993d8619f2d",
            "334877640bfdaaabce533e3252a17294",
        ),
        _owncloud(
            "vit_b_histopathology",
            "sBB4H8CTmIoBZsQ",
            "ffd1a2cd84570458b257bd95fdd8f974",
            "KO9AWqynI7SFOBj",
            "6a66194dcb6e36199cbee2214ecf7213",
        ),
        _owncloud(
            "vit_l_histopathology",
            "IZgnn1cpBq2PHod",
            "b591833c89754271023e901281dee3f2",
            "oIs6VSmkOp7XrKF",
            "46aab7765d4400e039772d5a50b55c04",
        ),
        _owncloud(
            "vit_h_histopathology",
            "L7AcvVz7DoWJ2RZ",
            "bd1856dafc156a43fb3aa705f1a6e92e",
            "1qAKxy5H0jgwZvM",
            "3ed9f87e46ad5e16935bd8d722c8dc47",
        ),
        _owncloud(
            "vit_b_medical_imaging",
            "f5Ol4FrjPQWfjUF",
            "40169f1e3c03a4b67bff58249c176d92",
            "ahd3ZhZl2e0RIwz",
            "9e498b12f526f119b96c88be76e3b2ed",
        ),
    )
}


def model_names() -> tuple[str, ...]:
    """Every name ``model=`` accepts: ``"nano"``, the official ``vit_b`` / ``vit_l`` / ``vit_h``, then
    micro-sam's models in :data:`ZOO_MODELS` order."""
    from .registry import OFFICIAL_WEIGHTS

    return ("nano", *OFFICIAL_WEIGHTS, *ZOO_MODELS)


def microsam_cache_dir() -> Path:
    """Where micro-sam keeps its downloads: ``$MICROSAM_CACHEDIR/models``, else the user cache dir's
    ``micro_sam/models`` (searched, never written to)."""
    env = os.environ.get("MICROSAM_CACHEDIR")
    if env:
        return Path(env).expanduser() / "models"
    import pooch

    return Path(pooch.os_cache("micro_sam")) / "models"


@dataclass(frozen=True)
class ZooFiles:
    """The checked local files of a :class:`ZooModel`: its weights and its decoder (None without one)."""

    weights: Path
    decoder: Path | None


def _zoo_model(name: str | ZooModel) -> ZooModel:
    if isinstance(name, ZooModel):
        return name
    if name not in ZOO_MODELS:
        raise ValueError(f"{name!r} is not one of micro-sam's models: {', '.join(ZOO_MODELS)}")
    return ZOO_MODELS[name]


def zoo_help(model: ZooModel, missing: tuple[HostedFile, ...], *, directory: Path | None = None) -> str:
    """What to fetch, from where, and where to put it, for the ``missing`` files of ``model``."""
    listing = "; ".join(
        f"{file.url} saved as {file.filename} ({describe_hash(file.known_hash)})" for file in missing
    )
    where = (
        f"put {'it' if len(missing) == 1 else 'them'} in {directory}"
        if directory is not None
        else f"put {'it' if len(missing) == 1 else 'them'} in {cache_dir()} or in a folder named by "
        "NAPARI_SAM_WEIGHTS"
    )
    beside = ""
    if model.decoder is not None:
        beside = (
            f", or pass model='/path/to/{model.weights.filename}' with {model.decoder.filename} beside it "
            "(the decoder is found as <stem>_decoder.pt)"
        )
    return (
        f"micro-sam's model {model.name!r} needs {len(missing)} file{'s' if len(missing) > 1 else ''} that "
        f"{'are' if len(missing) > 1 else 'is'} not on this machine. On a machine with internet access "
        f"download {listing}; then {where}{beside}. model='nano' works offline."
    )


def fetch_zoo_model(
    name: str | ZooModel,
    *,
    download: bool = True,
    directory: Path | str | None = None,
    progressbar: bool = True,
) -> ZooFiles:
    """The verified local files of one of micro-sam's models, downloading what is missing.

    Parameters
    ----------
    name
        A name of :data:`ZOO_MODELS` (``"vit_b_lm"`` …) or a :class:`ZooModel`.
    download
        If False, only look on disk.
    directory
        Download folder; defaults to our cache folder. Given, only that folder is searched.
    progressbar
        Show download progress bars.

    Returns
    -------
    ZooFiles
        The weights file and the decoder file (None for a model without one), each checked against its
        published xxh128.

    Raises
    ------
    ValueError
        Not one of micro-sam's models.
    WeightsUnavailableError
        A file is neither on disk nor downloadable: the message lists every such file with its URL, the
        file name to save it as and its hash, and where to put it.
    WeightsHashError
        A local or downloaded file has the wrong hash (a bad download is not kept).
    """
    model = _zoo_model(name)
    folder = Path(directory).expanduser() if directory is not None else None
    also = (microsam_cache_dir(),) if folder is None else ()
    found: dict[str, Path] = {}
    missing: list[HostedFile] = []
    reasons: list[str] = []
    for file in model.files:
        try:
            found[file.name] = fetch_weights(
                file, download=download, directory=folder, progressbar=progressbar, also=also
            )
        except WeightsUnavailableError as exc:
            missing.append(file)
            reason = str(exc).partition(" (download error: ")[2].rstrip(")")
            reasons.append(f"{file.filename}: {reason or 'downloading is off (download=False)'}")
    if missing:
        raise WeightsUnavailableError(
            zoo_help(model, tuple(missing), directory=folder) + " (" + "; ".join(reasons) + ")"
        )
    decoder = found[model.decoder.name] if model.decoder is not None else None
    return ZooFiles(found[model.weights.name], decoder)


def _status(model: ZooModel) -> str:
    also = (microsam_cache_dir(),)
    weights = local_file_status(model.weights, also=also)
    if model.decoder is None:
        return weights
    decoder = local_file_status(model.decoder, also=also)
    if weights == "-" and decoder == "-":
        return "-"
    return f"{weights}; decoder: {'not here' if decoder == '-' else decoder}"


def catalogue() -> list[ModelEntry]:
    """Every name ``model=`` accepts: what it is for, its files, whether they are on this machine
    (hashes checked and remembered) and how it segments without prompts.

    Returns
    -------
    list of ModelEntry
        nano, the official models, then micro-sam's models in :data:`ZOO_MODELS` order.
    """
    rows = model_catalogue()
    for model in ZOO_MODELS.values():
        weights = f"{model.weights.filename} ({_SIZES.get(model.architecture, '?')} download"
        weights += f") + {model.decoder.filename}" if model.decoder is not None else ")"
        purpose = f"{model.purpose} [{model.architecture}]"
        automatic = WITH_DECODER if model.decoder is not None else ModelEntry.automatic
        rows.append(ModelEntry(model.name, purpose, weights, _status(model), automatic))
    return rows
