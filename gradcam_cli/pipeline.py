"""The batch loop: decode ahead, compute, render and write behind, record every outcome.

Decoding (Pillow releases the GIL) runs in a thread pool one batch ahead of the model; colouring,
JPEG encoding and writing run in another pool behind it, so the model is rarely kept waiting. Only
a bounded number of batches is ever in memory. Each (image, target) gets a manifest row; a bad
image gets an error row and the batch goes on.

Rows go to ``manifest.jsonl`` through :class:`~.manifest.Manifest` (its docstring has the format and
which rows are kept). A rerun skips inputs whose current rows are complete, all ``ok``, with the same settings
and whose files exist, unless ``overwrite`` is set. An input is its resolved real path.

The batch itself (decode -> explain -> render -> rows) is :meth:`BatchJob.explain_batch`, shared with
the Ray engine (:mod:`gradcam_cli.runners.ray`), which runs it inside Ray Data actors.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import outputs, render
from .decode import PixelBudget, decode, fit_longest_side, model_input
from .errors import ImageError, OutputError
from .explainer import Explainer, empty_region_message
from .inputs import InputItem
from .manifest import MANIFEST, Manifest, RemoteManifest
from .models import ModelSpec
from .options import DEFAULT_MAX_MEGAPIXELS, DEFAULT_OVERLAY_SIZE
from .outputs import OutputFolder
from .storage import is_uri, read_bytes

__all__ = ["MANIFEST", "BatchJob", "Manifest", "RunOptions", "RunSummary", "plan_run", "run_explain"]
TOP_PREDICTIONS = 3


@dataclass
class RunOptions:
    method: str = "gradcam"
    layer: str | None = None
    classes: list[str | int] | None = None
    top_k: int = 1
    batch_size: int = 16
    output_dir: Path | str = Path("gradcam_out")  # a folder, or an object-store URI (storage.py)
    alpha: float = 0.4
    colormap: str = "jet"
    overwrite: bool = False
    xla: bool = False
    smooth: str | None = None
    chunk_size: int | None = None  # None: the method default (32), refused by methods without chunks
    max_channels: int | None = None
    region: str | None = None  # segmentation: 'pred' (default), 'all' or a mask file
    overlay_size: int | None = DEFAULT_OVERLAY_SIZE  # longest side; None: the original's size
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS  # largest decode allowed (and held at once)
    workers: int = max(1, min(4, os.cpu_count() or 1))  # decode and write threads, each pool


@dataclass
class RunSummary:
    images_done: int = 0
    images_skipped: int = 0
    rows: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    layer: str = ""
    method: str = ""

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failures else 0


def _fingerprint(spec: ModelSpec, explainer: Explainer, options: RunOptions, targets: str) -> str:
    # a model file is one model however its path is typed (and Ray actors load it by absolute path)
    source = os.path.realpath(spec.source) if os.path.isfile(spec.source) else spec.source
    settings = [source, str(spec.extra.get("weights")), explainer.layer_name, explainer.method.name,
                targets, f"{options.alpha:.4f}", options.colormap, str(spec.input_size), spec.preprocess_name,
                str(options.smooth), str(options.max_channels)]
    if spec.output is not None or options.region is not None:  # older runs' fingerprints stay valid
        settings += [str(spec.output), str(options.region)]
    if options.overlay_size is not None:  # overlays at the original's size match older runs
        settings.append(f"overlay={options.overlay_size}")
    return hashlib.sha1("|".join(settings).encode()).hexdigest()[:12]


def open_manifest(output: OutputFolder) -> Manifest:
    """The run's manifest: ``OUTPUT/manifest.jsonl``, wherever OUTPUT is."""
    if output.local is not None:
        return Manifest(output.local / MANIFEST)
    return RemoteManifest(output)


