"""What a metric is: a name, a direction, what it needs, and how it scores one batch of maps.

Metrics of one *family* share their work, done once per batch whichever of them are asked for:
deletion and insertion read one set of perturbed curves, Average Drop and Increase in Confidence one
set of multiplied images, the pointing games one set of box masks. A family says which perturbed
copies it needs scored (:meth:`Family.rows`, run by the shared
:class:`~gradcam_cli.metrics.perturbation.PerturbationRunner` in one pass with the other families'
rows) and what it makes of their probabilities (:meth:`Family.compute`); a metric reads its value off
that (:meth:`Metric.values`). A family is told which of its metrics a run asks for
(:meth:`Family.asks`), so work only some of them need (ROAD's copies, coherency's second
explanation) is skipped otherwise. A new metric is a ``Metric(...)`` declared in its module (with
its own family if it shares no work) plus one line in :data:`gradcam_cli.metrics.METRICS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass
class MapBatch:
    """One batch of maps to score, flattened to ``m`` items (image, target).

    ``pixels`` (n, H, W, C) and ``substrate`` (blurred pixels) at the model input; ``shown`` (m, H, W)
    the maps as displayed; ``ranks`` (m, H, W) each pixel's place in the deletion order; ``empty`` (m,)
    flat maps; ``class_ids`` and ``images`` (m,) each item's class and image; ``original`` (m,) the
    class's probability on the unaltered image; ``labels`` (m,) class names; ``annotations`` and
    ``image_sizes`` per image (None without ground truth); ``steps``: deletion/insertion steps;
    ``explain``: the method being scored, for other images: ``explain(images (k, H, W, C) in
    [0, 255], class_ids (k,))`` gives their maps as displayed (k, H, W) (None: not available).
    """

    pixels: np.ndarray
    substrate: np.ndarray
    shown: np.ndarray
    ranks: np.ndarray
    empty: np.ndarray
    class_ids: np.ndarray
    images: np.ndarray
    original: np.ndarray
    labels: list[str]
    annotations: list | None
    image_sizes: list[tuple[int, int]] | None
    steps: int
    explain: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    @property
    def items(self) -> np.ndarray:
        return np.arange(len(self.class_ids))

    @property
    def size(self) -> tuple[int, int]:
        return self.shown.shape[1], self.shown.shape[2]


class Family:
    """The work a family of metrics shares in a batch. ``perturbs``: it needs perturbed copies
    scored by the model (so it needs class probabilities)."""

    perturbs: ClassVar[bool] = False

    def __init__(self, metrics: Iterable[str] = ()):
        self.metrics = frozenset(metrics)  # the family's metrics this run asks for; empty: all of them

    def asks(self, names: Iterable[str]) -> bool:
        """Whether any of ``names`` is asked for (always, when the family was not told)."""
        return not self.metrics or not self.metrics.isdisjoint(names)

    def rows(self, batch: MapBatch):
        """The perturbed copies to score (:class:`~gradcam_cli.metrics.perturbation.Rows`), or None."""
        return None

    def compute(self, batch: MapBatch, scored: np.ndarray | None) -> dict[str, Any]:
        """What the family's metrics read, from the probabilities of :meth:`rows` (in their order).
        The keys ``curves`` ({name: (m, S + 1)}) and ``statuses`` ((m,) pointing statuses) are also
        reported per row by ``evaluate``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Metric:
    """One metric: its registry name, direction and needs, the family whose work it reads, and its
    per-item values (by default the family's entry under the metric's name). ``by_default``: part
    of the default selection (every metric the inputs allow); the costly ones are asked for by name."""

    name: str
    higher_is_better: bool
    description: str
    family: type[Family]
    needs_ground_truth: bool = False
    by_default: bool = True

    def values(self, shared: dict[str, Any]) -> np.ndarray:
        """(m,) float values, NaN where the item is not scored; ``shared``: the family's
        :meth:`Family.compute`."""
        return shared[self.name]
