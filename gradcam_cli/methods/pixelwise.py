"""Methods that weigh every position separately: HiResCAM, Layer-CAM; and XGrad-CAM."""

from __future__ import annotations

from .base import CamContext, CamMethod


class HiResCAM(CamMethod):
    """HiResCAM (Draelos & Carin, 2020): ``L = ReLU(sum_k g^k * A^k)``, element-wise, no pooling.

    Unlike Grad-CAM it does not average gradients over positions, so the map is provably faithful
    to the model's computation for heads that end in global average pooling (where it equals CAM
    up to the constant ``1 / (h w)``).
    """

    name = "hirescam"
    aliases = ("hires-cam", "hires_cam")
    description = "gradient x activation per position, faithful for GAP heads (Draelos 2020)"

    def weighted_activations(self, context: CamContext):
        return context.gradients * context.activations


class LayerCAM(CamMethod):
    """Layer-CAM (Jiang et al., IEEE TIP 2021, eq. 5-6): ``L = ReLU(sum_k ReLU(g^k_ij) A^k_ij)``.

    Each position keeps its own positive gradient as weight, which gives finer maps, and works on
    shallower layers than Grad-CAM.
    """

    name = "layercam"
    aliases = ("layer-cam", "layer_cam")
    description = "positive gradients weigh each position; finer maps, works on early layers (Jiang 2021)"

    def weighted_activations(self, context: CamContext):
        from keras import ops

        return ops.relu(context.gradients) * context.activations


class XGradCAM(CamMethod):
    """XGrad-CAM (Fu et al., BMVC 2020, eq. 10): ``w_k = sum_ij (A^k_ij / sum_ab A^k_ab) g^k_ij``,
    ``L = ReLU(sum_k w_k A^k)``.

    The activation-normalised gradient sum satisfies the paper's sensitivity and conservation axioms.
    Channels whose activations sum to zero get weight 0 (the paper leaves that case undefined).
    """

    name = "xgradcam"
    aliases = ("xgrad-cam", "xgrad_cam", "axiomcam")
    description = "activation-weighted gradients, axiom-based (Fu 2020)"

    def channel_weights(self, context: CamContext):
        from keras import ops

        sums = ops.sum(context.activations, axis=(1, 2))
        weighted = ops.sum(context.gradients * context.activations, axis=(1, 2))
        return ops.divide_no_nan(weighted, sums)
