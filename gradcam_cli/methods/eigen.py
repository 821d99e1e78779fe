"""Maps made of a first principal component: of the gradient-weighted activations (Eigen-Grad-CAM,
Seg-Eigen-CAM) or of the activations in a kernel's feature space (KPCA-CAM). Eigen-CAM itself, of the
plain activations, is in :mod:`.perturbation`."""

from __future__ import annotations

from ..errors import MethodError, param
from .base import (
    CamContext,
    CamMethod,
    agree_with_mean,
    first_component_projection,
    principal_projection,
)

KPCA_KERNELS = ("sigmoid", "rbf", "linear")
KPCA_MAX_POSITIONS = 4096
"""KPCA-CAM decomposes an (h w) x (h w) kernel matrix per image: 64 MB and about 10^11 operations at
4096 positions (64 x 64), so larger maps are refused."""


class EigenGradCAM(CamMethod):
    """Eigen-Grad-CAM (pytorch-grad-cam's ``EigenGradCAM``, after Eigen-CAM, Muhammad & Yeasin, IJCNN
    2020): the first principal component of the gradient-weighted activations ``g * A`` (positions as
    samples, centred), so it is class-specific where Eigen-CAM is not.

    It is HiResCAM's per-position terms with ``--smooth eigen``. The component's sign is chosen so
    that the map correlates positively with the channel mean of ``g * A`` (HiResCAM's map before its
    ReLU); peers leave the sign to the SVD routine and then clip. No ReLU, as Eigen-CAM.
    """

    name = "eigengradcam"
    aliases = ("eigen-grad-cam", "eigen_grad_cam")
    supports_eigen_smooth = False
    description = "first principal component of gradient x activation (class-specific Eigen-CAM)"

    def cam(self, context: CamContext):
        return first_component_projection(context.gradients * context.activations)


class SegEigenCAM(CamMethod):
    """Seg-Eigen-CAM (Chung & Ying, "Seg-Eigen-CAM: Eigen-Value-Based Visual Explanations for Semantic
    Segmentation Models", Applied Sciences 15(13):7562, 2025).

    The first principal component (positions as samples, centred, eq. 11-12) of ``|g| * A`` (eq. 10:
    absolute gradients, so that positions pushing the score either way count), with the paper's sign
    correction (eq. 13): the projection is negated where its most negative value is larger in
    magnitude than its largest, so the strongest response is positive. No ReLU (the display's
    min-max normalisation keeps the whole range).

    Made for segmentation heads, where ``g`` is the gradient of the class's score summed over its
    region (``--region``). On a classifier it runs the same formula with the class logit's gradient;
    for a conv -> GAP -> Dense head that gradient is ``|W_kc| / (h w)`` at every position, so the map
    is Eigen-CAM of the channels rescaled by the class's absolute Dense weights.
    A counterfactual map is refused: the absolute value removes the sign it would flip.
    """

    name = "segeigencam"
    aliases = ("seg-eigen-cam", "seg_eigen_cam")
    supports_eigen_smooth = False
    description = "segmentation: first principal component of |gradient| x activation, sign-corrected (Chung 2025)"

    @classmethod
    def counterfactual_refusal(cls) -> str | None:
        return "it weighs the activations by |gradients|, which a negation leaves unchanged"

    def cam(self, context: CamContext):
        from keras import ops

        activations = context.activations
        projection, _ = principal_projection(ops.abs(context.gradients) * activations)
        low = ops.min(projection, axis=1, keepdims=True)
        high = ops.max(projection, axis=1, keepdims=True)
        sign = ops.where(ops.abs(low) > ops.abs(high), -ops.ones_like(low), ops.ones_like(low))
        return ops.reshape(projection * sign, (-1, *activations.shape[1:3]))