def decode_item(item: InputItem, spec: ModelSpec, channels: int, overlay_size: int | None,
                max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS, budget: PixelBudget | None = None,
                source: str | None = None) -> tuple[Image.Image, np.ndarray, tuple[int, int]]:
    """Decode one input once, at the scale needed: (the picture at the overlay's size, the model's
    float32 input, the original (width, height)). ``source``: where to read the file when that
    differs from ``item.path`` (an object-store URI is fetched whole and decoded from memory; messages
    still name ``item.path``). Raises :class:`ImageError`."""
    if item.error:
        raise ImageError(f"{item.path}: {item.error}.")
    source = source or item.path
    if is_uri(source):
        picture = io.BytesIO(read_bytes(source))
        decoded = decode(picture, spec.input_size, overlay_size, max_megapixels, budget, name=item.path)
    else:
        decoded = decode(source, spec.input_size, overlay_size, max_megapixels, budget)
    prepared = model_input(decoded.image, spec.input_size, channels)
    return fit_longest_side(decoded.image, overlay_size), prepared, decoded.original_size


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class BatchJob:
    """Everything one batch needs, built once per run (local engine) or once per Ray actor.

    :meth:`explain_batch` is the one batch function of the tool (decode -> explain -> render ->
    manifest rows); the local engine and the Ray engine both call it, so their outputs are the same
    by construction. Decoding and writing are handed in as futures and a submit function, so each
    engine decides where they run (thread pools ahead of and behind the model here, the same pools
    inside each Ray actor there).
    """

    spec: ModelSpec
    explainer: Explainer
    options: RunOptions
    classes: list[int] | None
    targets: str
    config: str
    run_id: str

    @classmethod
    def create(cls, spec: ModelSpec, options: RunOptions, explainer: Explainer | None = None,
               item_count: int | None = None, run_id: str | None = None) -> BatchJob:
        """Build (or reuse) the explainer and check the targets; raises before any image is read."""
        if explainer is None:  # a run of 3 images compiles for 3, not for a padded batch of 16
            batch_size = max(1, min(options.batch_size, item_count or options.batch_size))
            explainer = Explainer(spec, options.method, options.layer, batch_size, options.xla,
                                  options.smooth, options.chunk_size, options.max_channels, options.region)
        classes = explainer.resolve_targets(options.classes, options.top_k)
        targets = f"class={','.join(map(str, classes))}" if classes else f"top{options.top_k}"
        config = _fingerprint(spec, explainer, options, targets)
        return cls(spec, explainer, options, classes, targets, config,
                   run_id or f"{time.time():.6f}-{os.getpid()}")

    @functools.cached_property
    def output(self) -> OutputFolder:
        return OutputFolder(self.options.output_dir)

    @property
    def method_name(self) -> str:
        return self.explainer.method.name

    @property
    def base_row(self) -> dict:
        head = self.explainer.head
        row = {"run": self.run_id, "method": self.method_name, "layer": self.explainer.layer_name,
               "model": self.spec.name, "targets": self.targets, "config": self.config, "head": head.kind,
               "output": head.output_name}
        if self.explainer.region_name:
            row["region"] = self.explainer.region_name
        return row

    @functools.cached_property
    def budget(self) -> PixelBudget | None:
        return PixelBudget(self.options.max_megapixels) if self.options.max_megapixels else None

    @functools.cached_property
    def lut(self) -> np.ndarray:
        return render.colormap_lut(self.options.colormap)

    @functools.cached_property
    def channels(self) -> int:
        return int(self.spec.model.inputs[0].shape[-1] or 3)

    def decode(self, item: InputItem, source: str | None = None) -> tuple[Image.Image, np.ndarray, tuple[int, int]]:
        """:func:`decode_item` with this run's sizes, limit and pixel budget."""
        return decode_item(item, self.spec, self.channels, self.options.overlay_size, self.options.max_megapixels,
                           self.budget, source)

    def error_row(self, item: InputItem, message: str) -> dict:
        return {**self.base_row, "input": item.real, "status": "error", "error": message,
                "class_index": None, "label": None, "probability": None, "overlay": None, "heatmap": None}

    def write_outputs(self, stem: str, original, heatmap: np.ndarray, saliency, row: dict) -> dict:
        """Write one target's overlay JPEG, raw .npy (and guided PNG) atomically; the row names them."""
        overlay_name, heatmap_name = (name.as_posix() for name in outputs.output_paths(
            Path(), stem, self.method_name, row["class_index"]))
        image = render.overlay_image(original, heatmap, self.options.alpha, self.lut)
        if row.get("region_pixels") is not None:
            image = render.caption(image, f"{row['label']}: region of {row['region_pixels']} px")
        row = {**row, "overlay": self.output.write(overlay_name, render.jpeg_bytes(image)),
               "heatmap": self.output.write(heatmap_name, render.npy_bytes(heatmap))}
        if saliency is not None:
            saliency_picture = render.saliency_image(saliency, (original.height, original.width))
            row["saliency"] = self.output.write(overlay_name[: -len(".jpg")] + ".guided.png",
                                                render.png_bytes(saliency_picture))
        return row

    def explain_batch(
        self,
        batch: list[tuple[InputItem, str]],
        decoded: list[Future],
        submit_write: Callable[..., Future],
    ) -> list[Future | dict]:
        """One batch of (input, output stem): decode results (futures of :meth:`decode`) -> one
        compiled step -> a row per (image, target), or an error row per image that failed to decode.

        Writes go through ``submit_write(function, *arguments)``; the returned list holds, in input
        order, error rows and futures of the written rows.
        """
        rows: list[Future | dict] = []
        good: list[tuple[InputItem, str, Image.Image, np.ndarray, tuple[int, int]]] = []
        for (item, stem), future in zip(batch, decoded, strict=True):
            try:
                good.append((item, stem, *future.result()))
            except ImageError as error:
                rows.append(self.error_row(item, str(error)))
        if not good:
            return rows
        explainer, spec, head = self.explainer, self.spec, self.explainer.head
        result = explainer.run(np.stack([g[3] for g in good]), self.classes, self.options.top_k)
        for position, (item, stem, original, _, original_size) in enumerate(good):
            probabilities = result.probabilities[position]
            best = np.argsort(-probabilities)[:TOP_PREDICTIONS]
            top = [[int(c), spec.label(int(c)), round(float(probabilities[c]), 6)] for c in best]
            for rank, class_index in enumerate(result.class_ids[position]):
                heatmap = result.heatmaps[position, rank]
                label = spec.label(int(class_index))
                reported = round(float(probabilities[class_index]), 6)
                row = {**self.base_row, "input": item.real, "status": "ok", "error": None, "rank": rank,
                       "class_index": int(class_index), "label": label,
                       "probability": reported if head.reports_probability else None, "top": top,
                       "image_size": [original_size[1], original_size[0]],  # height, width
                       "heatmap_shape": list(heatmap.shape), "empty_heatmap": render.is_empty(heatmap)}
                if head.kind == "regression":
                    row["value"] = reported
                if result.region_pixels is not None:
                    row["pixel_share"] = reported
                    row["region_pixels"] = int(result.region_pixels[position, rank])
                    if row["region_pixels"] == 0:
                        rows.append({**self.error_row(item, empty_region_message(item.path, explainer.region_name,
                                                                                 label)),
                                     "rank": rank, "class_index": int(class_index), "label": label})
                        continue
                saliency = None if result.saliency is None else result.saliency[position, rank]
                rows.append(submit_write(self.write_outputs, stem, original, heatmap, saliency, row))
        return rows


