"""Pointing game and energy-based pointing game, against ground-truth boxes.

- Pointing game (Zhang, Bargal, Lin, Brandt, Shen & Sclaroff, "Top-down Neural Attention by
  Excitation Backprop", ECCV 2016 / IJCV 2018): a hit when the map's maximum lies inside a box of
  the explained class, or within 15 pixels of one at 224-pixel inputs (scaled here to the model's
  input side: ``15 / 224 * max(H, W)``). Score: hits / (hits + misses).
- Energy-based pointing game (Wang et al., "Score-CAM", CVPRW 2020, section 5.2): the share of the
  map's mass inside the class's boxes, ``sum_{p in boxes} E_p / sum_p E_p``.

Choices: both read the map as displayed (upsampled to the model input, normalised to [0, 1]);
boxes are scaled from the original image to the model input (the input is a stretch, no crop);
the maximum is the first pixel of the deletion order (ties broken as there); a flat map is a miss
with no energy inside. An image whose annotations hold no object of the explained class is not a
miss: it is counted apart (``without_class``), as is an image with no annotation at all
(``unannotated``), following Zhang et al., who score only images containing the class.
"""

from __future__ import annotations

import numpy as np

from .base import Family, MapBatch, Metric
from .ground_truth import Box

TOLERANCE = 15 / 224
HIT, ABSENT, UNANNOTATED = "scored", "without_class", "unannotated"


def class_masks(annotations: list[list[Box] | None], image_sizes: list[tuple[int, int]], class_ids: np.ndarray,
                labels: list[str], size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """Per item: the union of its class's boxes at the model input (m, H, W) bool, and its status
    (``scored``, ``without_class`` or ``unannotated``). ``image_sizes`` are (width, height)."""
    height, width = size
    masks = np.zeros((len(annotations), height, width), bool)
    status = []
    ys = np.arange(height) + 0.5
    xs = np.arange(width) + 0.5
    for index, (boxes, (image_width, image_height), class_index, label) in enumerate(
            zip(annotations, image_sizes, class_ids, labels, strict=True)):
        if boxes is None:
            status.append(UNANNOTATED)
            continue
        matching = [box for box in boxes if box.matches(int(class_index), label)]
        if not matching:
            status.append(ABSENT)
            continue
        status.append(HIT)
        for box in matching:
            x0, y0, x1, y1 = box.xyxy
            inside_y = (ys >= y0 * height / image_height) & (ys < y1 * height / image_height)
            inside_x = (xs >= x0 * width / image_width) & (xs < x1 * width / image_width)
            masks[index] |= inside_y[:, None] & inside_x[None, :]
    return masks, status


def pointing_hits(ranks: np.ndarray, masks: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """(m,) bool: the top-ranked pixel lies within the tolerance of the mask; flat maps miss."""
    count, height, width = ranks.shape
    top = np.argmin(ranks.reshape(count, -1), axis=1)
    top_y, top_x = np.divmod(top, width)
    yy, xx = np.mgrid[0:height, 0:width]
    squared = (yy[None] - top_y[:, None, None]) ** 2 + (xx[None] - top_x[:, None, None]) ** 2
    nearest = np.sqrt(np.where(masks, squared, np.inf).min(axis=(1, 2)))
    return (nearest <= TOLERANCE * max(height, width)) & ~np.asarray(empty, bool)


def energy_inside(saliency: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(m,) share of each map's mass inside its mask; 0 for a flat (all-zero) map."""
    total = saliency.sum(axis=(1, 2))
    inside = (saliency * masks).sum(axis=(1, 2))
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)


class BoxMasks(Family):
    """Each item's class boxes at the model input and its status; no forward pass."""

    def compute(self, batch: MapBatch, scored: np.ndarray | None) -> dict:
        masks, statuses = class_masks([batch.annotations[i] for i in batch.images],
                                      [batch.image_sizes[i] for i in batch.images], batch.class_ids, batch.labels,
                                      batch.size)
        scored_mask = np.array([status == HIT for status in statuses])
        hits = pointing_hits(batch.ranks, masks, batch.empty).astype(np.float64)
        return {"statuses": statuses, "pointing": np.where(scored_mask, hits, np.nan),
                "energy": np.where(scored_mask, energy_inside(batch.shown, masks), np.nan)}


POINTING_GAME = Metric("pointing", True, "pointing game: the map's maximum within 15 px (at 224) of a box", BoxMasks,
                       needs_ground_truth=True)
ENERGY_POINTING_GAME = Metric("energy", True, "energy pointing game: share of the map's mass inside the boxes",
                              BoxMasks, needs_ground_truth=True)
