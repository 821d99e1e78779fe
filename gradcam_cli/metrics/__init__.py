"""Scores for heatmaps: how faithful to the model (deletion, insertion, Average Drop, Increase in
Confidence, ROAD), how compact and stable (ARCC's complexity and coherency), how well placed
against ground truth (pointing game, energy), and whether they depend on the model at all (the
sanity check). One small module per family; the paper, the formula and every choice where
implementations differ are in each module's docstring.

:mod:`.perturbation` builds every perturbed copy of a batch (deletion and insertion steps, the
multiplied images) inside one compiled graph per shape and runs them through the explainer's probe
in chunks, so no metric has a per-image or per-step Python loop around the model.
"""

from __future__ import annotations

from ..errors import EvaluationError, param
from .base import Metric
from .confidence import AVERAGE_DROP, INCREASE_IN_CONFIDENCE
from .deletion import DELETION, INSERTION
from .pointing import ENERGY_POINTING_GAME, POINTING_GAME
from .road import ARCC, ARCC_GROUP, COHERENCY, COMPLEXITY, ROAD, ROAD_GROUP, ROAD_LERF, ROAD_MORF

# the registry: a metric is declared in its module and listed here, one line each; evaluate loops over it
METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    DELETION,
    INSERTION,
    AVERAGE_DROP,
    INCREASE_IN_CONFIDENCE,
    POINTING_GAME,
    ENERGY_POINTING_GAME,
    ROAD,
    ROAD_MORF,
    ROAD_LERF,
    ARCC,
    COHERENCY,
    COMPLEXITY,
)}
# names that select several metrics: a family's scores read together (`--metrics road,arcc`)
METRIC_GROUPS: dict[str, tuple[str, ...]] = {"road": ROAD_GROUP, "arcc": ARCC_GROUP}
FAITHFULNESS = tuple(name for name, metric in METRICS.items() if metric.family.perturbs)
"""The metrics that read class probabilities on perturbed copies (the model must report probabilities)."""
# what gradcam evaluate writes in its output folder (read back by the HTML report)
METRICS_JSON = "metrics.json"
METRICS_JSONL = "metrics.jsonl"
CURVES_PNG = "curves.png"


def parse_metrics(text: str | None, have_ground_truth: bool) -> list[str]:
    """``--metrics a,b`` to names, a group name (:data:`METRIC_GROUPS`) to its metrics; default:
    every metric the inputs allow, but those asked for by name only (ROAD and ARCC)."""
    if text is None:
        return [name for name, info in METRICS.items()
                if info.by_default and (have_ground_truth or not info.needs_ground_truth)]
    asked = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not asked:
        raise EvaluationError(f"{param('metrics')} is empty: name at least one, e.g. deletion,insertion, or leave it out for all.")
    names = [name for part in asked for name in METRIC_GROUPS.get(part, (part,))]
    for name in names:
        if name not in METRICS:
            raise EvaluationError(f"unknown metric '{name}' in {param('metrics')}: choose from {', '.join(METRICS)}.")
        if METRICS[name].needs_ground_truth and not have_ground_truth:
            raise EvaluationError(f"{param('metrics', name)} needs boxes: pass {param('ground_truth', 'FILE')} "
                                  "(ground_truth.json, COCO JSON or a folder of Pascal VOC XML).")
    return list(dict.fromkeys(names))


__all__ = ["CURVES_PNG", "FAITHFULNESS", "METRICS", "METRICS_JSON", "METRICS_JSONL", "METRIC_GROUPS", "Metric",
           "parse_metrics"]