class KPCACAM(CamMethod):
    """KPCA-CAM (Karmani et al., "KPCA-CAM: Visual Explainability of Deep Computer Vision Models using
    Kernel PCA", 2024, arXiv:2410.00267): Eigen-CAM with kernel PCA.

    Per image, the activations ``X`` (h w positions x k channels) are centred over positions; the
    kernel matrix ``K_pq = kappa(x_p, x_q)`` is centred in feature space,
    ``Kc = K - 1K - K1 + 1K1`` (``1`` the matrix of ``1 / (h w)``); its top eigenpair ``(lambda, a)``
    (``keras.ops.eigh``) gives each position's projection on the first kernel principal component,
    ``sqrt(lambda) a``. Class-agnostic and gradient-free.

    Kernels (``kernel``): ``sigmoid`` (the default, as pytorch-grad-cam's, from scikit-learn's
    ``KernelPCA``) ``tanh(gamma <x, y> + coef0)``; ``rbf`` ``exp(-gamma |x - y|^2)``; ``linear``
    ``<x, y>``, which is Eigen-CAM exactly. ``gamma`` defaults to ``1 / k`` (k channels) and ``coef0``
    to 1, scikit-learn's defaults. The sign of a component is arbitrary; as for Eigen-CAM it is
    chosen so that the map correlates positively with the mean activation. No ReLU. Layers with more
    than :data:`KPCA_MAX_POSITIONS` positions are refused.
    """

    name = "kpcacam"
    aliases = ("kpca-cam", "kpca_cam")
    uses_gradients = False
    supports_eigen_smooth = False
    class_agnostic = True
    description = "class-agnostic Eigen-CAM with kernel PCA (sigmoid kernel), gradient-free (Karmani 2024)"
    tunables = {"kpca_kernel": "kernel", "kpca_gamma": "gamma"}

    def __init__(self, kernel: str = "sigmoid", gamma: float | None = None, coef0: float = 1.0, **options):
        super().__init__(**options)
        if kernel not in KPCA_KERNELS:
            raise MethodError(f"unknown KPCA-CAM kernel '{kernel}': use {', '.join(KPCA_KERNELS)}.")
        if gamma is not None and not float(gamma) > 0:
            raise MethodError(f"KPCA-CAM's kernel gamma must be positive, not {gamma}.")
        if gamma is not None and kernel == "linear":
            raise MethodError("KPCA-CAM's linear kernel has no gamma: leave it out, or pick the sigmoid or rbf kernel.")
        self.kernel, self.gamma, self.coef0 = kernel, gamma, float(coef0)

    def prepare(self, spec, probe):
        shape = probe.target.output_shape or ()
        if probe.grid is not None:
            positions = probe.grid[1] * probe.grid[2]
        elif len(shape) == 4 and shape[1] and shape[2]:
            positions = int(shape[1]) * int(shape[2])
        else:
            return None
        if positions > KPCA_MAX_POSITIONS:
            raise MethodError(f"KPCA-CAM decomposes a positions x positions matrix per image, and layer "
                              f"'{probe.target.path}' has {positions} positions (at most {KPCA_MAX_POSITIONS}); "
                              f"pick a deeper layer with {param('layer')}.")
        return None

    def cam(self, context: CamContext):
        from keras import ops

        activations = context.activations
        _, height, width, channels = activations.shape
        flat = ops.reshape(activations, (-1, height * width, channels))
        centred = flat - ops.mean(flat, axis=1, keepdims=True)
        gram = ops.einsum("bpk,bqk->bpq", centred, centred)
        gamma = self.gamma if self.gamma is not None else 1.0 / channels
        if self.kernel == "sigmoid":
            kernel = ops.tanh(gamma * gram + self.coef0)
        elif self.kernel == "rbf":
            norms = ops.sum(ops.square(centred), axis=-1)
            kernel = ops.exp(-gamma * ops.maximum(norms[:, :, None] + norms[:, None, :] - 2.0 * gram, 0.0))
        else:
            kernel = gram
        kernel = (kernel - ops.mean(kernel, axis=1, keepdims=True) - ops.mean(kernel, axis=2, keepdims=True)
                  + ops.mean(kernel, axis=(1, 2), keepdims=True))
        values, vectors = ops.eigh(kernel)  # ascending: the last pair is the first component
        projection = vectors[:, :, -1] * ops.sqrt(ops.maximum(values[:, -1:], 0.0))
        return ops.reshape(agree_with_mean(projection, centred), (-1, height, width))
