"""micro-sam's models by name: the registry's facts, lookup, download with the xxh128 check, the
offline message, and loading with the instance decoder attached.

Files are built in micro-sam's format (a bare SAM state dict plus ``<arch>_decoder.pt`` holding the bare
``decoder_state``, as its zoo publishes them; or one ``{"model_state": …, "decoder_state": …}`` file)
with seeded random weights of a small architecture registered for the test, and served from a loopback
HTTP server: nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import xxhash

import napari_sam as ns
from napari_sam.engine import loading
from napari_sam.errors import CheckpointError, WeightsHashError, WeightsUnavailableError
from napari_sam.model import CONFIGS, InstanceDecoder, build_sam, registry, zoo
from napari_sam.model.zoo import ZOO_MODELS, fetch_zoo_model
from tests.model.test_instance_checkpoint import TINY
from tests.model.test_registry import LoopbackServer, _closed_port, isolated_env  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[2]
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"

#: TINY (test_instance_checkpoint.py's small ViT) stands in for vit_b (a real one is 375 MB).
TINY_NAME = "tiny_zoo_test"


def xxh128(path: Path) -> str:
    return "xxh128:" + xxhash.xxh128(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def isolated(isolated_env, tmp_path, monkeypatch) -> Path:  # noqa: F811 - extends the imported fixture
    """test_registry's isolation (our cache in tmp_path, no proxy, no sha256 memo), and micro-sam's cache
    in tmp_path too; no xxh128 memo or loaded model kept; the small architecture registered."""
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path / "microsam"))
    monkeypatch.setattr(registry, "_verified_xxh128", {})
    monkeypatch.setattr(loading, "_CACHE", type(loading._CACHE)(2))
    monkeypatch.setitem(CONFIGS, TINY_NAME, TINY)
    return isolated_env


@dataclasses.dataclass
class Served:
    """The files served for the stand-in ``vit_b_lm``, and the state dicts they hold."""

    server: LoopbackServer
    root: Path
    sam_state: dict[str, torch.Tensor]
    decoder_state: dict[str, torch.Tensor]
    entry: zoo.ZooModel


def _tiny_states(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    sam = build_sam(TINY)
    decoder = InstanceDecoder(embed_dim=32, image_size=128, initial_features=2)
    for p in decoder.parameters():  # away from the default init, so that a mix-up shows
        p.data.normal_(0, 0.2)
    return sam.state_dict(), decoder.state_dict()


def _register(monkeypatch, name: str, root: Path, server: LoopbackServer, **wrong: str) -> zoo.ZooModel:
    """Point ``ZOO_MODELS[name]`` at the served files (hashes computed; ``wrong`` overrides one)."""
    real = ZOO_MODELS[name]
    weights = dataclasses.replace(
        real.weights, url=server.url("vit_b.pt"), known_hash=wrong.get("weights", xxh128(root / "vit_b.pt"))
    )
    decoder = None
    if real.decoder is not None:
        decoder = dataclasses.replace(
            real.decoder,
            url=server.url("vit_b_decoder.pt"),
            known_hash=wrong.get("decoder", xxh128(root / "vit_b_decoder.pt")),
        )
    entry = dataclasses.replace(real, architecture=TINY_NAME, weights=weights, decoder=decoder)
    monkeypatch.setitem(ZOO_MODELS, name, entry)
    return entry


@pytest.fixture
def served(tmp_path, monkeypatch) -> Iterator[Served]:
    root = tmp_path / "served"
    root.mkdir()
    sam_state, decoder_state = _tiny_states()
    torch.save(sam_state, root / "vit_b.pt")  # as the BioImage.IO zoo publishes them
    torch.save(decoder_state, root / "vit_b_decoder.pt")
    server = LoopbackServer(root)
    entry = _register(monkeypatch, "vit_b_lm", root, server)
    yield Served(server, root, sam_state, decoder_state, entry)
    server.stop()


# --------------------------------------------------------------------------- the registry's facts


def test_every_name_of_the_brief_is_registered_on_its_base():
    expected = {
        "vit_t": "vit_t",
        "vit_t_lm": "vit_t",
        "vit_b_lm": "vit_b",
        "vit_l_lm": "vit_l",
        "vit_t_em_organelles": "vit_t",
        "vit_b_em_organelles": "vit_b",
        "vit_l_em_organelles": "vit_l",
        "vit_b_histopathology": "vit_b",
        "vit_l_histopathology": "vit_l",
        "vit_h_histopathology": "vit_h",
        "vit_b_medical_imaging": "vit_b",
    }
    assert {name: model.architecture for name, model in ZOO_MODELS.items()} == expected
    assert [name for name, model in ZOO_MODELS.items() if model.decoder is None] == ["vit_t"]
    for model in ZOO_MODELS.values():
        assert model.weights.known_hash.startswith("xxh128:") and len(model.weights.known_hash) == 39
        assert model.weights.filename == f"{model.name}.pt"
        assert model.weights.aliases == (model.name,)  # micro-sam's cache name
        if model.decoder is not None:
            assert model.decoder.filename == f"{model.name}_decoder.pt"
    assert zoo.model_names()[:4] == ("nano", "vit_b", "vit_l", "vit_h")


@pytest.mark.slow
@pytest.mark.skipif(not REF_PYTHON.is_file(), reason="needs the reference environment (.venv-ref)")
def test_names_urls_and_hashes_are_micro_sams():
    """Read micro-sam's own registry (micro_sam.util.models) in the reference environment."""
    script = (
        "import json, micro_sam.util as u\n"
        "m = u.models()\n"
        "print(json.dumps({'registry': m.registry, 'urls': m.urls}))\n"
    )
    done = subprocess.run(
        [str(REF_PYTHON), "-c", script], capture_output=True, text=True, timeout=300, check=True, cwd=ROOT
    )
    reference = json.loads(done.stdout.strip().splitlines()[-1])
    theirs = {k for k in reference["registry"] if not k.endswith("_decoder")} - {"vit_b", "vit_l", "vit_h"}
    assert theirs == set(ZOO_MODELS)  # every model micro-sam lists besides the official three
    for name, model in ZOO_MODELS.items():
        assert reference["registry"][name] == model.weights.known_hash, name
        assert reference["urls"][name] == model.weights.url, name
        if model.decoder is None:
            assert f"{name}_decoder" not in reference["registry"]
        else:
            assert reference["registry"][f"{name}_decoder"] == model.decoder.known_hash, name
            assert reference["urls"][f"{name}_decoder"] == model.decoder.url, name
    for name, info in registry.OFFICIAL_WEIGHTS.items():  # the official files are the same files
        assert reference["urls"][name] == info.url


