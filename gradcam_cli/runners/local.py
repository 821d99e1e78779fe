"""The local runner: the batch loop: decode ahead, compute, render and write behind, record every outcome.

Decoding (Pillow releases the GIL) runs in a thread pool one batch ahead of the model; colouring,
JPEG encoding and writing run in another pool behind it, so the model is rarely kept waiting. Only
a bounded number of batches is ever in memory. Each (image, target) gets a manifest row; a bad
image gets an error row and the batch goes on.

Rows go to ``manifest.jsonl`` through :class:`~gradcam_cli.manifest.Manifest` (its docstring has the format and
which rows are kept). A rerun skips inputs whose current rows are complete, all ``ok``, with the same settings
and whose files exist, unless ``overwrite`` is set. An input is its resolved real path."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import OutputError
from ..explainer import Explainer
from ..inputs import InputItem
from ..models.spec import ModelSpec
from ..options import RunOptions
from .batch import RowSink, plan_run
from .summary import RunSummary


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_explain(
    items: list[InputItem],
    spec: ModelSpec,
    options: RunOptions,
    on_row: Callable[[dict], None] | None = None,
    progress: Callable[[int], None] | None = None,
    explainer: Explainer | None = None,
) -> RunSummary:
    """Explain every input; write overlays, heatmaps and the manifest under ``options.output_dir``.

    ``on_row(row)`` is called with each manifest row once written; ``progress(n)`` after n more images.
    ``explainer``: reuse one (and its compiled graphs) across calls; it must match ``options``.
    Raises :class:`GradcamError` for problems found before any image is processed, and
    :class:`OutputError` when writing fails mid-run (the manifest is flushed first).
    """
    started = time.perf_counter()
    plan = plan_run(items, spec, options, explainer, progress)
    job, summary = plan.job, plan.summary
    sink = RowSink.for_plan(plan, on_row, progress)
    decoders = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="decode")
    writers = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="write")
    pending: list[tuple[list[Future | dict], int]] = []  # rows of a batch being written, image count

    def drain(keep: int) -> None:
        while len(pending) > keep:
            sink.resolve(*pending.pop(0))

    def submit_decodes(batch: list[tuple[InputItem, str]]) -> list[Future]:
        return [decoders.submit(job.decode, item) for item, _ in batch]

    batches = list(_batches([(item, plan.stems[item.real]) for item in plan.todo], job.explainer.batch_size))
    next_decodes: list[Future] = []
    try:
        next_decodes = submit_decodes(batches[0]) if batches else []
        for index, batch in enumerate(batches):
            decodes, next_decodes = next_decodes, (submit_decodes(batches[index + 1]) if index + 1 < len(batches) else [])
            pending.append((job.explain_batch(batch, decodes, writers.submit), len(batch)))
            drain(keep=1)
        drain(keep=0)
    except KeyboardInterrupt:
        summary.interrupted = True
        for future in next_decodes:
            future.cancel()
        with contextlib.suppress(KeyboardInterrupt, OutputError):
            drain(keep=0)
    finally:
        decoders.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True)
        plan.manifest.close()
        summary.seconds = time.perf_counter() - started
    return summary
