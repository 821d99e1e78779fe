"""``gradcam evaluate``: score each method's maps for one model on a set of images.

For every batch of images and every method, the explainer's :class:`~gradcam_cli.explainer.Explainer`
makes the maps (one compiled pass), and one :class:`~gradcam_cli.metrics.perturbation.PerturbationRunner`
(built on the first explainer's probe, shared by all methods) scores every perturbed copy the
faithfulness metrics need in chunks of one compiled graph. Pointing games read the maps against
ground-truth boxes; ``sanity`` repeats the maps with the model's top re-initialised.

Outputs in the output folder: ``metrics.json`` (per method and metric: mean, 95 % bootstrap interval,
number of images; the mean curves; the sanity check; the gate's verdict), ``metrics.jsonl`` (one
row per image, method and target) and ``curves.png`` (mean deletion and insertion curves)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import outputs, render
from .decode import PixelBudget, decode_item
from .errors import EvaluationError, ImageError, OutputError, param
from .inputs import InputItem
from .layers import layer_names
from .methods import BASELINES
from .methods.base import COMBINE
from .metrics import (
    CURVES_PNG,
    METRICS,
    METRICS_JSON,
    METRICS_JSONL,
    deletion,
    pointing,
    sanity,
)
from .metrics.summary import (
    GATE_EXIT_CODE,
    check_gates,
    gate_problems,
    rank_methods,
    summarize,
)
from .models.spec import ModelSpec
from .scoring import BatchScores, EvaluateOptions, Evaluator, similarity_run


@dataclass
class Evaluation:
    """Everything ``gradcam evaluate`` reports; ``summaries[method][metric]`` is a
    :func:`~gradcam_cli.metrics.summary.summarize` dict."""

    model: str
    layer: str
    steps: int
    metrics: list[str]
    methods: list[str]
    summaries: dict[str, dict[str, dict]]
    ranking: list[str]
    rows: list[dict]
    curves: dict[str, dict[str, list[float]]]
    sanity: dict[str, dict]
    failures: list[tuple[str, str]]
    missed: list[str]
    images: int
    seconds: float
    forward_passes: dict[str, int]

    @property
    def exit_code(self) -> int:
        return GATE_EXIT_CODE if self.missed else 1 if self.failures else 0

    def as_json(self) -> dict:
        return {"model": self.model, "layer": self.layer, "steps": self.steps, "images": self.images,
                "metrics": self.metrics, "ranking": self.ranking, "methods": self.summaries,
                "baselines": [method for method in self.ranking if method in BASELINES],
                "curves": self.curves, "sanity": self.sanity,
                "failures": [{"input": path, "error": message} for path, message in self.failures],
                "gate": {"passed": not self.missed, "missed": self.missed},
                "forward_passes": self.forward_passes, "seconds": round(self.seconds, 3)}


def _decode(item: InputItem, spec: ModelSpec, options: EvaluateOptions,
            budget: PixelBudget | None) -> tuple[np.ndarray, tuple[int, int]]:
    """The model input and the original (width, height), from the one decode path (pixel budget and
    ``max_megapixels`` included) at the scale ``explain`` decodes, so the maps scored are the maps
    ``explain`` draws for the same image and options."""
    _, prepared, original_size = decode_item(item, spec.input_size, spec.channels, options.overlay_size,
                                             options.max_megapixels, budget)
    return prepared, original_size


def _number(value) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), 6)


def config_fingerprint(spec: ModelSpec, layer: str, options: EvaluateOptions, legacy: bool = False) -> str:
    """What makes an earlier row reusable: the model (by its content, :attr:`ModelSpec.identity`, as
    explain's runs), layer, targets and metric settings. ``legacy``: the fingerprint of rows written
    before 2026-12-06, which named the model by its path and weights setting; still accepted."""
    model = [spec.source, str(spec.extra.get("weights"))] if legacy else [spec.identity]
    settings = [*model, spec.preprocess_name, str(spec.input_size), layer,
                str(options.classes), str(options.top_k), str(options.steps), ",".join(options.metrics),
                options.ground_truth.source if options.ground_truth else "", str(options.sanity)]
    if spec.model_output is not None:  # another output of the model is another score (earlier rows stay valid)
        settings.append(f"model_output={spec.model_output}")
    if len(layer_names(options.layer)) > 1:  # several layers (all in `layer`): how their maps are combined
        settings.append(f"combine={options.combine or COMBINE[0]}")
    if options.reference is not None:  # a similarity: what the images are compared with
        settings.append(f"reference={options.reference.digest}")
    if spec.head.takes_boxes:  # a detector: which of its boxes are explained
        settings.append(f"boxes>={options.min_score},{options.boxes}")
    settings += [f"{key}={value}" for key, value in sorted((options.tuning or {}).items())]  # methods' own options
    return hashlib.sha1("|".join(settings).encode()).hexdigest()[:12]


def _read_jsonl(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl as written (a line cut short by a killed run is passed over)."""
    rows = []
    try:
        with open(path, encoding="utf-8") as stream:
            for line in stream:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    rows.append(row)
    except FileNotFoundError:
        pass
    return rows


def _reusable_rows(output_dir: Path | None, configs: set[str], methods: list[str]) -> dict[str, list[dict]]:
    """Earlier rows per input whose every requested method was scored with this ``config``; a row
    written twice (an input rescored after an interrupted run left part of its rows) counts once, the
    later one."""
    if output_dir is None:
        return {}
    by_input: dict[str, dict[tuple, dict]] = {}
    for row in _read_jsonl(Path(output_dir) / METRICS_JSONL):
        if row.get("config") in configs and row.get("method") in methods:
            by_input.setdefault(row["input"], {})[(row["method"], row.get("rank"))] = row
    return {path: list(rows.values()) for path, rows in by_input.items()
            if {method for method, _ in rows} == set(methods)}


def evaluate(items: list[InputItem], spec: ModelSpec, options: EvaluateOptions,
             progress: Callable[[int], None] | None = None) -> Evaluation:
    """Score every method on ``items``; unreadable images are listed in ``failures`` and skipped.

    With ``options.output_dir``, inputs whose rows in its metrics.jsonl have the same settings are not
    scored again (unless ``options.overwrite``): their rows are reused, as ``explain`` resumes. New rows are
    appended to that metrics.jsonl batch by batch as they are scored (flushed), so an interrupted run
    leaves them for the next; :func:`write_outputs` rewrites the file whole at the end. Rows are
    summarised in input order, so a resumed run ends with the same metrics.json as one that was not
    interrupted.
    """
    started = time.perf_counter()
    if options.reference is not None:
        options, spec = similarity_run(spec, options)
    problems = gate_problems(options.gates, list(options.methods), list(options.metrics), set(BASELINES))
    if problems:  # a gate that could never be checked is a usage error, found before any scoring
        raise EvaluationError(f"{param('gates')} " + "; ".join(problems))
    evaluator = Evaluator(spec, options)
    evaluator.resolve_targets()  # a bad --class fails before any image
    config = config_fingerprint(spec, evaluator.layer, options)
    output_dir = options.output_dir
    reused = {} if options.overwrite else _reusable_rows(
        output_dir, {config, config_fingerprint(spec, evaluator.layer, options, legacy=True)}, options.methods)
    budget = PixelBudget(options.max_megapixels) if options.max_megapixels else None
    rows: list[dict] = [row for item in items for row in reused.get(item.real, [])]
    todo = [item for item in items if item.real not in reused]
    stream = _RowStream(output_dir)
    if progress and len(todo) < len(items):
        progress(len(items) - len(todo))
    failures: list[tuple[str, str]] = []
    with stream, ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="decode") as pool:
        for start in range(0, len(todo), options.batch_size):
            batch = todo[start:start + options.batch_size]
            good, pixels, sizes = [], [], []
            for item, future in zip(batch, [pool.submit(_decode, i, spec, options, budget) for i in batch], strict=True):
                try:
                    prepared, size = future.result()
                except ImageError as error:
                    failures.append((item.real, str(error)))
                    continue
                good.append(item)
                pixels.append(prepared)
                sizes.append(size)
            good, pixels, sizes, boxes = evaluator.with_boxes(good, pixels, sizes, failures)  # a detector's boxes
            if good:
                annotations = None
                if options.ground_truth is not None:
                    annotations = [options.ground_truth.boxes(item.path, item.relative) for item in good]
                for method, scores in evaluator.score_batch(np.stack(pixels), annotations, sizes, boxes).items():
                    scored = _rows(method, good, scores, spec, config)
                    rows.extend(scored)
                    stream.append(scored)
            if progress:
                progress(len(batch))
    order = {item.real: position for position, item in enumerate(items)}
    methods = {method: position for position, method in enumerate(options.methods)}
    rows.sort(key=lambda row: (methods.get(row["method"], len(methods)), order.get(row["input"], len(order))))
    summaries, curves, sanity_report = _summaries(rows, options, spec)
    ranking = rank_methods(summaries, options.metrics[0]) if options.metrics else list(options.methods)
    missed = check_gates(options.gates, summaries, set(BASELINES))
    passes = {"explained_images": evaluator.explained_images,
              "perturbed_copies": evaluator.runner.copies_run if evaluator.runner else 0}
    images = len({row["input"] for row in rows})
    return Evaluation(spec.name, evaluator.layer, options.steps, list(options.metrics), list(options.methods),
                      summaries, ranking, rows, curves, sanity_report, failures, missed, images,
                      time.perf_counter() - started, passes)


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as stream:
        stream.seek(-1, 2)
        return stream.read(1)


