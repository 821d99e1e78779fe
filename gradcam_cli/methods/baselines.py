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

    Drawn with numpy's generator seeded by ``RANDOM_SEED`` when the step is traced and embedded as
    a constant, so reruns give the same maps for the same images in the same order and batch size,
    with or without XLA, on every backend. The maps depend on neither
    model nor image, so ``--sanity`` must flag this baseline, as it does.
    """

    name = "random"
    description = "baseline: a fixed-seed random map (read every score against it)"
    uses_gradients = False
    supports_eigen_smooth = False

    def cam(self, context: CamContext):
        import numpy as np
        from keras import ops

        shape = tuple(context.activations.shape[:3])  # static: every step is compiled for one batch shape
        return ops.convert_to_tensor(np.random.default_rng(RANDOM_SEED).random(shape, dtype=np.float32))


class CenterMap(CamMethod):
    """A centred Gaussian, ``exp(-((y - cy)^2 + (x - cx)^2) / (2 sigma^2))`` with sigma a quarter
    of the map's side: the "objects are in the middle" prior that photographs reward."""

    name = "center"
    aliases = ("centre",)
    description = "baseline: a centred Gaussian (photographers' centre bias)"
    uses_gradients = False
    supports_eigen_smooth = False

    def cam(self, context: CamContext):
        import numpy as np
        from keras import ops

        batch, height, width = context.activations.shape[:3]
        ys = (np.arange(height) + 0.5) / height - 0.5
        xs = (np.arange(width) + 0.5) / width - 0.5
        gaussian = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * CENTER_SIGMA**2)).astype(np.float32)
        return ops.convert_to_tensor(np.broadcast_to(gaussian, (batch, height, width)).copy())
