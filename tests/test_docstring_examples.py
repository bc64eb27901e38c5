"""The public API's docstrings: numpy-style sections, and Examples that run (as doctests).

Functions must have Parameters, Returns and Examples sections; classes Parameters or Attributes, and
Examples. Every example is run with :mod:`doctest` on the shipped nano model (small synthetic images),
so the documentation cannot drift from the code.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import re

import pytest

import napari_sam

#: Documented public objects besides ``napari_sam.__all__`` (dotted paths).
EXTRA = [
    "napari_sam.io.read_image",
    "napari_sam.io.write_labels",
    "napari_sam.io.find_images",
    "napari_sam.batch.embed_files",
    "napari_sam.batch.segment_files",
    "napari_sam.nodes.segment_from_prompts",
    "napari_sam.nodes.segment_from_prompts_node",
    "napari_sam.nodes.automatic_segmentation",
    "napari_sam.nodes.compute_embeddings_to_cache",
    "napari_sam.nodes.shapes_to_boxes",
    "napari_sam.model.build_sam",
    "napari_sam.data.synthetic.nuclei_2d",
    "napari_sam.data.synthetic.nuclei_3d",
    "napari_sam.data.synthetic.cells_2d",
    "napari_sam.data.synthetic.generate",
    "napari_sam.data.synthetic.preset",
    "napari_sam.data.synthetic.SyntheticConfig",
    "napari_sam.data.synthetic.SyntheticSample",
]
PUBLIC = [f"napari_sam.{name}" for name in napari_sam.__all__ if name != "__version__"] + EXTRA


def _resolve(dotted: str) -> object:
    module_name, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def _sections(doc: str) -> set[str]:
    """Names of the numpy-style sections of ``doc`` (a title line underlined with dashes)."""
    return set(re.findall(r"^(\w[\w ]*)\n-{3,}$", doc, flags=re.MULTILINE))


def test_public_list_covers_the_top_level_api() -> None:
    assert "napari_sam.segment" in PUBLIC
    assert len(PUBLIC) == len(set(PUBLIC)) >= 30


@pytest.mark.parametrize("dotted", PUBLIC)
def test_docstring_sections(dotted: str) -> None:
    obj = _resolve(dotted)
    doc = inspect.getdoc(obj) or ""
    sections = _sections(doc)
    if inspect.isclass(obj):
        assert sections & {"Parameters", "Attributes"}, f"{dotted}: no Parameters / Attributes section"
        missing = {"Examples"} - sections
    else:
        missing = {"Parameters", "Returns", "Examples"} - sections
    assert not missing, f"{dotted}: docstring lacks the section(s) {sorted(missing)}"


@pytest.mark.parametrize("dotted", PUBLIC)
def test_docstring_examples_run(dotted: str) -> None:
    obj = _resolve(dotted)
    module = importlib.import_module(obj.__module__)
    finder = doctest.DocTestFinder(recurse=False)
    tests = finder.find(obj, dotted, module=module, globs=dict(vars(module)))
    examples = [ex for test in tests for ex in test.examples if not ex.options.get(doctest.SKIP)]
    assert examples, f"{dotted}: no example that runs"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