class _RowStream:
    """metrics.jsonl opened for appending while a run scores (nothing without an output folder); the
    folder is checked writable first, so an unwritable one fails before any scoring (exit 3)."""

    def __init__(self, output_dir: str | Path | None):
        self.handle = None
        if output_dir is not None:
            outputs.OutputFolder(output_dir).check_writable()
            try:
                path = Path(output_dir) / METRICS_JSONL
                cut = path.exists() and path.stat().st_size and _last_byte(path) != b"\n"
                self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115
                if cut:  # a line a killed run left unfinished stays one unreadable line, not two rows spoilt
                    self.handle.write("\n")
            except OSError as error:
                raise OutputError(f"{output_dir}: cannot write {METRICS_JSONL} ({error.strerror or error}); "
                                  f"pick another with {param('output_dir')}.") from None

    def append(self, rows: list[dict]) -> None:
        if self.handle is not None and rows:
            self.handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
            self.handle.flush()

    def __enter__(self) -> _RowStream:
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.close()


def _rows(method: str, items: list[InputItem], scores: BatchScores, spec: ModelSpec, config: str) -> list[dict]:
    """metrics.jsonl rows, one per (image, target), with the curves the summaries average."""
    rows = []
    for i, item in enumerate(items):
        for t in range(scores.class_ids.shape[1]):
            class_index = int(scores.class_ids[i, t])
            if class_index < 0:  # a detector's image with fewer boxes than the batch's most
                break
            row = {"input": item.real, "method": method, "rank": t, "class_index": class_index,
                   "label": spec.label(class_index), "probability": round(float(scores.probability[i, t]), 6),
                   "config": config, **(scores.fields[i][t] if scores.fields else {})}
            for metric, value in scores.values.items():
                row[metric] = _number(value[i, t])
            if scores.ground_truth is not None:
                row["ground_truth"] = scores.ground_truth[i][t]
            if scores.sanity is not None:
                row["sanity_correlation"] = round(float(scores.sanity[i, t]), 6)
            for name, curve in scores.curves.items():
                row[f"{name}_curve"] = [round(float(v), 6) for v in curve[i, t]]
            rows.append(row)
    return rows