class RowSink:
    """The driver's side of a run: rows into the manifest (flushed per batch), the summary, the
    caller's ``on_row`` and ``progress``. Both engines feed it; a write error ends the run with
    :class:`OutputError` after the rows already done are flushed."""

    def __init__(self, manifest: Manifest, summary: RunSummary, output_dir: OutputFolder,
                 on_row: Callable[[dict], None] | None, progress: Callable[[int], None] | None):
        self.manifest, self.summary, self.output_dir = manifest, summary, output_dir
        self.on_row, self.progress = on_row, progress

    @classmethod
    def for_plan(cls, plan: RunPlan, on_row: Callable[[dict], None] | None,
                 progress: Callable[[int], None] | None) -> RowSink:
        """The sink of a planned run. ``on_row`` first gets the rows of the inputs a previous run
        finished (skipped on resume), marked ``"resumed": True`` and not written again, so that a
        caller reading rows (``--json``) sees every input."""
        sink = cls(plan.manifest, plan.summary, plan.job.output, on_row, progress)
        if on_row:
            for row in plan.reused:
                on_row({**row, "resumed": True})
        return sink

    def resolve(self, futures: list[Future | dict], image_count: int) -> None:
        """Wait for a batch's written rows (in order) and record them."""
        rows = []
        try:
            for future in futures:
                rows.append(future.result() if isinstance(future, Future) else future)
        except OSError as error:
            self.manifest.append(rows)
            raise self.write_failure(error) from None
        self.record(rows, image_count)

    def write_failure(self, error: OSError) -> Exception:
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            return OutputError(
                f"{self.output_dir}: writing failed ({error.strerror}); stopped. Free space or "
                "pick another --output-dir; a rerun resumes where this one stopped."
            )
        return error

    def record(self, rows: list[dict], image_count: int) -> None:
        self.manifest.append(rows)
        self.summary.rows += len(rows)
        for row in rows:
            if row["status"] == "error":
                self.summary.failures.append((row["input"], row["error"]))
            elif row["rank"] == 0:
                self.summary.images_done += 1
            if self.on_row:
                self.on_row(row)
        if self.progress:
            self.progress(image_count)


@dataclass
class RunPlan:
    """What a run will do, decided by the driver before any image is read: the batch job, the
    manifest, every input's output stem and the inputs not yet done (resume)."""

    job: BatchJob
    manifest: Manifest
    summary: RunSummary
    stems: dict[str, str]
    todo: list[InputItem]
    reused: list[dict]  # the manifest rows of the inputs skipped on resume, in input order


def plan_run(items: list[InputItem], spec: ModelSpec, options: RunOptions,
             explainer: Explainer | None = None, progress: Callable[[int], None] | None = None) -> RunPlan:
    """Shared by the engines: check targets and the output folder, open the manifest, skip inputs
    a previous run finished with the same settings (unless ``options.overwrite``)."""
    job = BatchJob.create(spec, options, explainer, item_count=len(items))
    job.output.check_writable()
    manifest = open_manifest(job.output)
    summary = RunSummary(layer=job.explainer.layer_name, method=job.method_name)
    stems = dict(zip([i.real for i in items], outputs.unique_stems(i.relative for i in items), strict=True))
    done = {} if options.overwrite else manifest.finished_inputs(job.method_name, job.targets, job.config)
    todo = [item for item in items if item.real not in done]
    reused = [row for item in dict.fromkeys(i.real for i in items) if item in done for row in done[item]]
    summary.images_skipped = len(items) - len(todo)
    if progress and summary.images_skipped:
        progress(summary.images_skipped)
    return RunPlan(job, manifest, summary, stems, todo, reused)


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
