"""Embedding models built for the similarity tests, where the answer is known, and the pictures they see.

:func:`pattern_model` sees two textures: horizontal stripes (pattern A) and vertical stripes (pattern
B). Its one convolution has four hand-set kernels, the second derivative across rows (+ and -) and
across columns (+ and -), each ReLU'd: horizontal stripes excite only the first two channels,
vertical stripes only the last two (``valid`` padding, so no border excites either). The embedding is
the channels' global average, mixed into 8 dimensions by a Dense layer with orthonormal columns,
which keeps every cosine similarity of the 4 channel means. So a picture whose left half is A and
right half is B is close to an A reference through its left half only: Grad-CAM's map of that
similarity must lie on the left half, and on the right half for a B reference.
"""

from __future__ import annotations

import numpy as np

SIZE = 32
PERIOD = 4  # stripes two pixels on, two off


def stripes(horizontal: bool, size: int = SIZE) -> np.ndarray:
    """(size, size, 3) uint8: white and black stripes two pixels wide, along rows or columns."""
    lines = (np.arange(size) % PERIOD < PERIOD // 2).astype(np.uint8) * 255
    plane = np.repeat(lines[:, None], size, axis=1) if horizontal else np.repeat(lines[None, :], size, axis=0)
    return np.repeat(plane[..., None], 3, axis=2)


PATTERN_A = stripes(True)
PATTERN_B = stripes(False)


def two_patch(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The left half of ``left`` beside the right half of ``right``."""
    half = left.shape[1] // 2
    return np.concatenate([left[:, :half], right[:, half:]], axis=1)


def pattern_model(keras, rank4: bool = False):
    """The two-texture embedding model (module docstring); ``rank4``: its output is the convolution's
    (batch, 30, 30, 4) map itself, which the tool mean-pools to the same 4 channel means."""
    second = np.array([1.0, -2.0, 1.0]) / (255.0 * 3)
    across_rows = np.repeat(second[:, None], 3, axis=1)  # varies down the picture: horizontal stripes
    kernels = np.stack([across_rows, -across_rows, across_rows.T, -across_rows.T], axis=-1)  # (3, 3, 4)
    kernel = np.repeat(kernels[:, :, None, :], 3, axis=2).astype(np.float32)  # (3, 3, 3 channels, 4)
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.Conv2D(4, 3, use_bias=False, activation="relu", name="features")(inputs)
    if rank4:
        model = keras.Model(inputs, features, name="pattern_map")
    else:
        pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)
        embedding = keras.layers.Dense(8, use_bias=False, name="embedding")(pooled)
        model = keras.Model(inputs, embedding, name="patterns")
        mixing, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(8, 4)))  # orthonormal columns
        model.get_layer("embedding").set_weights([mixing.T.astype(np.float32)])
    model.get_layer("features").set_weights([kernel])
    return model


def left_share(heatmap: np.ndarray) -> float:
    """The share of a (h, w) map's mass in its left half (a centre column, if any, left out)."""
    width = heatmap.shape[1]
    left, right = heatmap[:, : width // 2].sum(), heatmap[:, (width + 1) // 2 :].sum()
    return float(left / (left + right))


def random_embedding_model(keras, size: int = 20, seed: int = 21):
    """conv 'target' -> conv 'after' (tanh) -> GAP -> Dense(6) 'embedding', random weights: the
    gradients at 'target' vary over positions, so a map formula is checked everywhere."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="target")(inputs)
    x = keras.layers.Conv2D(5, 3, activation="tanh", name="after")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(6, name="embedding")(x), name="random_embedding")
