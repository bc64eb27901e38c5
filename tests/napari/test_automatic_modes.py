"""'Segment everything' with the instance decoder's modes (AIS, APG) from the annotator.

A small random SAM (``small_weights``) gets a small random instance decoder and is saved as one
safetensors file, as a user's model with a decoder would be; the panel's results are checked against
the engine's ``automatic`` on the same image and options.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._napari.automatic import (
    AutomaticSettings,
    decoder_values,
    describe,
    plan_automatic,
    run_automatic,
)
from napari_sam._napari.embeddings import EmbeddingSettings, stored
from napari_sam.data.synthetic import nuclei_2d
from napari_sam.engine.automatic.front import automatic
from napari_sam.engine.types import TiledEmbeddings
from napari_sam.errors import AnnotatorError

layers = pytest.importorskip("napari.layers")

WAIT_MS = 120_000
IMAGE = nuclei_2d((96, 96), n_objects=5, seed=1)[0]


@pytest.fixture(scope="module")
def decoder_weights(small_weights, tmp_path_factory):
    """``small_weights`` with a seeded random instance decoder, saved as safetensors."""
    import torch

    from napari_sam.model import InstanceDecoder, build_sam, save_safetensors

    sam = build_sam(small_weights)
    torch.manual_seed(0)
    sam.instance_decoder = InstanceDecoder(
        embed_dim=sam.config.prompt_embed_dim,
        image_size=sam.image_size,
        initial_features=2,
        full_resolution=False,
    )
    return save_safetensors(
        sam, tmp_path_factory.mktemp("decoder") / "with_decoder.safetensors", config=sam.config
    )


@pytest.fixture(scope="module")
def thresholds(decoder_weights) -> dict[str, float]:
    """Thresholds (two decimals, as the panel shows them) at which the random decoder finds at least two
    objects in IMAGE with AIS and with APG: its maps crowd near one value each (micro-sam's defaults
    find nothing), so they are taken from the maps' quantiles."""
    from napari_sam.engine.automatic.maps import predict_maps
    from napari_sam.engine.embed.embeddings import compute_embeddings

    embeddings = compute_embeddings(IMAGE, str(decoder_weights), device="cpu")
    maps = predict_maps(embeddings.model, embeddings)
    names = ("foreground_threshold", "center_distance_threshold", "boundary_distance_threshold")
    for q in ((0.7, 0.5, 0.5), (0.7, 0.3, 0.5), (0.5, 0.5, 0.7), (0.3, 0.3, 0.7), (0.7, 0.5, 0.7)):
        chosen = {n: round(float(np.quantile(m, v)), 2) for n, m, v in zip(names, maps, q, strict=True)}
        if all(automatic(embeddings, mode=mode, **chosen).n_objects >= 2 for mode in ("ais", "apg")):
            return chosen
    raise AssertionError("no thresholds give the random decoder two objects")


def engine(image, mode: str, weights, **options):
    return automatic(image, mode=mode, model=str(weights), device="cpu", **options)


def steps_of(job):
    """Every ``(done, total)`` the job reported, and what it returned."""
    steps, seen = job.steps(), []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as stop:
            return seen, stop.value


# ---------------------------------------------------------------------------- controller, no Qt
@pytest.mark.parametrize("mode", ["ais", "apg"])
def test_decoder_modes_match_the_engine_with_their_scores(mode, decoder_weights, thresholds):
    layer = layers.Image(IMAGE)
    embedding = EmbeddingSettings(model=str(decoder_weights), device="cpu")
    settings = AutomaticSettings(mode=mode, **thresholds)
    seen, out = steps_of(plan_automatic(layer, embedding, settings))
    expected = engine(IMAGE, mode, decoder_weights, **thresholds)
    assert expected.n_objects >= 2
    np.testing.assert_array_equal(out.labels, expected.labels)
    assert out.mode == mode and out.n_objects == expected.n_objects
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)  # embedding, then the engine's 3 steps
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    score = out.features["score"][1:]
    np.testing.assert_allclose(score, expected.properties["score"], rtol=1e-6)
    if mode == "ais":  # the mean foreground probability over each object
        from napari_sam.engine.automatic.maps import predict_maps

        embeddings = stored(layer, embedding).slices[0]
        foreground = predict_maps(embeddings.model, embeddings)[0]
        means = [foreground[out.labels == k].mean() for k in range(1, out.n_objects + 1)]
        np.testing.assert_allclose(score, means, rtol=1e-5)
    assert np.isnan(out.features["stability_score"][1:]).all()
    assert f"({mode.upper()})" in describe(out, "SAM automatic")


def test_auto_runs_ais_on_a_model_with_a_decoder(decoder_weights):
    layer = layers.Image(IMAGE)
    embedding = EmbeddingSettings(model=str(decoder_weights), device="cpu")
    # auto on a model with a decoder runs AIS with micro-sam's defaults; the grid options do not steer it
    auto = run_automatic(plan_automatic(layer, embedding, AutomaticSettings(points_per_side=4)))
    assert auto.mode == "ais"
    np.testing.assert_array_equal(auto.labels, engine(IMAGE, "ais", decoder_weights).labels)