# --------------------------------------------------------------------------- download and lookup


def test_download_checks_xxh128_and_lands_in_our_cache(served, isolated):
    files = fetch_zoo_model("vit_b_lm", progressbar=False)
    assert files.weights == isolated / "vit_b_lm.pt"
    assert files.decoder == isolated / "vit_b_lm_decoder.pt"
    assert files.weights.read_bytes() == (served.root / "vit_b.pt").read_bytes()
    assert sorted(served.server.requests) == ["/vit_b.pt", "/vit_b_decoder.pt"]
    served.server.stop()  # found in the cache from now on
    assert fetch_zoo_model("vit_b_lm", progressbar=False) == files


def test_a_wrong_hash_is_refused_and_the_bad_file_not_kept(served, isolated, monkeypatch):
    _register(monkeypatch, "vit_b_lm", served.root, served.server, decoder="xxh128:" + "0" * 32)
    with pytest.raises(WeightsHashError, match="xxh128"):
        fetch_zoo_model("vit_b_lm", progressbar=False)
    assert not (isolated / "vit_b_lm_decoder.pt").exists()
    assert sorted(p.name for p in isolated.iterdir()) == ["vit_b_lm.pt"]  # no partial download left
    # a damaged local copy is refused as well, before anything is built
    (isolated / "vit_b_lm.pt").write_bytes(b"truncated")
    _register(monkeypatch, "vit_b_lm", served.root, served.server)
    with pytest.raises(WeightsHashError, match=r"vit_b_lm\.pt"):
        ns.load_model("vit_b_lm", device="cpu")


