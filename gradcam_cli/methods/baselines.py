"""Baseline "methods" that look at neither the model nor the image: every score is read against them.

A faithfulness or localization score means little alone: deletion AUC depends on the model's
confidence, pointing on object size and on how centred the objects are. ``random`` and ``center``
give the floor a real method must clear (``gradcam evaluate --methods gradcam,random,center``).
They run through the same engine as the real methods, so their maps are upsampled, ranked and
scored by the same code.
"""

from __future__ import annotations

from .base import CamContext, CamMethod

RANDOM_SEED = 20180903  # fixed: the same batch position always gets the same map
CENTER_SIGMA = 0.25  # the Gaussian's standard deviation, as a fraction of the map's side


class RandomMap(CamMethod):
    """A fixed-seed uniform random map at the target layer's resolution, one per batch position.

    Drawn with numpy's generator seeded by ``RANDOM_SEED`` when the graph is traced and embedded as
    a constant, so reruns give the same maps for the same images in the same order and batch size,
    with or without XLA (TensorFlow's stateless draws differ under XLA). The maps depend on neither
    model nor image, so ``--sanity`` must flag this baseline, as it does.
    """

    name = "random"
    description = "baseline: a fixed-seed random map (read every score against it)"
    uses_gradients = False
    supports_eigen_smooth = False

    def cam(self, context: CamContext):
        import numpy as np
        import tensorflow as tf

        shape = tuple(context.activations.shape[:3])
        if None in shape:  # a dynamic shape: TensorFlow's own seeded draw
            return tf.random.stateless_uniform(tf.shape(context.activations)[:3], seed=(RANDOM_SEED, 0))
        return tf.constant(np.random.default_rng(RANDOM_SEED).random(shape, dtype=np.float32))


class CenterMap(CamMethod):
    """A centred Gaussian, ``exp(-((y - cy)^2 + (x - cx)^2) / (2 sigma^2))`` with sigma a quarter
    of the map's side: the "objects are in the middle" prior that photographs reward."""

    name = "center"
    aliases = ("centre",)
    description = "baseline: a centred Gaussian (photographers' centre bias)"
    uses_gradients = False
    supports_eigen_smooth = False

    def cam(self, context: CamContext):
        import tensorflow as tf

        shape = tf.shape(context.activations)
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        ys = (tf.range(height) + 0.5) / height - 0.5
        xs = (tf.range(width) + 0.5) / width - 0.5
        squared = ys[:, None] ** 2 + xs[None, :] ** 2
        gaussian = tf.exp(-squared / (2 * CENTER_SIGMA**2))
        return tf.tile(gaussian[None], (shape[0], 1, 1))
