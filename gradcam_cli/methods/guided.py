"""Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map."""

from __future__ import annotations

from contextlib import ExitStack

from .. import backend
from ..graph import iter_layers
from ..hooks import intercept
from .base import CamContext
from .gradcam import GradCAM

RELU_NAMES = ("relu", "relu6")


def _is_relu_layer(layer) -> bool:
    import keras

    if isinstance(layer, keras.layers.ReLU):
        return True
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") in RELU_NAMES


def _guided_identity(tensor):
    """Identity whose gradient keeps only positive incoming gradients; after a ReLU (whose own
    gradient keeps positions with positive input) this is guided backpropagation's rule."""
    from keras import ops

    @ops.custom_gradient
    def guided(x):
        def gradient(*args, upstream=None):
            return ops.relu(args[0] if upstream is None else upstream)

        return x * 1.0, gradient

    return guided(tensor)


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM (Selvaraju et al., ICCV 2017, section 3.1).

    Guided backpropagation (Springenberg et al., 2015) takes the gradient of the target logit with
    respect to the input, letting gradients through a ReLU only where both its input and the
    incoming gradient are positive. Multiplying it element-wise by the Grad-CAM map upsampled to the
    input size gives a fine-grained, class-discriminative saliency image. The heatmap (overlay and
    ``.npy``) is Grad-CAM's; the saliency is written beside it as ``...guided.png``. Only ReLU-family
    activations are guided; other activations (swish, gelu) pass gradients as usual.
    """

    name = "guided-gradcam"
    aliases = ("guidedgradcam", "guided_gradcam", "ggcam")
    makes_saliency = True
    description = "guided backpropagation x Grad-CAM: fine-grained saliency image beside the overlay"

    def saliency(self, context: CamContext, cam):
        from keras import ops

        images = context.images
        relu_layers = [info.layer for info in iter_layers(context.probe.model) if _is_relu_layer(info.layer)]

        def score(inputs):
            with ExitStack() as stack:
                for layer in relu_layers:
                    stack.enter_context(intercept(layer, lambda args, output: _guided_identity(output)))
                logits = context.class_scores(inputs)
            scores = self.target_scores(logits, ops.reshape(context.targets, (-1, 1)))
            return context.score_sign * ops.sum(scores)  # negated for a counterfactual map

        guided = backend.input_gradient(score, images)
        upsampled = ops.image.resize(cam[..., None], tuple(images.shape[1:3]), interpolation="bilinear")
        return guided * upsampled
