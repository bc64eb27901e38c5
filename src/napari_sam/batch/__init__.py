"""Batches of files: embed or segment many images, resumable, locally or on a dask.distributed cluster.

A batch is a list of :class:`BatchItem` (an input file and the output it makes). :func:`run_batch`
skips items whose output is already complete, runs the rest, records the failure of one item (with
its message) and goes on with the others, and returns a :class:`BatchSummary`. With
``scheduler=`` the items run as tasks on a dask.distributed cluster; the workers read the inputs and
write the outputs themselves, so inputs and outputs must be on storage every worker sees.

:func:`embed_files` and :func:`segment_files` are the batches behind ``napari-sam embed`` and
``napari-sam segment``; :func:`read_prompts_csv` reads their prompt tables. Every labels output of
:func:`segment_files` gets a record beside it (:func:`record_path`, written by :func:`write_output`)
naming its input: that is how an output is told from an input (:func:`foreign_output`). The record
also holds how the labels were made (the input's fingerprint, the prompts, mode, model and
options), so that labels count as done only for the same request (:func:`outdated_output`).

The modules, in the order they build on each other:

- :mod:`.runner`: :class:`BatchItem`, :class:`BatchSummary`, :func:`run_batch` (here or on a cluster);
- :mod:`.inputs`: the input images, output folders, outputs that would land on an input;
- :mod:`.outputs`: the record beside each labels output, :func:`write_output`;
- :mod:`.prompt_table`: the CSV prompt tables (``CSV_HELP``, :func:`read_prompts_csv`);
- :mod:`.jobs`: :class:`EmbedJob` / :func:`embed_files`, :class:`SegmentJob` / :func:`segment_files`.
"""

from __future__ import annotations

from ..errors import UsageError
from .jobs import (
    EmbedJob,
    SegmentJob,
    cache_path,
    embed_files,
    model_identity,
    prompts_digest,
    segment_files,
)
from .outputs import foreign_output, input_fingerprint, outdated_output, record_path, write_output
from .prompt_table import CSV_HELP as CSV_HELP
from .prompt_table import PromptTable, read_prompts_csv
from .runner import BatchItem, BatchSummary, Done, run_batch

__all__ = [
    "BatchItem",
    "BatchSummary",
    "Done",
    "EmbedJob",
    "PromptTable",
    "SegmentJob",
    "UsageError",
    "cache_path",
    "embed_files",
    "foreign_output",
    "input_fingerprint",
    "model_identity",
    "outdated_output",
    "prompts_digest",
    "read_prompts_csv",
    "record_path",
    "run_batch",
    "segment_files",
    "write_output",
]
