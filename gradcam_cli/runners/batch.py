"""The one batch function and what both runners share around it.

:meth:`BatchJob.explain_batch` is the batch (decode -> explain -> render -> manifest rows) that the
local runner (:mod:`gradcam_cli.runners.local`) and the Ray runner (:mod:`gradcam_cli.runners.ray`)
both call, so their outputs are the same file for file. :func:`plan_run` decides, on the driver and
before any image is read, what a run will do (targets checked, output folder writable, inputs a
previous run finished skipped); :class:`RowSink` records the rows the batches return."""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import outputs, render
from ..boxes import Detection, box_fields, pick_detections
from ..decode import GREY_CONVERSION, PixelBudget, decode_item
from ..errors import ImageError, OutputError, param
from ..explainer import Explainer
from ..inputs import InputItem
from ..manifest import MANIFEST, Manifest, RemoteManifest
from ..models.spec import ModelSpec
from ..options import RunOptions
from ..outputs import OutputFolder
from ..targets import empty_region_message
from .summary import RunSummary

TOP_PREDICTIONS = 3


def fingerprint(spec: ModelSpec, explainer: Explainer, options: RunOptions, targets: str) -> str:
    """The settings that decide a run's files, as 12 hex digits (``config`` in every manifest row): a
    rerun skips an input whose rows carry the same. The model enters by its content
    (:attr:`ModelSpec.identity`), never its path: a moved or copied model file resumes, a file
    replaced by another model redoes its inputs, and Ray workers whose model file (or gradcam-cli)
    lives elsewhere agree with the driver."""
    return _digest([spec.identity, *_run_settings(spec, explainer, options, targets)])


def legacy_fingerprint(spec: ModelSpec, explainer: Explainer, options: RunOptions, targets: str) -> str:
    """The ``config`` of rows written before the model's identity was its content (up to 2026-12):
    the model file's real path and the ``weights`` setting. Resume accepts it as the same settings
    (a manifest of that time keeps resuming while the model stays where it was); rows redone are
    written with :func:`fingerprint`."""
    source = os.path.realpath(spec.source) if os.path.isfile(spec.source) else spec.source
    return _digest([source, str(spec.extra.get("weights")), *_run_settings(spec, explainer, options, targets)])


def _run_settings(spec: ModelSpec, explainer: Explainer, options: RunOptions, targets: str) -> list[str]:
    settings = [explainer.layer_name, explainer.method.name, targets, f"{options.alpha:.4f}", options.colormap,
                str(spec.input_size), spec.preprocess_name, str(options.smooth), str(options.max_channels)]
    if spec.model_output is not None or options.region is not None:  # older runs' fingerprints stay valid
        settings += [str(spec.model_output), str(options.region)]
    if options.overlay_size is not None:  # overlays at the original's size match older runs
        settings.append(f"overlay={options.overlay_size}")
    if explainer.combine:  # several layers (all in layer_name): how their maps were combined
        settings.append(f"combine={explainer.combine}")
    if options.reference is not None:  # a similarity: what the query is compared with (gradcam_cli.reference)
        settings.append(f"reference={options.reference.digest}")
    if explainer.counterfactual:  # the same class, the opposite map
        settings.append("counterfactual")
    settings += [f"{key}={value}" for key, value in sorted(explainer.tuning.items())]
    return settings


def _digest(settings: list[str]) -> str:
    return hashlib.sha1("|".join(settings).encode()).hexdigest()[:12]