def test_offline_message_says_what_to_fetch_and_where(monkeypatch, isolated, tmp_path):
    real = ZOO_MODELS["vit_b_lm"]
    dead = f"http://127.0.0.1:{_closed_port()}/"
    entry = dataclasses.replace(
        real,
        weights=dataclasses.replace(real.weights, url=dead + "vit_b.pt"),
        decoder=dataclasses.replace(real.decoder, url=dead + "vit_b_decoder.pt"),
    )
    monkeypatch.setitem(ZOO_MODELS, "vit_b_lm", entry)
    with pytest.raises(WeightsUnavailableError) as excinfo:
        ns.load_model("vit_b_lm", device="cpu")
    message = str(excinfo.value)
    for file in entry.files:
        assert file.url in message and file.filename in message
        assert file.known_hash.split(":")[1] in message
    assert str(isolated) in message and "NAPARI_SAM_WEIGHTS" in message
    assert "vit_b_lm_decoder.pt beside it" in message
    assert not isolated.exists() or not any(isolated.iterdir())  # nothing half-downloaded kept
    # the real entry, downloading off: the published URLs are named, nothing is fetched
    monkeypatch.setitem(ZOO_MODELS, "vit_b_lm", real)
    with pytest.raises(WeightsUnavailableError) as excinfo:
        fetch_zoo_model("vit_b_lm", download=False)
    assert real.weights.url in str(excinfo.value) and "download=False" in str(excinfo.value)
    assert "fe9252a29f3f4ea53c15a06de471e186" in str(excinfo.value)


def test_napari_sam_weights_and_micro_sams_cache_are_searched(served, monkeypatch, tmp_path):
    served.server.stop()  # nothing may be downloaded
    folder = tmp_path / "offline"
    folder.mkdir()
    (folder / "vit_b_lm.pt").write_bytes((served.root / "vit_b.pt").read_bytes())
    (folder / "vit_b_lm_decoder.pt").write_bytes((served.root / "vit_b_decoder.pt").read_bytes())
    monkeypatch.setenv("NAPARI_SAM_WEIGHTS", str(folder))
    files = fetch_zoo_model("vit_b_lm")
    assert (files.weights, files.decoder) == (folder / "vit_b_lm.pt", folder / "vit_b_lm_decoder.pt")
    # micro-sam's cache names its files without a suffix
    monkeypatch.delenv("NAPARI_SAM_WEIGHTS")
    theirs = tmp_path / "microsam" / "models"
    theirs.mkdir(parents=True)
    (theirs / "vit_b_lm").write_bytes((served.root / "vit_b.pt").read_bytes())
    (theirs / "vit_b_lm_decoder").write_bytes((served.root / "vit_b_decoder.pt").read_bytes())
    files = fetch_zoo_model("vit_b_lm")
    assert (files.weights, files.decoder) == (theirs / "vit_b_lm", theirs / "vit_b_lm_decoder")
    sam = ns.load_model("vit_b_lm", device="cpu")
    assert sam.instance_decoder is not None and sam.name == "vit_b_lm"


# --------------------------------------------------------------------------- loading and using


def test_loaded_strictly_with_the_decoder_attached(served):
    sam = ns.load_model("vit_b_lm", device="cpu")
    assert sam.name == "vit_b_lm" and sam.config == TINY
    ours = sam.state_dict()
    # every key used, none missing: the SAM keys and the decoder's (prefixed), and nothing else
    expected = {**served.sam_state, **{f"instance_decoder.{k}": v for k, v in served.decoder_state.items()}}
    assert set(ours) == set(expected)
    assert all(torch.equal(ours[k], v) for k, v in expected.items())
    assert sam.instance_decoder.config.batch_statistics  # run as micro-sam runs its decoders
    assert ns.load_model("vit_b_lm", device="cpu") is sam  # kept in memory, by name


