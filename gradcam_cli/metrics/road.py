"""ROAD, RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient
Evaluation Strategy for Attribution Methods", ICML 2022), and ARCC, which reads its relevance off
ROAD (:mod:`.arcc`).

Deletion (:mod:`.deletion`) sets pixels to black, and the shape of the black hole can tell the
model the class by itself (the *mask leak* the paper measures, and that the demo model shows:
docs/evaluate.md). ROAD removes pixels by **noisy linear imputation** instead
(:mod:`.imputation`): each removed pixel becomes the weighted mean of its neighbours, solved
jointly for all removed pixels, plus Gaussian noise, so the removed region carries little
information about its own shape.

Pixels are ordered by the map as displayed (upsampled to the model input; ties broken by the
fixed permutation of :func:`~gradcam_cli.metrics.perturbation.pixel_ranks`). For each removal
fraction ``f`` in ``FRACTIONS`` (10 %, 20 %, ..., 90 %, the percentiles pytorch-grad-cam's
``ROADCombined`` averages over) the first ``round(f N)`` pixels of the order are imputed
(most relevant first, MoRF) or the last ``round(f N)`` (least relevant first, LeRF). With ``p`` the
probability the head reports for the explained class (softmax, as deletion reads it) on the
unaltered image and ``p_f`` on the imputed copy:

- ``road_morf`` = ``mean_f (p_f^MoRF - p)``: the mean change in confidence; lower is better
  (removing what the map points at should hurt);
- ``road_lerf`` = ``mean_f (p_f^LeRF - p)``; higher is better (removing what it leaves out should
  not);
- ``road`` = ``(road_lerf - road_morf) / 2``, pytorch-grad-cam's ``ROADCombined``; higher is better,
  in [-0.5, 0.5]. The unaltered probability cancels: it is half the mean gap between the LeRF and
  MoRF curves.

The reported numbers are confidence *changes*, as pytorch-grad-cam's metrics return by default; the
per-row curves (``road_morf_curve``, ``road_lerf_curve`` in metrics.jsonl) hold the probabilities
``p_f`` themselves. Peers differ: pytorch-grad-cam thresholds the map at a percentile, so a map with
plateaus (a ReLU's zeros) removes more than ``f`` of the image at some thresholds; here exactly
``round(f N)`` pixels are removed at every fraction. Cost: 18 imputed copies per (image, target),
each a linear solve and one forward pass.
"""

from __future__ import annotations

import numpy as np

from . import arcc
from .base import Family, MapBatch, Metric
from .perturbation import REMOVE_LEAST, REMOVE_MOST, Rows

FRACTIONS = tuple(k / 10 for k in range(1, 10))  # 10 %, ..., 90 % of the pixels removed
ORDERS = (REMOVE_MOST, REMOVE_LEAST)
NEEDS_ROAD = frozenset({"road_morf", "road_lerf", "road", "arcc"})
NEEDS_COHERENCY = frozenset({"coherency", "arcc"})


def removal_counts(pixels: int) -> np.ndarray:
    """(F,) pixels removed at each fraction: round(f N)."""
    return np.round(np.asarray(FRACTIONS) * pixels).astype(np.int32)


def road_rows(items: np.ndarray, images: np.ndarray, targets: np.ndarray, pixels: int) -> Rows:
    """Rows fraction-major: for each fraction, MoRF then LeRF, every item. Copies of one fraction
    share a chunk, so a chunk's solve stops when its slowest system does and the small fractions
    (small holes, few iterations) do not wait for the large ones. Each (fraction, order) gets its
    own noise field."""
    counts = removal_counts(pixels)
    fractions, orders = len(counts), len(ORDERS)
    per_copy = np.arange(fractions * orders)
    fraction = np.repeat(per_copy // orders, len(items))
    order = np.repeat(per_copy % orders, len(items))
    return Rows(np.tile(items, fractions * orders), np.tile(images, fractions * orders),
                np.asarray(ORDERS, np.int32)[order], counts[fraction], np.tile(targets, fractions * orders),
                (order * fractions + fraction).astype(np.int32))


def road_curves(scored: np.ndarray, items: int) -> tuple[np.ndarray, np.ndarray]:
    """The probabilities of :func:`road_rows`' rows to (m, F) MoRF and LeRF curves."""
    table = scored.reshape(len(FRACTIONS), len(ORDERS), items)
    return table[:, 0].T, table[:, 1].T


def road_scores(morf: np.ndarray, lerf: np.ndarray, original: np.ndarray) -> dict[str, np.ndarray]:
    """``road_morf``, ``road_lerf`` (mean change from the unaltered probability) and ``road``."""
    morf_change = (morf - original[:, None]).mean(axis=1)
    lerf_change = (lerf - original[:, None]).mean(axis=1)
    return {"road_morf": morf_change, "road_lerf": lerf_change, "road": (lerf_change - morf_change) / 2}


class RemoveAndDebias(Family):
    """ROAD's imputed copies (when a metric that reads them is asked) and ARCC's parts: the
    complexity of each map, and its coherency, which explains the image times its map once more
    with the same method (:attr:`MapBatch.explain`, when coherency or ARCC is asked)."""

    perturbs = True

    def rows(self, batch: MapBatch) -> Rows | None:
        if not self.asks(NEEDS_ROAD):
            return None
        height, width = batch.size
        return road_rows(batch.items, batch.images, batch.class_ids, height * width)

    def compute(self, batch: MapBatch, scored: np.ndarray | None) -> dict:
        shared: dict = {"complexity": arcc.complexity(batch.shown)}
        if scored is not None:
            morf, lerf = road_curves(scored, len(batch.class_ids))
            shared.update(road_scores(morf, lerf, batch.original))
            shared["curves"] = {"road_morf": morf, "road_lerf": lerf}
        if self.asks(NEEDS_COHERENCY):
            if batch.explain is None:
                raise ValueError("coherency explains the image times its map again: the batch has no explainer")
            multiplied = batch.pixels[batch.images] * batch.shown[..., None]
            shared["coherency"] = arcc.coherency(batch.shown, batch.explain(multiplied, batch.class_ids))
        if self.asks({"arcc"}):
            shared["arcc"] = arcc.arcc(shared["coherency"], shared["complexity"], arcc.relevance(shared["road"]))
        return shared


ROAD_MORF = Metric("road_morf", False, "ROAD MoRF: mean probability change as 10-90 % of the most salient pixels "
                   "are imputed (noisy linear)", RemoveAndDebias, by_default=False)
ROAD_LERF = Metric("road_lerf", True, "ROAD LeRF: mean probability change as 10-90 % of the least salient pixels "
                   "are imputed", RemoveAndDebias, by_default=False)
ROAD = Metric("road", True, "ROAD combined: (LeRF - MoRF) / 2", RemoveAndDebias, by_default=False)
COMPLEXITY = Metric("complexity", False, "ARCC complexity: the map's mean (L1 norm / pixels)", RemoveAndDebias,
                    by_default=False)
COHERENCY = Metric("coherency", True, "ARCC coherency: (Pearson(map, map of image x map) + 1) / 2", RemoveAndDebias,
                   by_default=False)
ARCC = Metric("arcc", True, "ARCC: harmonic mean of coherency, 1 - complexity and clip(2 ROAD, 0, 1)",
              RemoveAndDebias, by_default=False)
ROAD_GROUP = (ROAD.name, ROAD_MORF.name, ROAD_LERF.name)
ARCC_GROUP = (ARCC.name, COHERENCY.name, COMPLEXITY.name, ROAD.name)
