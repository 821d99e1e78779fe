"""Scoring one batch of images for every method: the compiled explainers (one per method), the shared
perturbation runner, and the loop over the registered metrics (:data:`gradcam_cli.metrics.METRICS`).
:class:`Evaluator` is what ``gradcam evaluate`` (:mod:`gradcam_cli.evaluate`) runs per batch, and what
the benchmarks call directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import render
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


class Evaluator:
    """Compiled explainers (one per method) and the shared perturbation runner; ``sanity`` reruns
    the same explainers inside :func:`~gradcam_cli.metrics.sanity.randomized_weights`.
    :meth:`score_batch` is the whole per-batch computation."""

    def __init__(self, spec: ModelSpec, options: EvaluateOptions):
        self.spec = spec
        self.options = options
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

    def score_batch(self, pixels: np.ndarray, annotations: list | None = None,
                    image_sizes: list[tuple[int, int]] | None = None) -> dict[str, BatchScores]:
        """Scores for ``pixels`` (n, H, W, C) in [0, 255] at the model's input size, every method.

        ``annotations``: per image its ground-truth boxes (None: not annotated), with
        ``image_sizes`` (width, height) of the originals the boxes refer to.
        """
        classes = self.resolve_targets()
        substrate = blurred(pixels) if "insertion" in self.options.metrics else pixels
        scores, maps = {}, {}
        for method, explainer in self.explainers.items():
            result = explainer.run(pixels, classes, self.options.top_k)
            self.explained_images += len(pixels)
            maps[method] = result
            scores[method] = self.score_maps(pixels, substrate, result.heatmaps, result.class_ids,
                                             result.probabilities, annotations, image_sizes, explainer)
        if self.options.sanity:  # the same compiled explainers, on the model with its top re-initialised
            with sanity.randomized_weights(self.spec.model):
                for method, explainer in self.explainers.items():
                    trained = maps[method]
                    randomized = explainer.run(pixels, trained.class_ids, 1).heatmaps
                    count, targets = trained.class_ids.shape
                    scores[method].sanity = sanity.rank_correlation(
                        trained.heatmaps.reshape(count * targets, -1),
                        randomized.reshape(count * targets, -1)).reshape(count, targets)
        return scores

    def score_maps(self, pixels: np.ndarray, substrate: np.ndarray, heatmaps: np.ndarray, class_ids: np.ndarray,
                   probabilities: np.ndarray, annotations: list | None = None,
                   image_sizes: list[tuple[int, int]] | None = None, explainer: Explainer | None = None) -> BatchScores:
        """Scores for given maps: ``heatmaps`` (n, T, h, w) raw maps of classes ``class_ids`` (n, T);
        ``probabilities`` (n, C) on the unaltered images; ``substrate`` = :func:`blurred` pixels;
        ``explainer``: the method that made the maps, for the metrics that explain other images
        (coherency)."""
        height, width = self.spec.input_size
        count, targets = class_ids.shape
        maps = heatmaps.reshape(count * targets, *heatmaps.shape[2:])
        shown = render.display_heatmaps(maps, (height, width))
        images = np.repeat(np.arange(count), targets)
        flat_ids = class_ids.reshape(-1).astype(np.int32)
        original = probabilities[images, flat_ids]
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
        scored = self.runner.probabilities(pixels, substrate, batch.ranks, shown, Rows.concatenate(parts)) if parts else None
        shared, start = {}, 0
        for family, rows in wanted:  # each family's slice of the one scored table, in order
            size = 0 if rows is None else len(rows)
            shared[type(family)] = family.compute(batch, None if rows is None else scored[start:start + size])
            start += size
        values = {metric.name: metric.values(shared[metric.family]).reshape(count, targets) for metric in metrics}
        curves = {name: curve.reshape(count, targets, -1) for part in shared.values()
                  for name, curve in part.get("curves", {}).items()}
        statuses = next((part["statuses"] for part in shared.values() if "statuses" in part), None)
        if statuses is not None:
            statuses = [statuses[i * targets:(i + 1) * targets] for i in range(count)]
        return BatchScores(class_ids, original.reshape(count, targets), values, statuses, curves, None)

    def _display(self, explainer: Explainer):
        """``explain(images, class_ids)`` for :class:`MapBatch`: ``explainer``'s maps of one class
        per image, as displayed at the model input."""

        def explain(images: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
            result = explainer.run(images, np.asarray(class_ids, np.int32)[:, None])
            self.explained_images += len(images)
            return render.display_heatmaps(result.heatmaps[:, 0], tuple(self.spec.input_size))

        return explain
