"""The batch loop: decode ahead, compute, render and write behind, record every outcome.

Decoding (Pillow releases the GIL) runs in a thread pool one batch ahead of the model; colouring,
JPEG encoding and writing run in another pool behind it, so the model is rarely kept waiting. Only
a bounded number of batches is ever in memory. Each (image, target) gets a manifest row; a bad
image gets an error row and the batch goes on.

Rows go to ``manifest.jsonl`` through :class:`~.manifest.Manifest` (its docstring has the format and
which rows are kept). A rerun skips inputs whose current rows are complete, all ``ok``, with the same settings
and whose files exist, unless ``overwrite`` is set. An input is its resolved real path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import render
from .engine import Explainer
from .errors import ImageError, OutputError
from .images import (
    InputItem,
    PixelBudget,
    decode,
    fit_longest_side,
    model_input,
)
from .manifest import MANIFEST, Manifest
from .models import ModelSpec
from .sizes import DEFAULT_MAX_MEGAPIXELS, DEFAULT_OVERLAY_SIZE

__all__ = ["MANIFEST", "Manifest", "RunOptions", "RunSummary", "run_explain"]
TOP_PREDICTIONS = 3


@dataclass
class RunOptions:
    method: str = "gradcam"
    layer: str | None = None
    classes: list[str | int] | None = None
    top_k: int = 1
    batch_size: int = 16
    output_dir: Path = Path("gradcam_out")
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
    settings = [spec.source, str(spec.extra.get("weights")), explainer.layer_name, explainer.method.name,
                targets, f"{options.alpha:.4f}", options.colormap, str(spec.input_size), spec.preprocess_name,
                str(options.smooth), str(options.max_channels)]
    if spec.output is not None or options.region is not None:  # older runs' fingerprints stay valid
        settings += [str(spec.output), str(options.region)]
    if options.overlay_size is not None:  # overlays at the original's size match older runs
        settings.append(f"overlay={options.overlay_size}")
    return hashlib.sha1("|".join(settings).encode()).hexdigest()[:12]


def _check_output_dir(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        render.atomic_write_bytes(output_dir / ".gradcam-write-test", b"")
        os.unlink(output_dir / ".gradcam-write-test")
        render.remove_stale_temporaries(output_dir)
    except OSError as error:
        raise OutputError(
            f"{output_dir}: cannot write the output folder ({error.strerror or error}); "
            "pick another with -o/--output-dir."
        ) from None


def decode_item(item: InputItem, spec: ModelSpec, channels: int, overlay_size: int | None,
                max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS, budget: PixelBudget | None = None,
                ) -> tuple[Image.Image, np.ndarray, tuple[int, int]]:
    """Decode one input once, at the scale needed: (the picture at the overlay's size, the model's
    float32 input, the original (width, height)). Raises :class:`ImageError`."""
    if item.error:
        raise ImageError(f"{item.path}: {item.error}.")
    decoded = decode(item.path, spec.input_size, overlay_size, max_megapixels, budget)
    prepared = model_input(decoded.image, spec.input_size, channels)
    return fit_longest_side(decoded.image, overlay_size), prepared, decoded.original_size


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
    if explainer is None:  # a run of 3 images compiles for 3, not for a padded batch of 16
        batch_size = max(1, min(options.batch_size, len(items)))
        explainer = Explainer(spec, options.method, options.layer, batch_size, options.xla,
                              options.smooth, options.chunk_size, options.max_channels, options.region)
    classes = explainer.resolve_targets(options.classes, options.top_k)
    targets = f"class={','.join(map(str, classes))}" if classes else f"top{options.top_k}"
    output_dir = Path(options.output_dir)
    _check_output_dir(output_dir)
    manifest = Manifest(output_dir / MANIFEST)
    config = _fingerprint(spec, explainer, options, targets)
    summary = RunSummary(layer=explainer.layer_name, method=explainer.method.name)
    stems = dict(zip([i.real for i in items], render.unique_stems(i.relative for i in items), strict=True))
    done = set() if options.overwrite else manifest.finished_inputs(explainer.method.name, targets, config)
    todo = [item for item in items if item.real not in done]
    summary.images_skipped = len(items) - len(todo)
    if progress and summary.images_skipped:
        progress(summary.images_skipped)
    lut = render.colormap_lut(options.colormap)
    channels = int(spec.model.inputs[0].shape[-1] or 3)
    budget = PixelBudget(options.max_megapixels) if options.max_megapixels else None
    run_id = f"{time.time():.6f}-{os.getpid()}"
    head = explainer.head
    base_row = {"run": run_id, "method": explainer.method.name, "layer": explainer.layer_name,
                "model": spec.name, "targets": targets, "config": config, "head": head.kind,
                "output": head.output_name}
    if explainer.region_name:
        base_row["region"] = explainer.region_name

    def error_row(item: InputItem, message: str) -> dict:
        return {**base_row, "input": item.real, "status": "error", "error": message,
                "class_index": None, "label": None, "probability": None, "overlay": None, "heatmap": None}

    def write_outputs(item: InputItem, original, heatmap: np.ndarray, saliency, row: dict) -> dict:
        overlay_path, heatmap_path = render.output_paths(output_dir, stems[item.real], explainer.method.name, row["class_index"])
        image = render.overlay_image(original, heatmap, options.alpha, lut)
        if row.get("region_pixels") is not None:
            image = render.caption(image, f"{row['label']}: region of {row['region_pixels']} px")
        render.atomic_write_bytes(overlay_path, render.jpeg_bytes(image))
        render.atomic_write_bytes(heatmap_path, render.npy_bytes(heatmap))
        row = {**row, "overlay": os.path.abspath(overlay_path), "heatmap": os.path.abspath(heatmap_path)}
        if saliency is not None:
            saliency_path = overlay_path.with_name(overlay_path.name[: -len(".jpg")] + ".guided.png")
            saliency_picture = render.saliency_image(saliency, (original.height, original.width))
            render.atomic_write_bytes(saliency_path, render.png_bytes(saliency_picture))
            row["saliency"] = os.path.abspath(saliency_path)
        return row

    decoders = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="decode")
    writers = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="write")
    pending: list[tuple[list[Future | dict], int]] = []  # rows of a batch being written, image count

    def drain(keep: int) -> None:
        while len(pending) > keep:
            futures, image_count = pending.pop(0)
            rows = []
            try:
                for future in futures:
                    rows.append(future.result() if isinstance(future, Future) else future)
            except OSError as error:
                manifest.append(rows)
                if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                    raise OutputError(
                        f"{output_dir}: writing failed ({error.strerror}); stopped. Free space or "
                        "pick another --output-dir; a rerun resumes where this one stopped."
                    ) from None
                raise
            manifest.append(rows)
            summary.rows += len(rows)
            for row in rows:
                if row["status"] == "error":
                    summary.failures.append((row["input"], row["error"]))
                elif row["rank"] == 0:
                    summary.images_done += 1
                if on_row:
                    on_row(row)
            if progress:
                progress(image_count)

    def submit_decodes(batch: list[InputItem]) -> list[Future]:
        return [decoders.submit(decode_item, item, spec, channels, options.overlay_size, options.max_megapixels, budget)
                for item in batch]

    batches = list(_batches(todo, explainer.batch_size))
    next_decodes: list[Future] = []
    try:
        next_decodes = submit_decodes(batches[0]) if batches else []
        for index, batch in enumerate(batches):
            decodes, next_decodes = next_decodes, (submit_decodes(batches[index + 1]) if index + 1 < len(batches) else [])
            rows: list[Future | dict] = []
            good: list[tuple[InputItem, Any, np.ndarray, tuple[int, int]]] = []
            for item, future in zip(batch, decodes, strict=True):
                try:
                    good.append((item, *future.result()))
                except ImageError as error:
                    rows.append(error_row(item, str(error)))
            if good:
                result = explainer.run(np.stack([g[2] for g in good]), classes, options.top_k)
                for position, (item, original, _, original_size) in enumerate(good):
                    probabilities = result.probabilities[position]
                    best = np.argsort(-probabilities)[:TOP_PREDICTIONS]
                    top = [[int(c), spec.label(int(c)), round(float(probabilities[c]), 6)] for c in best]
                    for rank, class_index in enumerate(result.class_ids[position]):
                        heatmap = result.heatmaps[position, rank]
                        label = spec.label(int(class_index))
                        reported = round(float(probabilities[class_index]), 6)
                        row = {**base_row, "input": item.real, "status": "ok", "error": None, "rank": rank,
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
                                rows.append({**error_row(item, f"{item.path}: the {explainer.region_name} region of "
                                                         f"class '{label}' is empty (no pixel predicted as it); "
                                                         "pick another --class or use --region all."),
                                             "rank": rank, "class_index": int(class_index), "label": label})
                                continue
                        saliency = None if result.saliency is None else result.saliency[position, rank]
                        rows.append(writers.submit(write_outputs, item, original, heatmap, saliency, row))
            pending.append((rows, len(batch)))
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
        manifest.close()
        summary.seconds = time.perf_counter() - started
    return summary
