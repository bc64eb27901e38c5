"""The documentation site builds with ``mkdocs build --strict``, and its generated parts are current."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED = [
    "napari_sam.segment",
    "napari_sam.compute_embeddings",
    "napari_sam.predict",
    "napari_sam.automatic",
    "napari_sam.propagate",
    "napari_sam.train",
    "napari_sam.load_model",
    "napari_sam.open_embeddings",
    "napari_sam.Prediction",
    "napari_sam.io.read_image",
    "napari_sam.io.write_labels",
    "napari_sam.nodes.segment_from_prompts",
    "napari_sam.model.build_sam",
    "napari_sam.data.synthetic.nuclei_2d",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        pytest.skip("mkdocs / mkdocstrings are not installed (they come with the dev extra)")
    out = tmp_path_factory.mktemp("site")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    return out


def test_api_page_documents_the_public_functions(site: Path) -> None:
    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in DOCUMENTED:
        assert f'id="{name}"' in page, f"{name} is missing from the API page"
    # the docstrings' sections are rendered, examples included
    assert page.count("Examples") >= len(DOCUMENTED)
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "ns.segment(image, boxes=[[0, 55, 29, 95]])" in text
    # Sphinx roles are rendered as (linked) code, and grouped parameters keep their own types
    assert ":func:" not in text and ":class:" not in text
    assert '<a href="#napari_sam.compute_embeddings"><code>' in page
    segment = text[text.index("Segment objects given by points and boxes") :]
    # parameters are rendered as a list (a table overflowed into the table of contents): name (type)
    row = re.search(r"percentiles\s+\((.+?),\s+default", segment)
    assert row is not None and row.group(1).startswith("tuple"), row
    assert 'class="doc-section-item' in page and "<table" not in page


def test_cli_page_holds_the_real_help(site: Path) -> None:
    from napari_sam.cli import build_parser

    page = (site / "cli" / "index.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", "", page)
    for command in ("models", "demo", "gui", "train", "embed", "segment"):
        assert f"usage: napari-sam {command}" in text, command
    assert "napari-sam-help" not in page  # every marker was replaced
    assert "--slices-per-task" in text and build_parser().prog == "napari-sam"


def test_every_page_is_built_and_images_are_copied(site: Path) -> None:
    for page in sorted((ROOT / "docs").glob("*.md")):
        target = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert target.is_file(), f"{page.name} was not built"
    for image in ("annotator.png", "annotator-batch.png", "benchmark-ratios.svg"):
        assert (site / "images" / image).is_file(), image


def test_readme_keeps_its_two_setup_commands_on_the_start_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    commands = re.findall(r"```bash\n(pip install [^\n]+)\n```", readme)
    assert len(commands) == 2
    for command in commands:
        assert command in index


def test_benchmark_chart_matches_the_tables() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot_benchmarks.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
