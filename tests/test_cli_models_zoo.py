"""``napari-sam models`` with micro-sam's zoo, ``--download`` of a zoo name, ``export-model``.

The zoo's ``vit_b_lm`` is pointed at small random files served from 127.0.0.1 (see
tests/model/test_model_zoo.py, whose fixtures are used here)."""

from __future__ import annotations

import torch

from napari_sam.cli import main
from napari_sam.model import build_sam
from napari_sam.model.zoo import ZOO_MODELS
from tests.model.test_model_zoo import isolated, isolated_env, served  # noqa: F401 - fixtures


def _rows(out: str) -> dict[str, list[str]]:
    """``napari-sam models`` output → name: its three lines."""
    lines = out.splitlines()[2:]
    rows: dict[str, list[str]] = {}
    for line in lines:
        if not line.startswith(" "):
            rows[line.split()[0]] = [line]
        else:
            rows[list(rows)[-1]].append(line.strip())
    return rows


def test_models_lists_every_name_with_its_purpose_and_decoder(capsys):
    assert main(["models"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert list(rows) == ["nano", "vit_b", "vit_l", "vit_h", *ZOO_MODELS]
    assert all(len(lines) == 3 for lines in rows.values())
    purposes = {
        "vit_b_lm": "light microscopy",
        "vit_t_em_organelles": "electron microscopy",
        "vit_h_histopathology": "histopathology",
        "vit_b_medical_imaging": "medical imaging",
        "vit_b": "official SAM",
        "nano": "ours",
    }
    for name, words in purposes.items():
        assert words in rows[name][1], (name, rows[name])
    assert "[vit_t]" in rows["vit_t_lm"][1] and "[vit_l]" in rows["vit_l_lm"][1]
    for name in ("nano", "vit_b_lm", "vit_b_histopathology"):
        assert "automatic: AIS / APG (instance decoder)" in rows[name][2]
    for name in ("vit_b", "vit_t"):
        assert "automatic: AMG" in rows[name][2]
    assert "napari-sam models --download vit_b_lm" in rows["vit_b_lm"][0]  # not here: how to get it
    assert "vit_b_lm.pt (~375 MB download) + vit_b_lm_decoder.pt" in rows["vit_b_lm"][2]


def test_download_a_zoo_model_then_it_is_listed_as_here(served, isolated, capsys):  # noqa: F811
    assert main(["models", "--download", "vit_b_lm"]) == 0
    out = capsys.readouterr().out
    weights, decoder = isolated / "vit_b_lm.pt", isolated / "vit_b_lm_decoder.pt"
    assert f"vit_b_lm: {weights} + {decoder} (xxh128 verified)" in out
    assert sorted(served.server.requests) == ["/vit_b.pt", "/vit_b_decoder.pt"]
    assert main(["models"]) == 0
    row = _rows(capsys.readouterr().out)["vit_b_lm"]
    assert row[0] == f"{row[0].split()[0]:21} {weights} (xxh128 ok); decoder: {decoder} (xxh128 ok)"
    # a damaged decoder is flagged in the listing
    decoder.write_bytes(b"x")
    assert main(["models"]) == 0
    row = _rows(capsys.readouterr().out)["vit_b_lm"]
    assert "decoder:" in row[0] and "WRONG HASH" in row[0]


def test_download_offline_and_unknown_names_fail_cleanly(capsys):
    assert main(["models", "--download", "vit_b_lmm"]) == 2
    assert "not a model name" in capsys.readouterr().err


def test_export_model_writes_micro_sams_format(served, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "vit_b_mine.pt"
    assert main(["export-model", "vit_b_lm", str(out)]) == 0
    assert "with its instance decoder" in capsys.readouterr().out
    held = torch.load(out, weights_only=True)
    assert set(held) == {"model_state", "decoder_state"}
    assert all(torch.equal(held["model_state"][k], v) for k, v in served.sam_state.items())
    assert all(torch.equal(held["decoder_state"][k], v) for k, v in served.decoder_state.items())
    assert build_sam(out).instance_decoder is not None
    assert main(["export-model", "vit_b_lm", str(tmp_path / "zoo.pt"), "--decoder", "beside"]) == 0
    assert (tmp_path / "zoo_decoder.pt").is_file()


def test_export_model_refuses_nano_for_micro_sam(tmp_path, capsys):
    assert main(["export-model", "nano", str(tmp_path / "nano.pt")]) == 1
    assert "format='napari_sam'" in capsys.readouterr().err
    assert main(["export-model", "nano", str(tmp_path / "nano.safetensors"), "--format", "napari_sam"]) == 0
    assert build_sam(tmp_path / "nano.safetensors").config.encoder_type == "nano"
    assert main(["export-model", "nano", str(tmp_path)]) == 2  # a folder, not a file


def test_gui_refuses_an_unknown_model_before_opening_napari(capsys):
    assert main(["gui", "--model", "vit_b_lmm"]) == 2
    err = capsys.readouterr().err
    assert "neither a model name" in err and "vit_b_lm" in err
