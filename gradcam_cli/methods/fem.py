"""FEM, the Feature Explanation Method: a map from the statistics of the activations alone."""

from __future__ import annotations

from .base import CamContext, CamMethod

FEM_SIGMAS = 2.0
"""FEM's threshold, in standard deviations above a channel's mean (the paper's k-sigma rule, k = 2)."""


class FEM(CamMethod):
    """FEM (Fuad, Martin, Giot, Bourqui, Benois-Pineau & Zemmari, "Features understanding in 3D CNNs
    for actions recognition in video", IPTA 2020; see also Bourroux et al., ICPRAI 2022, multi-layered
    FEM).

    Each channel keeps the positions where it responds unusually strongly, by the k-sigma rule, and
    the masks are summed weighted by the channels' mean activations::

        M^k_ij = 1 if A^k_ij > mu_k + K sigma_k else 0,     w_k = mu_k = mean_ij A^k_ij,
        L = sum_k w_k M^k

    with ``mu_k``, ``sigma_k`` the mean and (population) standard deviation of channel ``k`` over
    positions and ``K`` = ``sigmas`` (default 2). Class-agnostic and gradient-free.

    Choices: this is the authors' form (their code and Xplique's), a sum of *binary masks*, not
    pytorch-grad-cam's, which weighs the activations ``A^k`` by the share of positions above the
    threshold; the threshold is strict (``>``), as in the authors' code, so a constant channel marks
    nothing; no ReLU (with non-negative activations the map is non-negative; the authors divide by
    its maximum, which the display's min-max normalisation does).
    """

    name = "fem"
    aliases = ("feature-explanation-method",)
    uses_gradients = False
    supports_eigen_smooth = False
    class_agnostic = True
    description = "class-agnostic, gradient-free: channels' k-sigma masks weighted by their mean (Fuad 2020)"
    tunables = {"fem_sigmas": "sigmas"}

    def __init__(self, sigmas: float = FEM_SIGMAS, **options):
        super().__init__(**options)
        self.sigmas = float(sigmas)

    def cam(self, context: CamContext):
        from keras import ops

        activations = context.activations
        mean = ops.mean(activations, axis=(1, 2), keepdims=True)
        deviation = ops.sqrt(ops.mean(ops.square(activations - mean), axis=(1, 2), keepdims=True))
        masks = ops.cast(activations > mean + self.sigmas * deviation, activations.dtype)
        return ops.sum(mean * masks, axis=-1)