def test_a_file_with_a_key_too_many_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "served"
    root.mkdir()
    sam_state, decoder_state = _tiny_states()
    torch.save({**sam_state, "image_encoder.extra.weight": torch.zeros(1)}, root / "vit_b.pt")
    torch.save(decoder_state, root / "vit_b_decoder.pt")
    server = LoopbackServer(root)
    try:
        _register(monkeypatch, "vit_b_lm", root, server)
        with pytest.raises(CheckpointError, match=r"image_encoder\.extra\.weight"):
            ns.load_model("vit_b_lm", device="cpu")
    finally:
        server.stop()


def test_automatic_segmentation_runs_the_decoder(served):
    rng = np.random.default_rng(0)
    image = (rng.random((96, 80)) * 255).astype(np.uint8)
    image[20:50, 20:50] = 230
    options = {
        "foreground_threshold": 0.3,
        "center_distance_threshold": 0.9,
        "boundary_distance_threshold": 0.9,
    }
    by_name = ns.automatic(image, model="vit_b_lm", mode="ais", device="cpu", **options)
    # the same files loaded by path, the decoder given explicitly: the same labels
    folder = registry.cache_dir()
    sam = build_sam(folder / "vit_b_lm.pt", instance_decoder=folder / "vit_b_lm_decoder.pt")
    by_path = ns.automatic(image, model=sam, mode="ais", device="cpu", **options)
    np.testing.assert_array_equal(by_name.labels, by_path.labels)
    assert by_name.labels.max() > 0
    # mode="auto" picks AIS for a model with a decoder; segment() without prompts too
    auto = ns.automatic(image, model="vit_b_lm", device="cpu", **options)
    np.testing.assert_array_equal(auto.labels, by_name.labels)
    labels = ns.segment(image, model="vit_b_lm", device="cpu", boxes=[[20, 20, 50, 50]])
    assert labels.shape == image.shape and labels.max() <= 1


def test_one_micro_sam_file_with_model_state_and_decoder_state(tmp_path, monkeypatch):
    """micro-sam's training checkpoints: ``sam.``-prefixed keys and the decoder in one file; a registry
    entry without a decoder file still gets the decoder the file holds."""
    root = tmp_path / "served"
    root.mkdir()
    sam_state, decoder_state = _tiny_states(seed=3)
    both = {"model_state": {f"sam.{k}": v for k, v in sam_state.items()}, "decoder_state": decoder_state}
    torch.save(both, root / "vit_b.pt")
    server = LoopbackServer(root)
    try:
        real = ZOO_MODELS["vit_t"]  # the entry without a decoder file
        weights = dataclasses.replace(
            real.weights, url=server.url("vit_b.pt"), known_hash=xxh128(root / "vit_b.pt")
        )
        monkeypatch.setitem(
            ZOO_MODELS, "vit_t", dataclasses.replace(real, architecture=TINY_NAME, weights=weights)
        )
        sam = ns.load_model("vit_t", device="cpu")
    finally:
        server.stop()
    assert sam.instance_decoder is not None
    assert all(torch.equal(sam.state_dict()[k], v) for k, v in sam_state.items())


def test_vit_t_names_resolve_to_their_files(monkeypatch):
    """The vit_t-based names: looked up and named in the offline message (building them needs the
    vit_t architecture, tested with it)."""
    for name in ("vit_t", "vit_t_lm", "vit_t_em_organelles"):
        with pytest.raises(WeightsUnavailableError) as excinfo:
            fetch_zoo_model(name, download=False)
        for file in ZOO_MODELS[name].files:
            assert file.url in str(excinfo.value)


def test_unknown_name_lists_every_name():
    with pytest.raises(ValueError, match="vit_b_lm") as excinfo:
        ns.load_model("vit_b_lmm", device="cpu")
    assert "vit_b_lmm" in str(excinfo.value) and "nano" in str(excinfo.value)
    with pytest.raises(ValueError, match="not one of micro-sam's models"):
        fetch_zoo_model("vit_b")