def _summaries(rows: list[dict], options: EvaluateOptions, spec: ModelSpec):
    """Per method: metric summaries (pointing/energy with the images counted apart), mean curves,
    and the sanity verdict."""
    summaries: dict[str, dict[str, dict]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    sanity_report: dict = {}
    for method in options.methods:
        own = [row for row in rows if row["method"] == method]
        summaries[method] = {metric: summarize([row.get(metric) for row in own]) for metric in options.metrics}
        for metric in ("pointing", "energy"):
            if metric in summaries[method]:
                for status in (pointing.ABSENT, pointing.UNANNOTATED):
                    summaries[method][metric][status] = sum(row.get("ground_truth") == status for row in own)
        curves[method] = {}
        for name in ("deletion", "insertion"):
            stacked = [row[f"{name}_curve"] for row in own if row.get(f"{name}_curve")]
            if stacked:
                curves[method][name] = [round(float(v), 6) for v in np.mean(stacked, axis=0)]
        if options.sanity:
            summary = summarize([row.get("sanity_correlation") for row in own])
            flagged = summary["mean"] is not None and summary["mean"] >= sanity.FLAG_CORRELATION
            sanity_report[method] = {"rank_correlation": summary, "flagged": bool(flagged)}
    if options.sanity:
        sanity_report["randomized_layers"] = sanity.randomized_layers(spec.model)
    return summaries, curves, sanity_report


def write_outputs(evaluation: Evaluation, output_dir: str | Path) -> list[Path]:
    """Write metrics.json, metrics.jsonl and curves.png; return their paths."""
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{output_dir}: cannot create the output folder ({error.strerror or error}); "
                          f"pick another with {param('output_dir')}.") from None
    paths = [output_dir / METRICS_JSON, output_dir / METRICS_JSONL]
    rows = [{"input": path, "status": "error", "error": message} for path, message in evaluation.failures]
    jsonl = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in [*evaluation.rows, *rows])
    outputs.atomic_write_bytes(paths[0], (json.dumps(evaluation.as_json(), indent=2) + "\n").encode("utf-8"))
    outputs.atomic_write_bytes(paths[1], jsonl.encode("utf-8"))
    if evaluation.curves and any(evaluation.curves.values()):
        paths.append(output_dir / CURVES_PNG)
        outputs.atomic_write_bytes(paths[2], render.png_bytes(curve_chart(evaluation.curves)))
    return paths


PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def curve_chart(curves: dict[str, dict[str, list[float]]], panel: int = 360) -> np.ndarray:
    """Mean deletion and insertion curves per method, two panels, drawn with Pillow: probability of
    the explained class (0..1) against the fraction of pixels deleted or inserted (0..1)."""

    margin, legend = 44, 18 * len(curves) + 10
    image = Image.new("RGB", (2 * panel + 3 * margin, panel + 2 * margin + legend), "white")
    draw = ImageDraw.Draw(image)
    font = render.font(12)
    for column, name in enumerate(("deletion", "insertion")):
        left, top = margin + column * (panel + margin), margin
        draw.rectangle([left, top, left + panel, top + panel], outline=(0, 0, 0))
        for tick in range(6):
            x = left + panel * tick / 5
            y = top + panel - panel * tick / 5
            draw.line([(x, top + panel), (x, top + panel + 4)], fill=(0, 0, 0))
            draw.line([(left - 4, y), (left, y)], fill=(0, 0, 0))
            draw.text((x - 8, top + panel + 6), f"{tick / 5:.1f}", fill=(0, 0, 0), font=font)
            draw.text((left - 30, y - 7), f"{tick / 5:.1f}", fill=(0, 0, 0), font=font)
        verb = "deleted" if name == "deletion" else "inserted"
        draw.text((left, 8), f"{name}: probability vs fraction of pixels {verb}", fill=(0, 0, 0), font=font)
        for index, sets in enumerate(curves.values()):
            values = sets.get(name)
            if not values:
                continue
            steps = len(values) - 1
            points = [(left + panel * s / steps, top + panel - panel * min(max(v, 0.0), 1.0)) for s, v in enumerate(values)]
            draw.line(points, fill=PALETTE[index % len(PALETTE)], width=3, joint="curve")
    for index, (method, sets) in enumerate(curves.items()):
        y = panel + 2 * margin + 18 * index
        colour = PALETTE[index % len(PALETTE)]
        draw.line([(margin, y + 7), (margin + 24, y + 7)], fill=colour, width=3)
        areas = ", ".join(f"{name} AUC {float(deletion.area_under_curve(np.asarray(values))):.3f}"
                          for name, values in sets.items())
        draw.text((margin + 30, y), f"{method}: {areas}", fill=(0, 0, 0), font=font)
    return np.asarray(image)


def format_table(evaluation: Evaluation) -> list[str]:
    """The printed table: one row per method, best first by the first metric; mean [95 % interval]."""
    headers = ["method", *evaluation.metrics] + (["sanity rho"] if evaluation.sanity else [])
    table = [headers]
    for method in evaluation.ranking:
        cells = [method + (" (baseline)" if method in BASELINES else "")]
        for metric in evaluation.metrics:
            summary = evaluation.summaries[method][metric]
            cells.append("-" if summary["mean"] is None else
                         f"{summary['mean']:.3f} [{summary['ci95'][0]:.3f}, {summary['ci95'][1]:.3f}]")
        if evaluation.sanity:
            entry = evaluation.sanity[method]
            mean = entry["rank_correlation"]["mean"]
            cells.append("-" if mean is None else f"{mean:.2f}" + (" FLAGGED" if entry["flagged"] else ""))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in table]
    directions = ", ".join(f"{m} {'higher' if METRICS[m].higher_is_better else 'lower'}" for m in evaluation.metrics)
    lines.append(f"(mean [95% bootstrap interval] over {evaluation.images} image(s); better: {directions})")
    for metric in ("pointing", "energy"):
        if metric in evaluation.metrics and evaluation.ranking:
            entry = evaluation.summaries[evaluation.ranking[0]][metric]
            absent, unannotated = entry.get(pointing.ABSENT, 0), entry.get(pointing.UNANNOTATED, 0)
            if absent or unannotated:
                lines.append(f"({metric}: counted apart, not as misses: {absent} map(s) of a class the image's "
                             f"boxes do not hold, {unannotated} of images without annotations)")
            break
    return lines
