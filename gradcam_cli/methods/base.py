"""The shared method base: every CAM method is a weight formula or a map formula over it.

The engine (:mod:`gradcam_cli.engine`) runs the model once per batch, obtains the target layer's
activations ``A`` (batch, h, w, k), the logits and, when the method asks for them, the gradients
``g = d score_c / d A`` of each target class's pre-softmax logit. A method then only says how to
turn ``(A, g)`` into a map, in TensorFlow ops on the whole batch (no per-image Python loop).
This is the template-method shape of pytorch-grad-cam's ``BaseCAM``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass
class CamContext:
    """What a method may read while computing maps for one target per image.

    ``activations``: (B, h, w, k) float32; ``gradients``: same shape, or None for gradient-free
    methods; ``targets``: (B,) int32 class indices; ``logits``: (B, C) float32; ``images``: the
    model-ready batch; ``probe``: the :class:`~gradcam_cli.layers.Probe`; ``method_state``: what
    :meth:`CamMethod.prepare` returned.
    """

    activations: Any
    gradients: Any
    targets: Any
    logits: Any
    images: Any
    probe: Any
    method_state: Any = None


class CamMethod:
    """Base class. Override :meth:`channel_weights` (most methods) or :meth:`cam` (the rest)."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    uses_gradients: ClassVar[bool] = True
    description: ClassVar[str] = ""

    def prepare(self, spec, probe) -> Any:
        """Validate the model for this method once, before any image; return static state."""
        return None

    def channel_weights(self, context: CamContext):
        """(B, k) weights, one per channel of the target layer."""
        raise NotImplementedError

    def cam(self, context: CamContext):
        """(B, h, w) map: ReLU(sum_k w_k A_k) by default, the form shared by CAM-family methods."""
        import tensorflow as tf

        weights = self.channel_weights(context)
        return tf.nn.relu(tf.einsum("bhwk,bk->bhw", context.activations, weights))
