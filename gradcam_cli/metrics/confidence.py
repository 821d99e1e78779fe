"""Average Drop and Increase in Confidence (Chattopadhay, Sarkar, Howlader & Balasubramanian,
"Grad-CAM++", WACV 2018, section 5.1).

The explanation map ``E`` (upsampled to the model input and min-max normalised to [0, 1]) is
multiplied into the image in pixel space, before preprocessing: ``x' = x * E``. With ``Y`` the
softmax probability of the explained class on ``x`` and ``O`` on ``x'``:

- Average Drop = ``mean_i max(0, Y_i - O_i) / Y_i`` (lower is better; reported as a fraction, the
  paper prints it as a percentage);
- Increase in Confidence = ``mean_i [Y_i < O_i]`` (higher is better).

Choices: the paper's "explanation map" is the normalised map at input resolution, as here;
torchcam and pytorch-grad-cam use the same product. A flat map (all zero after ReLU) gives a black
image, which is that map's honest score. One extra forward pass per (image, target).
"""

from __future__ import annotations

import numpy as np

from .base import Family, MapBatch, Metric
from .perturbation import MULTIPLY, Rows


def multiplied_rows(items: np.ndarray, images: np.ndarray, targets: np.ndarray) -> Rows:
    """One row per item: the image times its map."""
    return Rows(items, images, np.full(len(items), MULTIPLY, np.int32), np.zeros(len(items), np.int32), targets)


def average_drop(original: np.ndarray, multiplied: np.ndarray) -> np.ndarray:
    """Per item ``max(0, Y - O) / Y``; the mean over items is Average Drop."""
    return np.maximum(0.0, original - multiplied) / np.maximum(original, 1e-12)


def increase_in_confidence(original: np.ndarray, multiplied: np.ndarray) -> np.ndarray:
    """Per item ``[Y < O]`` as 0/1; the mean over items is Increase in Confidence."""
    return (original < multiplied).astype(np.float32)


class Multiplied(Family):
    """Each image times its map, one forward pass an item."""

    perturbs = True

    def rows(self, batch: MapBatch) -> Rows:
        return multiplied_rows(batch.items, batch.images, batch.class_ids)

    def compute(self, batch: MapBatch, scored: np.ndarray | None) -> dict:
        return {"drop": average_drop(batch.original, scored),
                "increase": increase_in_confidence(batch.original, scored)}


AVERAGE_DROP = Metric("drop", False, "Average Drop: mean max(0, Y - O) / Y for the image times its map", Multiplied)
INCREASE_IN_CONFIDENCE = Metric("increase", True, "Increase in Confidence: share of images where O > Y", Multiplied)
