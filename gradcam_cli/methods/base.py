"""The shared method base: every CAM method is a weight formula or a map formula over it.

The explainer (:mod:`gradcam_cli.explainer`) runs the model once per batch, obtains the target layer's
activations ``A`` (batch, h, w, k), the logits and, when the method asks for them, the gradients
``g = d score_c / d A`` of each target class's pre-softmax logit. A method then only says how to
turn ``(A, g)`` into a map, in ``keras.ops`` on the whole batch (no per-image Python loop), so it
runs on every backend :mod:`gradcam_cli.backend` supports.
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
    model-ready batch; ``probe``: the :class:`~gradcam_cli.probe.Probe`; ``method_state``: what
    :meth:`CamMethod.prepare` returned; ``regions``: a segmentation head's fixed (B, H, W, C)
    per-class regions, else None; ``score_sign``: -1.0 for a counterfactual map (the explained score
    is negated, so every derivative of it is too), else 1.0; ``hessian_products``: for methods with
    ``uses_hessian``, ``H A`` (B, h, w, k), the Hessian of the score with respect to the map times
    the map itself.
    """

    activations: Any
    gradients: Any
    targets: Any
    logits: Any
    images: Any
    probe: Any
    method_state: Any = None
    regions: Any = None
    score_sign: float = 1.0
    hessian_products: Any = None

    def class_scores(self, images, replace=None):
        """(N, C) class scores of ``images`` (N = B * n, each image's copies consecutive), with the
        target layer's map replaced by ``replace(map)`` if given; segmentation regions stay fixed."""
        return self.scores_of_logits(self.probe.logits(images, replace=replace))

    def scores_of_logits(self, logits):
        """(N, C) class scores of pre-activation outputs of N = B * n inputs (see ``class_scores``)."""
        from keras import ops

        regions = self.regions
        if regions is not None:
            regions = ops.repeat(regions, logits.shape[0] // regions.shape[0], axis=0)
        return self.probe.head.scores(logits, regions)


INPUTS_PER_PASS = 64
"""Model inputs one extra forward pass of Score-CAM or Ablation-CAM holds by default (images x
channels): the same bound as ``evaluate --copies-per-pass``. A pass of 16 images x 32 channels held
512 inputs, 8.8 GB RSS for MobileNetV2 on 16 photos (issue 27)."""


ROUNDING_BALANCE = 1e-5
"""A map whose channel sum is below this fraction of the sum of its terms' magnitudes is rounding noise
(:meth:`CamMethod.cam_and_balance`): float32 keeps 24 bits (machine epsilon 1.2e-7), and a sum of a few
hundred terms that cancel rounds to about 1e-7 - 1e-6 of their magnitude, so 1e-5 leaves a margin of
ten to a hundred over rounding while a real map, whose positive terms dominate somewhere, stands at
1e-2 - 1. HiResCAM on the tokens entering a pre-norm transformer block measured 1e-8 - 1e-7
(:mod:`gradcam_cli.layers`)."""


class CamMethod:
    """Base class. A method overrides one of, from most to least common:

    - :meth:`channel_weights`: (B, k) weights ``w``; the map is ``ReLU(sum_k w_k A^k)``;
    - :meth:`weighted_activations`: (B, h, w, k) terms whose channel sum is the map (HiResCAM,
      Layer-CAM weigh each position separately);
    - :meth:`cam`: the whole map (Eigen-CAM).

    :meth:`target_scores` says which score is explained (the class's own, unless a method explains
    another, as Finer-CAM); ``uses_hessian`` asks the step for Hessian-vector products as well as
    gradients (ShapleyCAM). ``class_agnostic`` methods give every class the same map, and say so in
    their ``description``; they and gradient-free methods refuse a counterfactual map
    (:meth:`counterfactual_refusal`).

    ``tunables`` names the run options (:data:`gradcam_cli.options.TUNING_FIELDS`) that tune the method
    and the constructor keyword each one sets (``fem_sigmas`` -> ``sigmas``); the others are refused
    for it by :func:`~gradcam_cli.methods.get_method`.

    ``eigen_smooth`` replaces the channel sum by the projection of the weighted activations on
    their first principal component (pytorch-grad-cam's "eigen smooth"), which removes noise.
    ``chunk_size`` and ``max_channels`` bound the perturbation methods' extra forward passes: by
    default a pass holds at most :data:`INPUTS_PER_PASS` model inputs whatever the batch size
    (:meth:`channels_per_pass`); a ``chunk_size`` given sets the channels per pass instead.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    uses_gradients: ClassVar[bool] = True
    supports_eigen_smooth: ClassVar[bool] = True
    makes_saliency: ClassVar[bool] = False
    uses_chunks: ClassVar[bool] = False  # reads ``chunk_size`` (perturbation passes)
    uses_max_channels: ClassVar[bool] = False  # reads ``max_channels``
    uses_hessian: ClassVar[bool] = False  # reads ``CamContext.hessian_products``
    class_agnostic: ClassVar[bool] = False  # the same map whatever the class
    reads_class_weights: ClassVar[bool] = False  # weighs channels by a class's Dense weights (CAM: Head.class_weights)
    tunables: ClassVar[dict[str, str]] = {}  # run option -> constructor keyword, for options that tune it
    single_layer: ClassVar[str | None] = None  # why the method cannot combine several layers, if it cannot
    description: ClassVar[str] = ""

    def __init__(self, eigen_smooth: bool = False, chunk_size: int | None = None, max_channels: int | None = None):
        self.eigen_smooth = eigen_smooth
        self.chunk_size = int(chunk_size) if chunk_size else None
        self.max_channels = max_channels

    def channels_per_pass(self, batch: int) -> int:
        """Channels masked or ablated per extra forward pass: ``chunk_size`` when given, else as many
        as keep the pass within :data:`INPUTS_PER_PASS` model inputs (at least one)."""
        return self.chunk_size or max(1, INPUTS_PER_PASS // max(1, batch))

    @classmethod
    def counterfactual_refusal(cls) -> str | None:
        """Why a counterfactual map (the class score negated, Selvaraju et al. 2017, section 3.3)
        is undefined for this method, or None where it is defined."""
        if cls.class_agnostic:
            return "it is class-agnostic"
        if not cls.uses_gradients:
            return "it is gradient-free"
        return None

    @classmethod
    def several_layers_refusal(cls) -> str | None:
        """Why the method cannot map several target layers at once (:func:`combine_layer_maps`), or None
        where each layer's map is its formula on that layer's activations and gradients of one pass."""
        if cls.single_layer:
            return cls.single_layer
        if cls.uses_hessian:
            return "its Hessian-vector products are taken at one layer"
        if cls.uses_chunks:
            return "its extra forward passes perturb one layer's map"
        return None

    def target_scores(self, logits, targets):
        """(B, T) scores explained, one per target: ``logits`` are the (B, C) class scores (on the
        gradient tape), ``targets`` the (B, T) int32 classes. The class's own score by default."""
        from keras import ops

        return ops.take_along_axis(logits, targets, axis=1)

    def prepare(self, spec, probe) -> Any:
        """Validate the model for this method once, before any image; return static state."""
        return None

    def channel_weights(self, context: CamContext):
        """(B, k) weights, one per channel of the target layer."""
        raise NotImplementedError

    def weighted_activations(self, context: CamContext):
        from keras import ops

        weights = self.channel_weights(context)
        return context.activations * ops.reshape(weights, (-1, 1, 1, weights.shape[-1]))

    def saliency(self, context: CamContext, cam):
        """(B, H, W, C) input-resolution image for methods with ``makes_saliency``."""
        raise NotImplementedError

    def cam(self, context: CamContext):
        """(B, h, w) map: ReLU of the channel sum of :meth:`weighted_activations`."""
        return self.cam_and_balance(context)[0]

    def cam_and_balance(self, context: CamContext):
        """The (B, h, w) map and, for a map that is a channel sum of terms ``T_k = w_k A^k`` (the
        default :meth:`cam`), its (B,) balance: ``max_ij |sum_k T_k| / max_ij sum_k |T_k|``, how
        large the sum is next to its own terms (1 where every term is 0: an empty map, not a
        cancelled one). A balance under :data:`ROUNDING_BALANCE` means the terms cancel to within
        float32 rounding, so the map is rounding noise whatever it looks like once scaled for
        display. None for methods whose map is not such a sum (their own :meth:`cam`)."""
        from keras import ops

        if type(self).cam is not CamMethod.cam:
            return self.cam(context), None
        weighted = self.weighted_activations(context)
        signed = ops.sum(weighted, axis=-1)
        magnitude = ops.max(ops.sum(ops.abs(weighted), axis=-1), axis=(1, 2))
        balance = ops.where(magnitude > 0, ops.divide_no_nan(ops.max(ops.abs(signed), axis=(1, 2)), magnitude), 1.0)
        if self.eigen_smooth:  # a projection, not the sum: its balance is not this one
            return first_component_projection(weighted), None
        return ops.relu(signed), balance


def principal_projection(activations):
    """(B, h, w, k) -> ((B, h w) projections, (B, h w, k) centred rows): each image's positions
    projected on the first principal component of its (h w, k) matrix (centred over positions), by
    a batched SVD. The sign is the SVD routine's, arbitrary: callers fix it."""
    from keras import ops

    _, height, width, channels = activations.shape
    flat = ops.reshape(activations, (-1, height * width, channels))
    centred = flat - ops.mean(flat, axis=1, keepdims=True)
    _, _, rows = ops.svd(centred, full_matrices=False)  # rows of V^T: the first is the first component
    return ops.einsum("bpk,bk->bp", centred, rows[:, 0, :]), centred


def agree_with_mean(projection, centred):
    """``projection`` (B, P) times the sign that makes it correlate positively with the channel mean
    of ``centred`` (B, P, k) (1 where they are uncorrelated)."""
    from keras import ops

    mean_activation = ops.mean(centred, axis=2)
    sign = ops.sign(ops.sum(projection * mean_activation, axis=1, keepdims=True))
    return projection * ops.where(sign == 0, ops.ones_like(sign), sign)


def first_component_projection(activations):
    """(B, h, w, k) -> (B, h, w): each image's positions projected on the first principal component
    of its (h w, k) activation matrix (centred over positions), by a batched SVD.

    The sign of a principal component is arbitrary; it is chosen here so that the map correlates
    positively with the channel-mean activation, so the map highlights what the layer responds to.
    """
    from keras import ops

    projection, centred = principal_projection(activations)
    return ops.reshape(agree_with_mean(projection, centred), (-1, *activations.shape[1:3]))


COMBINE = ("mean", "product")
"""How the maps of several target layers are combined (``combine``): ``mean`` as pytorch-grad-cam does
with a list of target layers, ``product`` as RefineCAM (Domeniconi et al., arXiv 2605.14641)."""


def unit_range(maps):
    """(B, h, w) maps min-max scaled to [0, 1] per image; a flat map becomes zeros, never NaN."""
    from keras import ops

    low = ops.min(maps, axis=(1, 2), keepdims=True)
    high = ops.max(maps, axis=(1, 2), keepdims=True)
    return ops.divide_no_nan(maps - low, high - low)


def combine_layer_maps(maps, combine: str = "mean"):
    """One (B, H, W) map from the (B, h_i, w_i) maps of several layers of one forward pass.

    Each map is resized bilinearly (half-pixel centres) to the finest grid ``(H, W) = (max h_i,
    max w_i)`` (the grids of layers of another aspect, or of a token layer beside a conv layer, are
    stretched over the same picture, as an overlay stretches any map), scaled to [0, 1] per image,
    then averaged (``mean``) or multiplied (``product``); the result is scaled to [0, 1] again.

    Where this differs from pytorch-grad-cam (``BaseCAM.aggregate_multi_layers``, and ``RefineCAM``
    for the product): it resizes every layer's map to the input's size, clipping it at 0 and
    scaling it *before* resizing; here the common grid is the finest layer's (the map stays a
    layer-resolution map that the overlay upsamples like any other), each map is scaled *after*
    resizing, so each spans exactly [0, 1] where they are combined, and a method's signed map (the
    eigen methods) is scaled by its own minimum and maximum, not clipped at 0 first, as a one-layer map
    is for display. A layer whose map is flat counts as zeros: it lowers a mean and empties a product.
    """
    from keras import ops

    height = max(int(m.shape[1]) for m in maps)
    width = max(int(m.shape[2]) for m in maps)
    scaled = []
    for layer_map in maps:
        if tuple(layer_map.shape[1:3]) != (height, width):
            layer_map = ops.image.resize(layer_map[..., None], (height, width), interpolation="bilinear")[..., 0]
        scaled.append(unit_range(layer_map))
    stacked = ops.stack(scaled, axis=0)
    combined = ops.prod(stacked, axis=0) if combine == "product" else ops.mean(stacked, axis=0)
    return unit_range(combined)
