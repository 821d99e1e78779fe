"""Grad-CAM with its per-position term, its weights or its score changed: the element-wise variant,
ShapleyCAM (a second-order term) and Finer-CAM (a score that compares the class with its closest
rivals)."""

from __future__ import annotations

from ..errors import MethodError, param
from .base import CamContext, CamMethod
from .gradcam import GradCAM

FINER_COMPARISONS = 3
"""Finer-CAM's default number of comparison classes (the authors' code compares with 3)."""
FINER_ALPHA = 1.0
"""Finer-CAM's default comparison strength (the authors' default; 0 gives Grad-CAM)."""


class GradCAMElementWise(CamMethod):
    """Element-wise Grad-CAM (pytorch-grad-cam's ``GradCAMElementWise``; no paper of its own):
    ``L = sum_k ReLU(g^k_ij A^k_ij)``.

    HiResCAM sums ``g * A`` over channels and then clips; this clips every channel's term first, so a
    channel that argues against the class at a position cannot cancel one that argues for it there.
    The outer ReLU of the base is then a no-op.
    """

    name = "gradcam-elementwise"
    aliases = ("gradcamelementwise", "elementwise-gradcam")
    description = "ReLU of gradient x activation per position and channel, then summed (HiResCAM variant)"

    def weighted_activations(self, context: CamContext):
        from keras import ops

        return ops.relu(context.gradients * context.activations)


class ShapleyCAM(CamMethod):
    """ShapleyCAM (Cai, "CAMs as Shapley Value-based Explainers", 2025, arXiv:2501.06261).

    Reading CAM as a Shapley value of the channels, a second-order Taylor expansion of the score
    ``y`` around the map ``A`` gives the weights::

        w_k = mean_ij (g - 1/2 H A)^k_ij,     L = ReLU(sum_k w_k A^k)

    where ``H`` is the Hessian of ``y`` with respect to ``A`` and ``H A`` its product with the map
    (:func:`gradcam_cli.backend.tap_hessian_products`: nested tapes on TensorFlow, forward-over-reverse
    on JAX; one extra backward pass per target). Where the model after the layer is piecewise linear
    (ReLU and a linear head) ``H = 0`` almost everywhere and the map equals Grad-CAM's.

    Choice: ``y`` is the class's pre-softmax score, as for every method here; the paper recommends
    its "ReST" target (the logit minus the cross-entropy), which pytorch-grad-cam leaves to the user.
    """

    name = "shapleycam"
    aliases = ("shapley-cam", "shapley_cam")
    uses_hessian = True
    description = "Grad-CAM weights with a second-order (Hessian-vector) term, from Shapley values (Cai 2025)"

    def channel_weights(self, context: CamContext):
        from keras import ops

        return ops.mean(context.gradients - 0.5 * context.hessian_products, axis=(1, 2))


class FinerCAM(GradCAM):
    """Finer-CAM (Zhang et al., "Finer-CAM: Spotting the Difference Reveals Finer Details for Visual
    Explanation", CVPR 2025, arXiv:2501.11309): Grad-CAM of a score that compares the target class
    ``c`` with the classes the model finds most like it, so features they share cancel::

        y = z_c - alpha sum_j p_j z_j,    p_j = softmax over the comparison classes of z_j

    Grad-CAM's weights and map (eq. 1-2 of Selvaraju et al.) are then taken of ``y``.

    Choices, following the authors' code where the paper leaves them open:

    - the comparison classes are the ``comparisons`` (default 3, fewer when the head has fewer other
      classes) classes other than ``c`` whose scores are closest to ``z_c``, ``|z_j - z_c|`` smallest
      (ties to the lower index); :meth:`comparison_classes` returns them;
    - they are weighted by their probabilities renormalised over the comparison set (the softmax of
      their scores alone, which is the same and does not underflow), with ``alpha`` (default 1) the
      comparison strength; ``alpha = 0`` is Grad-CAM;
    - the weights ``p_j`` are held fixed: the map explains the weighted score differences, not how the
      weighting itself moves (the authors' code also differentiates through the softmax);
    - the base method is Grad-CAM (the authors' code accepts any CAM).

    On heads other than a softmax classifier the "scores" are that head's class scores (a sigmoid's
    logits, a segmentation class's summed region scores); a head with one class is refused, and so is a
    detector (its scores are those of the explained boxes, not of classes).
    """

    name = "finercam"
    aliases = ("finer-cam", "finer_cam")
    description = "Grad-CAM of the class's score minus that of its most similar classes: finer details (Zhang 2025)"
    tunables = {"finer_comparisons": "comparisons", "finer_alpha": "alpha"}

    def __init__(self, comparisons: int = FINER_COMPARISONS, alpha: float = FINER_ALPHA, **options):
        super().__init__(**options)
        if int(comparisons) < 1:
            raise MethodError(f"Finer-CAM compares with at least one class, not {comparisons}.")
        if not 0.0 <= float(alpha) <= 1.0:
            raise MethodError(f"Finer-CAM's comparison strength alpha lies in [0, 1] (0: Grad-CAM), not {alpha}.")
        self.comparisons = int(comparisons)
        self.alpha = float(alpha)

    def prepare(self, spec, probe):
        head = probe.head
        if head.takes_boxes:  # its scores are per explained box: comparing them would compare boxes, not classes
            raise MethodError(f"Finer-CAM compares a class's score with those of other classes, and this model's "
                              f"head is {head.describe()}, whose score is one box's; use {param('method', 'gradcam')}.")
        if head.num_classes < 2:
            raise MethodError(f"Finer-CAM compares a class's score with those of other classes, and this model's "
                              f"head, {head.describe()}, has one class; use {param('method', 'gradcam')}.")
        return None

    def comparison_classes(self, logits, targets):
        """``(classes, weights)``, each (B, T, N): for each image and target, the N classes other than
        the target whose scores are closest to its score, and their renormalised probabilities."""
        from keras import ops

        classes = logits.shape[-1]
        count = min(self.comparisons, classes - 1)
        own = ops.take_along_axis(logits, targets, axis=1)  # (B, T)
        distance = ops.abs(logits[:, None, :] - own[:, :, None])  # (B, T, C)
        distance = ops.where(ops.one_hot(targets, classes) > 0, ops.full_like(distance, float("inf")), distance)
        picked = ops.cast(ops.top_k(-distance, k=count)[1], "int32")
        expanded = ops.broadcast_to(logits[:, None, :], (*targets.shape, classes))
        return picked, ops.softmax(ops.take_along_axis(expanded, picked, axis=2), axis=-1)

    def target_scores(self, logits, targets):
        from keras import ops

        picked, weights = self.comparison_classes(ops.stop_gradient(logits), targets)
        expanded = ops.broadcast_to(logits[:, None, :], (*targets.shape, logits.shape[-1]))
        others = ops.take_along_axis(expanded, picked, axis=2)
        return ops.take_along_axis(logits, targets, axis=1) - self.alpha * ops.sum(weights * others, axis=-1)
