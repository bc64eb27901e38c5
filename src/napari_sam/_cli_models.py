"""The ``napari-sam models`` and ``napari-sam export-model`` subcommands' work (their parsers are in
:mod:`napari_sam.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import UsageError


def cmd_models(args: argparse.Namespace) -> int:
    """List every model name; with ``--download NAME`` fetch its files, with ``--verify FILE`` check one."""
    from .model.registry import cache_dir
    from .model.zoo import catalogue, microsam_cache_dir

    if args.verify:
        return verify(Path(args.verify))
    print(
        f"weights cache: {cache_dir()} (folders in NAPARI_SAM_WEIGHTS are searched first, micro-sam's "
        f"cache {microsam_cache_dir()} last)"
    )
    rows = catalogue()
    width = max(len(entry.name) for entry in rows)
    print(f"{'name':{width}} on this machine / what it is for / its files, automatic segmentation")
    for entry in rows:
        here = entry.status
        if here == "-":
            here = f"not here: napari-sam models --download {entry.name} (or see NAPARI_SAM_WEIGHTS)"
        print(f"{entry.name:{width}} {here}")
        print(f"{'':{width}} {entry.purpose}")
        print(f"{'':{width}} weights: {entry.weights}; automatic: {entry.automatic}")
    if args.download:
        download(args.download)
    return 0


def download(name: str) -> list[Path]:
    """Fetch ``name``'s files (official or micro-sam's) and print where they are."""
    from .model import OFFICIAL_WEIGHTS, fetch_weights
    from .model.zoo import ZOO_MODELS, fetch_zoo_model, model_names

    if name in OFFICIAL_WEIGHTS:
        path = fetch_weights(name)
        print(f"{name}: {path} (sha256 verified)")
        return [path]
    if name in ZOO_MODELS:
        files = fetch_zoo_model(name)
        paths = [files.weights] if files.decoder is None else [files.weights, files.decoder]
        print(f"{name}: {' + '.join(str(p) for p in paths)} (xxh128 verified)")
        return paths
    if name == "nano":
        print("nano: shipped inside the package; nothing to download")
        return []
    raise UsageError(f"--download {name!r}: not a model name; the names are {', '.join(model_names())}")


def _origin(path: Path, sha256: str) -> str:
    """Which published file ``path`` is: an official one (by sha256) or one of micro-sam's (xxh128)."""
    from .model import OFFICIAL_WEIGHTS
    from .model.registry import file_hash
    from .model.zoo import ZOO_MODELS

    official = {info.sha256: name for name, info in OFFICIAL_WEIGHTS.items()}
    if sha256 in official:
        return f"official {official[sha256]}"
    xxh128 = f"xxh128:{file_hash(path, 'xxh128')}"
    for name, entry in ZOO_MODELS.items():
        if entry.weights.known_hash == xxh128:
            return f"micro-sam's {name}"
    return "not an official release file, nor one of micro-sam's"


def verify(path: Path) -> int:
    """Read a weights file, name its architecture and hash, and say which published file it is."""
    from .model import build_sam
    from .model.registry import file_sha256

    model = build_sam(path)
    digest = file_sha256(path)
    params = sum(p.numel() for p in model.parameters())
    decoder = ", with an instance decoder" if model.instance_decoder is not None else ""
    print(f"{path}: architecture {model.name}, {params / 1e6:.1f} M parameters{decoder}")
    print(f"sha256 {digest} ({_origin(path, digest)})")
    return 0


def cmd_export_model(args: argparse.Namespace) -> int:
    """Load ``args.model`` (a name or a weights file) and write it with :func:`export_model`."""
    from .engine.loading import load_model
    from .model.export import export_model

    out = Path(args.out).expanduser()
    if out.is_dir():
        raise UsageError(f"OUT {out} is a folder; give the file to write, e.g. {out / 'model.pt'}")
    if not out.parent.is_dir():
        raise UsageError(f"OUT's folder {out.parent} does not exist")
    model = load_model(args.model, device="cpu")
    written = export_model(model, out, format=args.format, decoder=args.decoder)
    decoder = "with its instance decoder" if model.instance_decoder is not None else "(no instance decoder)"
    if written.decoder is not None:
        decoder = f"with its instance decoder in {written.decoder}"
    elif model.instance_decoder is not None and args.format == "micro_sam" and args.decoder == "none":
        decoder = "without its instance decoder (--decoder none)"
    print(f"wrote {written.weights}: {model.name} in {args.format}'s format, {decoder}")
    return 0
