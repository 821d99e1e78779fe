"""Deletion and insertion (Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation
of Black-box Models", BMVC 2018, section 4.1).

Pixels are ordered by the map, upsampled bilinearly to the model's input and normalised (the map
as displayed; ties broken by a fixed permutation, see
:func:`~gradcam_cli.metrics.perturbation.pixel_ranks`). With ``S = --steps`` and ``N = H W`` pixels,
step ``s`` (0..S) touches the first ``n_s = round(s N / S)`` pixels of that order:

- deletion: those pixels are set to 0 in pixel space (black, before preprocessing, as in RISE);
  ``p_s`` is the softmax probability of the explained class; lower area = more faithful;
- insertion: those pixels are copied from the image onto a blurred copy of it (RISE's Gaussian,
  :func:`~gradcam_cli.metrics.perturbation.blurred`); higher area = more faithful.

The score is the area under ``p_s`` over ``x = s / S`` in [0, 1] by the trapezoid rule:
``AUC = (sum_s p_s - (p_0 + p_S) / 2) / S``. Deletion's ``p_0`` and insertion's ``p_S`` are the
unaltered image, whose probability the explanation pass has already computed, so a curve pair
costs ``2 S`` forward passes. Peers differ: xplique deletes to a configurable baseline (0 after
preprocessing by default); pytorch-grad-cam has no RISE curves (ROAD instead); RISE's own code
counts pixels per step as ``N / S`` and reads softmax probabilities, as here.
"""

from __future__ import annotations

import numpy as np

from .base import Family, MapBatch, Metric
from .perturbation import DELETE, INSERT, Rows


def step_counts(pixels: int, steps: int) -> np.ndarray:
    """(S + 1,) pixels touched at each step: round(s N / S)."""
    return np.round(np.arange(steps + 1) * pixels / steps).astype(np.int32)


def curve_rows(items: np.ndarray, images: np.ndarray, targets: np.ndarray, pixels: int, steps: int) -> Rows:
    """Rows for deletion steps 1..S and insertion steps 0..S-1 of every item (item-major)."""
    counts = step_counts(pixels, steps)
    per_item = np.concatenate([counts[1:], counts[:-1]])
    kinds = np.repeat(np.array([DELETE, INSERT], np.int32), steps)
    return Rows(np.repeat(items, 2 * steps), np.repeat(images, 2 * steps), np.tile(kinds, len(items)),
                np.tile(per_item, len(items)), np.repeat(targets, 2 * steps))


def assemble_curves(scored: np.ndarray, original: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``scored``: the probabilities of :func:`curve_rows`' rows; ``original``: (m,) each item's
    probability on the unaltered image. Returns the (m, S + 1) deletion and insertion curves."""
    table = scored.reshape(len(original), 2, steps)
    deletion = np.concatenate([original[:, None], table[:, 0]], axis=1)
    insertion = np.concatenate([table[:, 1], original[:, None]], axis=1)
    return deletion, insertion


def area_under_curve(curves: np.ndarray) -> np.ndarray:
    """Trapezoid rule over [0, 1] with equal steps, per row."""
    steps = curves.shape[-1] - 1
    return (curves.sum(axis=-1) - (curves[..., 0] + curves[..., -1]) / 2) / steps


class Curves(Family):
    """Both curves of every item, scored together (``2 S`` forward passes an item)."""

    perturbs = True

    def rows(self, batch: MapBatch) -> Rows:
        height, width = batch.size
        return curve_rows(batch.items, batch.images, batch.class_ids, height * width, batch.steps)

    def compute(self, batch: MapBatch, scored: np.ndarray | None) -> dict:
        deletion, insertion = assemble_curves(scored, batch.original, batch.steps)
        return {"curves": {"deletion": deletion, "insertion": insertion},
                "deletion": area_under_curve(deletion), "insertion": area_under_curve(insertion)}


DELETION = Metric("deletion", False, "RISE deletion AUC: probability as the most salient pixels are zeroed", Curves)
INSERTION = Metric("insertion", True, "RISE insertion AUC: probability as salient pixels return to a blurred copy", Curves)