def test_decoder_mode_without_a_decoder_and_mixed_options_are_refused(small_weights, decoder_weights):
    layer = layers.Image(IMAGE)
    plain = EmbeddingSettings(model=str(small_weights), device="cpu")
    for mode in ("ais", "apg"):
        job = plan_automatic(layer, plain, AutomaticSettings(mode=mode))
        with pytest.raises(AnnotatorError, match=f"{mode.upper()} needs a model with an instance decoder"):
            run_automatic(job)
    assert run_automatic(plan_automatic(layer, plain, AutomaticSettings(points_per_side=2))).mode == "amg"
    with_decoder = EmbeddingSettings(model=str(decoder_weights), device="cpu")
    bad = [
        ({"mode": "fast"}, "mode"),
        ({"mode": "ais", "preset": "nuclei"}, "preset"),
        ({"mode": "apg", "points_per_side": 8}, "points_per_side"),
        ({"mode": "amg", "min_size": 3}, "min_size"),
        ({"foreground_threshold": 0.3}, "foreground_threshold.*'ais' or 'apg'"),
        ({"mode": "ais", "foreground_threshold": 1.5}, "foreground_threshold"),
    ]
    for options, message in bad:
        with pytest.raises(AnnotatorError, match=message):
            plan_automatic(layer, with_decoder, AutomaticSettings(**options))
    assert decoder_values("ais")["min_size"] == 0 and decoder_values("apg")["min_size"] == 25
    with pytest.raises(AnnotatorError, match="mode"):
        decoder_values("amg")


def test_a_stack_runs_apg_slice_by_slice_numbered_on(decoder_weights, thresholds):
    stack = np.stack([IMAGE, IMAGE[::-1].copy()])
    layer = layers.Image(stack)
    embedding = EmbeddingSettings(model=str(decoder_weights), device="cpu")
    settings = AutomaticSettings(mode="apg", whole_stack=True, link_3d=False, **thresholds)
    seen, out = steps_of(plan_automatic(layer, embedding, settings))
    first, second = (engine(plane, "apg", decoder_weights, **thresholds).labels for plane in stack)
    np.testing.assert_array_equal(out.labels[0], first)
    np.testing.assert_array_equal(out.labels[1], np.where(second > 0, second + first.max(), 0))
    assert first.max() >= 2 and second.max() >= 1 and seen[-1] == (8, 8)
    assert out.features["z"].tolist()[1:] == [0] * int(first.max()) + [1] * int(second.max())


def test_a_big_image_runs_ais_on_the_annotators_tiled_embeddings(decoder_weights, thresholds):
    image = np.zeros((40, 2100), np.uint16)
    for col in (300, 900, 1500, 1900):
        image[8:30, col : col + 24] = 1000
    layer = layers.Image(image)
    embedding = EmbeddingSettings(model=str(decoder_weights), device="cpu")
    out = run_automatic(plan_automatic(layer, embedding, AutomaticSettings(mode="ais", **thresholds)))
    tiled = stored(layer, embedding).slices[0]
    assert isinstance(tiled, TiledEmbeddings)  # kept for the annotator's prompts too
    expected = automatic(tiled, mode="ais", **thresholds)
    np.testing.assert_array_equal(out.labels, expected.labels)
    assert out.labels.shape == image.shape and out.n_objects >= 1


# ---------------------------------------------------------------------------- the panel in napari
@pytest.mark.usefixtures("gui")
def test_panel_modes_enable_their_controls_and_run_into_new_layers(
    make_napari_viewer, qtbot, decoder_weights, small_weights, thresholds
):
    from napari_sam._widgets import AnnotatorWidget

    viewer = make_napari_viewer()
    viewer.add_image(IMAGE, name="nuclei")
    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SAM annotator")
    widget.embedding.model_combo.setCurrentText(str(decoder_weights))
    widget.embedding.device_combo.setCurrentText("cpu")
    panel = widget.automatic_panel

    assert panel.mode() == "auto"  # the fast default: AIS when the model has a decoder
    assert panel.preset_combo.isEnabled() and panel.points_spin.isEnabled()
    assert not panel.foreground_spin.isEnabled() and not panel.min_size_spin.isEnabled()
    panel.set_mode("apg")
    assert not panel.preset_combo.isEnabled() and not panel.iou_spin.isEnabled()
    assert panel.foreground_spin.isEnabled() and panel.min_size_spin.value() == 25
    panel.set_mode("ais")
    assert panel.min_size_spin.value() == 0
    panel.foreground_spin.setValue(thresholds["foreground_threshold"])
    panel.center_spin.setValue(thresholds["center_distance_threshold"])
    panel.boundary_spin.setValue(thresholds["boundary_distance_threshold"])

    def run():
        before = list(viewer.layers)
        assert panel.start() is not None
        qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
        return [layer for layer in viewer.layers if layer not in before]

    for mode in ("ais", "apg"):
        panel.set_mode(mode)
        (result,) = run()
        expected = engine(IMAGE, mode, decoder_weights, **thresholds, min_size=panel.min_size_spin.value())
        assert expected.n_objects >= 2
        np.testing.assert_array_equal(result.data, expected.labels)
        assert result.features["score"].to_numpy()[1:] == pytest.approx(expected.properties["score"])

    # a model without a decoder: AIS says why, adds nothing; AMG still runs
    widget.embedding.model_combo.setCurrentText(str(small_weights))
    panel.set_mode("ais")
    assert run() == []
    assert "needs a model with an instance decoder" in widget.status_label.text()
    panel.set_mode("amg")
    panel.points_spin.setValue(2)
    (grid,) = run()
    assert grid.data.shape == IMAGE.shape