def open_manifest(output: OutputFolder) -> Manifest:
    """The run's manifest: ``OUTPUT/manifest.jsonl``, wherever OUTPUT is."""
    if output.local is not None:
        return Manifest(output.local / MANIFEST)
    return RemoteManifest(output)


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
    legacy_config: str = ""  # what rows written before content identities carry (legacy_fingerprint)

    @classmethod
    def create(cls, spec: ModelSpec, options: RunOptions, explainer: Explainer | None = None,
               item_count: int | None = None, run_id: str | None = None) -> BatchJob:
        """Build (or reuse) the explainer and check the targets; raises before any image is read."""
        if explainer is None:  # a run of 3 images compiles for 3, not for a padded batch of 16
            batch_size = max(1, min(options.batch_size, item_count or options.batch_size))
            explainer = Explainer.from_options(spec, options, batch_size)
        classes = explainer.resolve_targets(options.classes, options.top_k)
        targets = f"class={','.join(map(str, classes))}" if classes else f"top{options.top_k}"
        if explainer.head.takes_boxes:  # a detector: the boxes above min_score (of classes), or some of them
            targets = (f"boxes>={options.min_score:g}" + (f",box={','.join(map(str, options.boxes))}" if options.boxes
                                                         else "") + (f",{targets}" if classes else ""))
        config = fingerprint(spec, explainer, options, targets)
        return cls(spec, explainer, options, classes, targets, config,
                   run_id or f"{time.time():.6f}-{os.getpid()}", legacy_fingerprint(spec, explainer, options, targets))

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
        if self.explainer.combine:  # several layers: `layer` joins their paths with '+'
            row.update(layers=self.explainer.layer_paths, combine=self.explainer.combine)
        if self.spec.channels == 1:  # the overlay shows the colour picture; the model saw its luma
            row["model_input"] = GREY_CONVERSION
        if self.explainer.counterfactual:  # the map shows what lowers the class's score
            row["counterfactual"] = True
        if self.explainer.tuning:  # the method's own options (--fem-sigmas ...), as given
            row["tuning"] = dict(self.explainer.tuning)
        return row

    @functools.cached_property
    def budget(self) -> PixelBudget | None:
        return PixelBudget(self.options.max_megapixels) if self.options.max_megapixels else None

    @functools.cached_property
    def lut(self) -> np.ndarray:
        return render.colormap_lut(self.options.colormap)

    @functools.cached_property
    def channels(self) -> int:
        return self.spec.channels

    def decode(self, item: InputItem, source: str | None = None) -> tuple[Image.Image, np.ndarray, tuple[int, int]]:
        """:func:`decode_item` with this run's sizes, limit and pixel budget."""
        return decode_item(item, self.spec.input_size, self.channels, self.options.overlay_size, self.options.max_megapixels,
                           self.budget, source)

    def error_row(self, item: InputItem, message: str) -> dict:
        return {**self.base_row, "input": item.real, "status": "error", "error": message,
                "class_index": None, "label": None, "probability": None, "overlay": None, "heatmap": None}

    def write_outputs(self, stem: str, original, heatmap: np.ndarray, saliency, row: dict) -> dict:
        """Write one target's overlay JPEG, raw .npy (and guided PNG) atomically; the row names them."""
        target = row["class_index"] if row.get("box") is None else f"{row['class_index']}.box{row['box_index']}"
        method = self.method_name + (".counterfactual" if self.explainer.counterfactual else "")  # beside the plain map
        overlay_name, heatmap_name = (name.as_posix() for name in outputs.output_paths(Path(), stem, method, target))
        image = render.overlay_image(original, heatmap, self.options.alpha, self.lut)
        if row.get("box") is not None:  # the explained box, from the original's pixels to the overlay's
            scale_x, scale_y = image.width / row["image_size"][1], image.height / row["image_size"][0]
            left, top, right, bottom = row["box"]
            image = render.draw_box(image, (left * scale_x, top * scale_y, right * scale_x, bottom * scale_y),
                                    f"{row['label']} {row['score']:.0%}")
        captions = [f"{row['label']}: region of {row['region_pixels']} px"] if row.get("region_pixels") is not None else []
        if row.get("counterfactual"):
            captions.append(f"counterfactual: what lowers {row['label']}")
        if row.get("rounding_noise"):
            captions.append("rounding noise, not a finding")
        if captions:
            image = render.caption(image, "; ".join(captions))
        row = {**row, "overlay": self.output.write(overlay_name, render.jpeg_bytes(image)),
               "heatmap": self.output.write(heatmap_name, render.npy_bytes(heatmap))}
        if saliency is not None:
            saliency_picture = render.saliency_image(saliency, (original.height, original.width))
            row["saliency"] = self.output.write(overlay_name[: -len(".jpg")] + ".guided.png",
                                                render.png_bytes(saliency_picture))
        return row

    def pick_boxes(self, good: list[tuple]) -> tuple[list[tuple], list[list[Detection]], list[dict]]:
        """A detector's batch: its detections (one forward pass and the model's decoder), then each
        image's boxes to explain (``min_score``, ``boxes``, ``classes``). Returns the images that have
        some, their boxes, and an error row for each image that has none."""
        found = self.explainer.detect(np.stack([g[3] for g in good]))
        kept, boxes, refused = [], [], []
        for entry, detections in zip(good, found, strict=True):
            try:
                boxes.append(pick_detections(detections, entry[0].path, self.options.min_score, self.options.boxes,
                                             self.classes))
                kept.append(entry)
            except ImageError as error:
                refused.append(self.error_row(entry[0], str(error)))
        return kept, boxes, refused

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
        kept = None
        if head.takes_boxes:  # a detector: its kept boxes, found once per batch, are the targets
            good, kept, refused = self.pick_boxes(good)
            rows.extend(refused)
            if not good:
                return rows
        result = explainer.run(np.stack([g[3] for g in good]), self.classes, self.options.top_k, boxes=kept)
        for position, (item, stem, original, _, original_size) in enumerate(good):
            probabilities = result.probabilities[position]
            best = np.argsort(-probabilities)[:TOP_PREDICTIONS]
            top = [[int(c), spec.label(int(c)), round(float(probabilities[c]), 6)] for c in best]
            boxes = kept[position] if kept is not None else None
            if boxes is not None:  # the image's best boxes, as a classifier's best classes
                top = [[box.class_index, spec.label(box.class_index), round(box.score, 6)]
                       for box in boxes[:TOP_PREDICTIONS]]
            for rank, class_index in enumerate(result.class_ids[position]):
                if boxes is not None and rank >= len(boxes):  # padding: this image has fewer boxes
                    break
                heatmap = result.heatmaps[position, rank]
                label = spec.label(int(class_index))
                reported = round(float(probabilities[rank if boxes is not None else class_index]), 6)
                row = {**self.base_row, "input": item.real, "status": "ok", "error": None, "rank": rank,
                       "class_index": int(class_index), "label": label,
                       "probability": reported if head.reports_probability else None, "top": top,
                       "image_size": [original_size[1], original_size[0]],  # height, width
                       "heatmap_shape": list(heatmap.shape), "empty_heatmap": render.is_empty(heatmap),
                       "rounding_noise": True if head.saturated(reported) else result.rounding_noise(position, rank)}
                row.update(head.row_fields(reported))
                if self.options.reference is not None:
                    row["reference"] = self.options.reference.entry(int(class_index))
                if boxes is not None:  # boxes_explained: the rows this image gets (resume counts them)
                    row.update(box_fields(boxes[rank], spec.input_size, original_size), boxes_explained=len(boxes))
                if result.region_pixels is not None:
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
                f"pick another {param('output_dir')}; a rerun resumes where this one stopped."
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
            if row.get("rounding_noise"):
                self.summary.noise_maps += 1
            if row["status"] == "ok" and not row.get("resumed"):
                self.summary.maps += 1
                self.summary.empty_maps += bool(row.get("empty_heatmap"))
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
    done = {}
    if not options.overwrite:
        for config in dict.fromkeys([job.legacy_config, job.config]):  # rows of either kind count as done
            done.update(manifest.finished_inputs(job.method_name, job.targets, config))
    todo = [item for item in items if item.real not in done]
    reused = [row for item in dict.fromkeys(i.real for i in items) if item in done for row in done[item]]
    summary.images_skipped = len(items) - len(todo)
    if progress and summary.images_skipped:
        progress(summary.images_skipped)
    return RunPlan(job, manifest, summary, stems, todo, reused)
