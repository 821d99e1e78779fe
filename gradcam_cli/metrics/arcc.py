"""ARCC's parts: complexity, coherency and their combination with a relevance (Poppi, Cornia,
Baraldi & Cucchiara, "Revisiting the evaluation of class activation mapping for explainability: a
novel metric and experimental analysis", CVPR Workshops 2021, section 3).

The paper's ADCC is the harmonic mean of three numbers in [0, 1], each "higher is better":
coherency, 1 - complexity and 1 - Average Drop (the relevance). ARCC, as pytorch-grad-cam names
it, puts ROAD in the relevance's place. With ``E`` the map as displayed (upsampled to the model
input, min-max normalised to [0, 1]) of class ``c`` for image ``x``:

- complexity = ``||E||_1 / (H W)``, the mean of the map (0: empty, 1: everywhere); lower is better;
- coherency = ``(rho(E, E') + 1) / 2``, with ``E'`` the same method's map of class ``c`` for the
  image times its own map, ``x * E`` (in pixel space, before preprocessing, as Average Drop's
  product), and ``rho`` Pearson's correlation over the ``H W`` pixels; higher is better. A map
  that is constant (an empty map, or a product image that gives one) has no measurable
  correlation: ``rho = 0``, coherency 0.5, as pytorch-grad-cam's small epsilon gives;
- relevance = ``clip(2 ROAD, 0, 1)`` with ROAD the combined score ``(LeRF - MoRF) / 2`` of
  :mod:`.road` over its nine removal fractions, so the relevance is the mean gap between the
  LeRF and MoRF probabilities, clipped to [0, 1] (pytorch-grad-cam scales it the same way but
  averages four fractions, 20-80 %, for ARCC);
- ARCC = ``3 / (1 / coherency + 1 / (1 - complexity) + 1 / relevance)``, 0 when a part is 0.

Choices where implementations differ: pytorch-grad-cam multiplies the *normalised* model input by
the map (so "dark" is the dataset mean), where the paper and this tool multiply the image; its
complexity is the same pixel mean. Note that a map that ignores the image (the ``center`` and
``random`` baselines: the same map for every input) is perfectly coherent by this definition;
read coherency with complexity and relevance, as the harmonic mean does.
"""

from __future__ import annotations

import numpy as np


def complexity(shown: np.ndarray) -> np.ndarray:
    """(m, H, W) maps in [0, 1] -> (m,) their L1 norm divided by the pixel count."""
    return np.abs(shown.reshape(len(shown), -1)).mean(axis=1, dtype=np.float64)


def pearson(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson's correlation of each pair of maps (m, ...) over their pixels; 0 where one is constant."""
    a = first.reshape(len(first), -1).astype(np.float64)
    b = second.reshape(len(second), -1).astype(np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    scale = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.where(scale > 0, (a * b).sum(axis=1) / np.where(scale > 0, scale, 1.0), 0.0)


def coherency(shown: np.ndarray, reexplained: np.ndarray) -> np.ndarray:
    """``(rho(E, E') + 1) / 2`` per item."""
    return (pearson(shown, reexplained) + 1.0) / 2.0


def relevance(road: np.ndarray) -> np.ndarray:
    """ROAD's combined score, in [-0.5, 0.5], to [0, 1]: ``clip(2 ROAD, 0, 1)``."""
    return np.clip(2.0 * road, 0.0, 1.0)


def arcc(coherency_: np.ndarray, complexity_: np.ndarray, relevance_: np.ndarray) -> np.ndarray:
    """The harmonic mean of coherency, 1 - complexity and relevance; 0 where one of them is 0."""
    parts = np.stack([coherency_, 1.0 - complexity_, relevance_]).astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.where((parts > 0).all(axis=0), 3.0 / (1.0 / np.where(parts > 0, parts, 1.0)).sum(axis=0), 0.0)
