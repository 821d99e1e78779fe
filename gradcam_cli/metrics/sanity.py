"""Sanity check by model parameter randomization (Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim,
"Sanity Checks for Saliency Maps", NeurIPS 2018, section 3.1).

A method that explains the model must give different maps when the model's top is destroyed.
Inside :func:`randomized_weights` the model keeps its trained weights except those of the head and
the last block, which hold fresh initial values (the layers' own initialisers, as on a new model,
seeded with ``SANITY_SEED``). "Last block" here is every weighted layer from the output back to and including
the ``SANITY_CONV_LAYERS``-th convolution from the end (for the demo: the Dense head and block3's
two convolutions with their batch norms), the cascading randomization's first two stages.

The score is Spearman's rank correlation between the map for the trained model and for the copy,
per (image, target), computed on the raw maps with tied values given their average rank (the
paper's Figure 4 statistic, without absolute values). A method whose mean correlation is at least
``FLAG_CORRELATION`` barely changes and is flagged: it shows the image more than the model. The
``random`` and ``center`` baselines ignore the model entirely and are flagged by construction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ..graph import iter_layers

SANITY_SEED = 2018
SANITY_CONV_LAYERS = 2
FLAG_CORRELATION = 0.5


def randomized_layers(model) -> list[str]:
    """Names of the layers :func:`randomized_weights` re-initialises, from the output backwards."""
    chosen, convolutions = [], 0
    for layer in reversed([info.layer for info in iter_layers(model)]):
        if not layer.weights:
            continue
        chosen.append(layer.name)
        if any(len(weight.shape) == 4 for weight in layer.weights):
            convolutions += 1
            if convolutions >= SANITY_CONV_LAYERS:
                break
    return chosen


@contextmanager
def randomized_weights(model) -> Iterator[list[str]]:
    """Within the block, the head and last block of ``model`` hold fresh initial values; the trained
    values are restored on leaving, errors included. Yields the re-initialised layers' names.

    The weights are swapped in place rather than on a cloned model, so the explainer's compiled graphs
    serve both models, and Keras' global random state is left alone: each variable's new value
    comes from its layer's own initializer, given an explicit seed (``SANITY_SEED`` + position);
    a variable without one gets Adebayo et al.'s truncated normal (0, 0.01).
    """
    names = set(randomized_layers(model))
    layers = [layer for layer in [info.layer for info in iter_layers(model)] if layer.name in names]
    saved = [(variable, variable.numpy()) for layer in layers for variable in layer.weights]
    try:
        position = 0
        for layer in layers:
            for variable in layer.weights:
                variable.assign(_fresh_value(layer, variable, SANITY_SEED + position))
                position += 1
        yield [layer.name for layer in layers]
    finally:
        for variable, value in saved:
            variable.assign(value)


def _fresh_value(layer, variable, seed: int) -> np.ndarray:
    import keras

    name = variable.name.split("/")[-1].split(":")[0]
    for attribute in (f"{name}_initializer", f"{name.replace('_kernel', '')}_initializer",
                      "depthwise_initializer" if name == "kernel" else ""):
        initializer = getattr(layer, attribute, None) if attribute else None
        if initializer is not None:
            config = keras.initializers.serialize(initializer)
            if isinstance(config.get("config"), dict) and "seed" in config["config"]:
                config["config"]["seed"] = seed
            fresh = keras.initializers.deserialize(config)
            return np.asarray(fresh(tuple(variable.shape), dtype=variable.dtype))
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.0, 0.01, tuple(variable.shape)), -0.02, 0.02).astype(variable.dtype)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks (0-based) along the last axis, ties sharing their average rank; (m, n) -> (m, n)."""
    count, length = values.shape
    order = np.argsort(values, axis=1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=1)
    starts = np.ones_like(ordered, bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    groups = np.cumsum(starts.ravel()) - 1  # a global id per run of equal values
    positions = np.tile(np.arange(length, dtype=np.float64), count)
    mean_position = np.bincount(groups, positions) / np.bincount(groups)
    ranks = np.empty((count, length))
    np.put_along_axis(ranks, order, mean_position[groups].reshape(count, length), axis=1)
    return ranks


def rank_correlation(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Spearman's rho per row of two (m, ...) stacks of maps; 0 where a map is constant (its order
    carries nothing that could agree)."""
    a = average_ranks(first.reshape(len(first), -1).astype(np.float64))
    b = average_ranks(second.reshape(len(second), -1).astype(np.float64))
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.where(norm > 0, (a * b).sum(axis=1) / np.where(norm > 0, norm, 1.0), 0.0)
