"""Scoring one batch of images for every method: the compiled explainers (one per method), the shared
perturbation runner, and the loop over the registered metrics (:data:`gradcam_cli.metrics.METRICS`).
:class:`Evaluator` is what ``gradcam evaluate`` (:mod:`gradcam_cli.evaluate`) runs per batch, and what
the benchmarks call directly."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import render
from .boxes import box_fields, box_targets, pick_for_batch
from .errors import EvaluationError, param
from .explainer import Explainer
from .heads.similarity import RATIO_METRICS
from .methods import check_tuning
from .metrics import (
    FAITHFULNESS,
    METRICS,
    parse_metrics,
    sanity,
)
from .metrics.base import MapBatch
from .metrics.ground_truth import GroundTruth
from .metrics.perturbation import PerturbationRunner, Rows, blurred, pixel_ranks
from .metrics.summary import (
    Gate,
)
from .models.spec import ModelSpec
from .options import RunOptions

BOX_REFUSED = ("coherency", "arcc")
"""``evaluate``'s metrics refused for a detector: coherency (and ARCC, which multiplies by it) explains
each image again after multiplying it by its map, and the box explained would then have to be found
again on an image the detector may no longer see it in. The other metrics read the kept box's score
on the altered copies (:meth:`gradcam_cli.heads.detection.DetectionHead.copy_scores`) or the map alone."""


@dataclass
class EvaluateOptions(RunOptions):
    """A run's options (:class:`~gradcam_cli.options.RunOptions`: ``layer``, ``classes``, ``top_k``,
    ``batch_size``, ``xla``, ``workers`` ..., one name and default each) and what only evaluate has.

    Args:
        methods: the methods scored (the baselines ``random`` and ``center`` included), in place of
            the run's single ``method``.
        metrics: the metrics scored (default: every metric the inputs allow: deletion,
            insertion, drop and increase, and the pointing games with ``ground_truth``; ROAD and
            ARCC only by name).
        steps: deletion and insertion steps.
        ground_truth: boxes for the pointing games.
        sanity: also compare each method's maps with those of the model with its top re-initialised.
        gates: ``--fail-under`` thresholds.
        copies_per_pass: perturbed images per model call (bounds memory).
        output_dir: where rows are written as they are scored and read back on a rerun (None:
            nothing is written); ``overwrite`` rescores what an earlier run there scored.
    """

    methods: list[str] = field(default_factory=lambda: ["gradcam", "gradcam++", "random", "center"])
    metrics: list[str] | None = None
    output_dir: Path | str | None = None
    steps: int = 20
    ground_truth: GroundTruth | None = None
    sanity: bool = False
    gates: list[Gate] = field(default_factory=list)
    copies_per_pass: int = 64
    workers: int = 2  # decode threads: evaluate's batches wait on the model, not on decoding

    def __post_init__(self) -> None:
        if self.metrics is None:  # every metric the inputs allow, as the command line's default
            self.metrics = parse_metrics(None, self.ground_truth is not None)
            if self.reference is not None:  # a similarity is no probability: no ratio to it (heads/similarity.py)
                self.metrics = [name for name in self.metrics if name not in RATIO_METRICS]


@dataclass
class BatchScores:
    """Per (image, target) of one batch and one method; None/NaN where a metric was not asked."""

    class_ids: np.ndarray  # (n, T)
    probability: np.ndarray  # (n, T): the explained class on the unaltered image
    values: dict[str, np.ndarray]  # metric -> (n, T) float, NaN where not scored
    ground_truth: list[list[str]] | None  # (n, T) pointing status
    curves: dict[str, np.ndarray]  # 'deletion'/'insertion' -> (n, T, S + 1); 'road_morf'/'road_lerf' -> (n, T, 9)
    sanity: np.ndarray | None  # (n, T) rank correlation
    fields: list[list[dict]] | None = None  # a detector's: per image and box, its row fields (box, box_index)


class Evaluator:
    """Compiled explainers (one per method) and the shared perturbation runner; ``sanity`` reruns
    the same explainers inside :func:`~gradcam_cli.metrics.sanity.randomized_weights`.
    :meth:`score_batch` is the whole per-batch computation."""

    def __init__(self, spec: ModelSpec, options: EvaluateOptions):
        self.spec = spec
        self.options = options
        refused = [name for name in options.metrics if name in BOX_REFUSED] if spec.head.takes_boxes else []
        if refused:
            raise EvaluationError(f"{param('metrics', ','.join(refused))} does not apply to a detector: coherency (and "
                                  "ARCC, its product) explains each image again after multiplying it by its map, where "
                                  "the box explained would have to be found again; score deletion, insertion, drop, "
                                  "increase, road or complexity.")
        check_tuning(list(options.methods), options.tuning)
        self.explainers = {method: Explainer.from_options(spec, options, method=method) for method in options.methods}
        first = next(iter(self.explainers.values()))
        self.layer = first.layer_name
        self.runner = None
        if any(metric in FAITHFULNESS for metric in options.metrics):
            self.runner = PerturbationRunner(spec, first.probe, options.batch_size, options.copies_per_pass,
                                             options.xla)
        self.explained_images = 0

    def resolve_targets(self):
        first = next(iter(self.explainers.values()))
        return first.resolve_targets(self.options.classes, self.options.top_k)

    def with_boxes(self, items: list, pixels: list, sizes: list, failures: list) -> tuple[list, list, list, list | None]:
        """A detector's batch (``items``: :class:`~gradcam_cli.inputs.InputItem`, their ``pixels`` and
        original ``sizes``): those that have a box to explain (above ``min_score``, of ``classes``,
        ``boxes`` picks), found once with the first method's explainer, and their boxes; an image
        without one joins ``failures`` (its real path, one line). Another head: the batch, and None."""
        if not self.spec.head.takes_boxes or not items:
            return items, pixels, sizes, None
        first = next(iter(self.explainers.values()))
        kept, boxes, refused = pick_for_batch(first.detect(np.stack(pixels)), [item.path for item in items],
                                              self.options.min_score, self.options.boxes, self.resolve_targets())
        left_out = [item for position, item in enumerate(items) if position not in kept]
        failures.extend((item.real, reason) for item, (_, reason) in zip(left_out, refused, strict=True))
        return [items[i] for i in kept], [pixels[i] for i in kept], [sizes[i] for i in kept], boxes

    def score_batch(self, pixels: np.ndarray, annotations: list | None = None,
                    image_sizes: list[tuple[int, int]] | None = None, boxes: list | None = None) -> dict[str, BatchScores]:
        """Scores for ``pixels`` (n, H, W, C) in [0, 255] at the model's input size, every method.

        ``annotations``: per image its ground-truth boxes (None: not annotated), with
        ``image_sizes`` (width, height) of the originals the boxes refer to; ``boxes``: a detector's,
        per image the kept boxes to explain (:meth:`with_boxes`), one target each.
        """
        classes = self.resolve_targets()
        substrate = blurred(pixels) if "insertion" in self.options.metrics else pixels
        scores, maps = {}, {}
        for method, explainer in self.explainers.items():
            result = explainer.run(pixels, classes, self.options.top_k, boxes=boxes)
            self.explained_images += len(pixels)
            maps[method] = result
            scores[method] = self.score_maps(pixels, substrate, result.heatmaps, result.class_ids,
                                             result.probabilities, annotations, image_sizes, explainer, boxes)
        if self.options.sanity:  # the same compiled explainers, on the model with its top re-initialised
            with sanity.randomized_weights(self.spec.model):
                for method, explainer in self.explainers.items():
                    trained = maps[method]
                    randomized = explainer.run(pixels, trained.class_ids, 1, boxes=boxes).heatmaps
                    count, targets = trained.class_ids.shape
                    scores[method].sanity = sanity.rank_correlation(
                        trained.heatmaps.reshape(count * targets, -1),
                        randomized.reshape(count * targets, -1)).reshape(count, targets)
        return scores

    def score_maps(self, pixels: np.ndarray, substrate: np.ndarray, heatmaps: np.ndarray, class_ids: np.ndarray,
                   probabilities: np.ndarray, annotations: list | None = None,
                   image_sizes: list[tuple[int, int]] | None = None, explainer: Explainer | None = None,
                   boxes: list | None = None) -> BatchScores:
        """Scores for given maps: ``heatmaps`` (n, T, h, w) raw maps of classes ``class_ids`` (n, T);
        ``probabilities`` (n, C) on the unaltered images; ``substrate`` = :func:`blurred` pixels;
        ``explainer``: the method that made the maps, for the metrics that explain other images
        (coherency). A detector's (``boxes``: per image its kept boxes): ``probabilities`` (n, T) are
        the boxes' scores, and a slot past an image's last box (class -1) is padding, left unscored."""
        height, width = self.spec.input_size
        count, targets = class_ids.shape
        flat_ids = class_ids.reshape(-1).astype(np.int32)
        valid = flat_ids >= 0
        maps = heatmaps.reshape(count * targets, *heatmaps.shape[2:])[valid]
        shown = render.display_heatmaps(maps, (height, width))
        images = np.repeat(np.arange(count), targets)[valid]
        flat_ids = flat_ids[valid]
        original = probabilities.reshape(-1)[valid] if boxes is not None else probabilities[images, flat_ids]
        kept = None if boxes is None else box_targets(boxes).reshape(count * targets, 6)[valid]
        batch = MapBatch(pixels, substrate, shown, pixel_ranks(shown), render.are_empty(maps), flat_ids, images, original,
                         [self.spec.label(int(c)) for c in flat_ids], annotations, image_sizes, self.options.steps,
                         None if explainer is None else self._display(explainer))
        metrics = [METRICS[name] for name in self.options.metrics]
        asked: dict[type, list[str]] = {}
        for metric in metrics:
            asked.setdefault(metric.family, []).append(metric.name)
        families = [family(names) for family, names in asked.items()]
        wanted = [(family, family.rows(batch)) for family in families]
        parts = [rows for _, rows in wanted if rows is not None]
        scored = (self.runner.probabilities(pixels, substrate, batch.ranks, shown, Rows.concatenate(parts), kept)
                  if parts else None)
        shared, start = {}, 0
        for family, rows in wanted:  # each family's slice of the one scored table, in order
            size = 0 if rows is None else len(rows)
            shared[type(family)] = family.compute(batch, None if rows is None else scored[start:start + size])
            start += size

        def spread(scored: np.ndarray) -> np.ndarray:  # (valid items, ...) -> (n, T, ...), NaN at padding
            full = np.full((count * targets, *np.shape(scored)[1:]), np.nan, np.result_type(scored, np.float32))
            full[valid] = scored
            return full.reshape(count, targets, *np.shape(scored)[1:])

        values = {metric.name: spread(metric.values(shared[metric.family])) for metric in metrics}
        curves = {name: spread(curve) for part in shared.values() for name, curve in part.get("curves", {}).items()}
        statuses = next((part["statuses"] for part in shared.values() if "statuses" in part), None)
        if statuses is not None:
            each = iter(statuses)
            flat = [next(each) if slot else None for slot in valid]
            statuses = [flat[i * targets:(i + 1) * targets] for i in range(count)]
        fields = None if boxes is None else [[box_fields(box, (height, width), image_sizes[i]) for box in found]
                                             for i, found in enumerate(boxes)]
        return BatchScores(class_ids, spread(original), values, statuses, curves, None, fields)

    def _display(self, explainer: Explainer):
        """``explain(images, class_ids)`` for :class:`MapBatch`: ``explainer``'s maps of one class
        per image, as displayed at the model input."""

        def explain(images: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
            result = explainer.run(images, np.asarray(class_ids, np.int32)[:, None])
            self.explained_images += len(images)
            return render.display_heatmaps(result.heatmaps[:, 0], tuple(self.spec.input_size))

        return explain


def similarity_run(spec: ModelSpec, options: EvaluateOptions) -> tuple[EvaluateOptions, ModelSpec]:
    """A similarity run (``options.reference``, :mod:`gradcam_cli.reference`): the references computed
    once and the spec's head their similarity; without ``classes``, every reference a target (as
    ``gradcam similar`` and :func:`gradcam_cli.explain`). Deletion and insertion then read the cosine
    similarity on the perturbed copies, and a metric that divides by it is refused."""
    from .reference import Reference

    embedding = None if isinstance(options.reference, Reference) else spec.model_output
    reference = Reference.of(options.reference, spec, embedding, options.overlay_size, options.max_megapixels)
    refused = [name for name in options.metrics if name in RATIO_METRICS]
    if refused:
        raise EvaluationError(f"{param('metrics', refused[0])} divides by the unaltered image's score, and a cosine "
                              f"similarity may be 0 or negative; score deletion, insertion, increase or road.")
    every = options.classes is None and options.top_k == 1
    classes = list(range(len(reference.names))) if every else options.classes
    return replace(options, reference=reference, classes=classes), reference.apply(spec)
