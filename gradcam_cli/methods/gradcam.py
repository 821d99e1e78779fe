"""CAM, Grad-CAM and Grad-CAM++: the three methods that weight channels from the class score."""

from __future__ import annotations

from ..errors import MethodError, param
from ..graph import input_layer_of
from .base import CamContext, CamMethod


class GradCAM(CamMethod):
    """Grad-CAM (Selvaraju et al., ICCV 2017, eq. 1-2).

    ``w_k = mean_ij dy^c / dA^k_ij``, ``L = ReLU(sum_k w_k A^k)``, where ``y^c`` is the class's
    pre-softmax logit (the paper's "score before the softmax").

    Example::

        gradcam_cli.explain("demo", ["sample_images/shapes/01_circle.png"], method="gradcam")
    """

    name = "gradcam"
    aliases = ("grad-cam", "grad_cam")
    description = "gradient-weighted class activation map (Selvaraju 2017)"

    def channel_weights(self, context: CamContext):
        from keras import ops

        return ops.mean(context.gradients, axis=(1, 2))


class GradCAMPlusPlus(CamMethod):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018, eq. 19 with the exponential score).

    With ``Y^c = exp(S^c)`` the paper's closed form gives, for ``g = dS^c/dA``::

        alpha^kc_ij = g_ij^2 / (2 g_ij^2 + sum_ab A^k_ab g_ij^3)      (0 where the denominator is 0)
        w^c_k       = sum_ij alpha^kc_ij ReLU(dY^c/dA^k_ij) = exp(S^c) sum_ij alpha^kc_ij ReLU(g_ij)
        L           = ReLU(sum_k w^c_k A^k)

    Choices where peers differ: weights are a *sum* over positions (the paper), not a mean; the
    positive factor ``exp(S^c)`` is dropped, since it scales one image's map uniformly (min-max
    normalisation removes it) and overflows float32 for logits above ~88; alpha is not re-normalised.
    """

    name = "gradcam++"
    aliases = ("gradcampp", "gradcam_pp", "gradcamplusplus", "grad-cam++")
    description = "Grad-CAM with higher-order pixel weights, better on several instances (Chattopadhay 2018)"

    def channel_weights(self, context: CamContext):
        from keras import ops

        gradients, activations = context.gradients, context.activations
        grads_2 = ops.square(gradients)
        grads_3 = grads_2 * gradients
        activation_sums = ops.sum(activations, axis=(1, 2), keepdims=True)
        denominator = 2.0 * grads_2 + activation_sums * grads_3
        safe = ops.where(denominator != 0.0, denominator, ops.ones_like(denominator))
        alpha = ops.where(denominator != 0.0, grads_2 / safe, ops.zeros_like(denominator))
        return ops.sum(alpha * ops.relu(gradients), axis=(1, 2))


class CAM(CamMethod):
    """Class Activation Mapping (Zhou et al., CVPR 2016, eq. 2).

    For a network ending in ``conv -> global average pooling -> Dense``, the map of class ``c`` is
    ``M_c = sum_k w^c_k A^k`` with ``w^c`` the Dense weights of class ``c``. ReLU is applied like the
    other methods here, so CAM and Grad-CAM agree up to a positive constant (``1 / (h w)``) on such
    models. Gradient-free.
    """

    name = "cam"
    aliases = ("classactivationmap",)
    uses_gradients = False
    reads_class_weights = True
    description = "class activation map from the Dense weights; needs conv -> GAP -> Dense (Zhou 2016)"
    single_layer = "it reads the Dense weights after the one layer that global average pooling reads"

    def prepare(self, spec, probe):
        """The (k, classes) class weights: the Dense kernel; for a binary head ``(-w, w)``, since
        the negative class's score is the negated logit."""
        import numpy as np

        kernel = np.asarray(gap_dense_head(probe).kernel, np.float32)
        return probe.head.class_weights(kernel)

    def channel_weights(self, context: CamContext):
        from keras import ops

        kernel = ops.convert_to_tensor(context.method_state)  # (k, classes)
        return ops.transpose(ops.take(kernel, context.targets, axis=1))


def gap_dense_head(probe):
    """The Dense layer of a ``target -> GlobalAveragePooling2D -> [Dropout] -> Dense`` head."""
    import keras

    head, model = probe.head, probe.model
    dense = head.layer
    if head.source == "input":
        dense = input_layer_of(model, head.layer)
    reason = None
    if not isinstance(dense, keras.layers.Dense):
        reason = "the model does not end in a Dense layer"
    else:
        node = input_layer_of(model, dense)
        while isinstance(node, (keras.layers.Dropout, keras.layers.Identity)) or (
            isinstance(node, keras.layers.Activation) and getattr(node.activation, "__name__", "") == "linear"
        ):
            node = input_layer_of(model, node)
        if not isinstance(node, keras.layers.GlobalAveragePooling2D):
            reason = "the Dense layer is not fed by GlobalAveragePooling2D"
        elif input_layer_of(model, node) is not probe.target.layer:
            reason = f"global average pooling does not read the target layer '{probe.target.path}'"
    if reason:
        raise MethodError(
            f"CAM needs a conv -> GlobalAveragePooling2D -> Dense head, but {reason}. "
            f"Use {param('method', 'gradcam')}, which needs no particular head."
        )
    return dense
