"""FullGrad: the input gradient and every bias's gradient, at the input's resolution."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

from .. import backend
from ..errors import MethodError, param
from ..hooks import intercept
from .base import CamContext, CamMethod

BIASED_LAYERS = ("Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                 "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D")
"""The layers whose bias FullGrad reads: each adds ``bias`` (one per output channel) to its output
before its own activation."""
BIAS_NAMES = ("bias", "beta")  # variables of other layers that act as a bias: such a layer is refused


def biased_layers(model) -> tuple[list, list[str]]:
    """``(readable, unreadable)`` over every layer of ``model`` at any depth: ``readable`` holds
    ``(layer, kind)`` with kind 'output' (a bias before the layer's activation) or 'batchnorm';
    ``unreadable`` names the layers with a bias FullGrad cannot read."""
    import keras

    kinds = tuple(getattr(keras.layers, name) for name in BIASED_LAYERS if hasattr(keras.layers, name))
    readable, unreadable = [], []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, kinds):
            if getattr(layer, "use_bias", False) and getattr(layer, "activation", None) is not None:
                readable.append((layer, "output"))
            elif getattr(layer, "use_bias", False):
                unreadable.append(f"{layer.name} (no activation attribute)")
        elif isinstance(layer, keras.layers.BatchNormalization):
            rank = getattr(getattr(layer, "input_spec", None), "ndim", None)
            if layer.axis == -1 or (rank is not None and layer.axis == rank - 1):
                readable.append((layer, "batchnorm"))
            else:
                unreadable.append(f"{layer.name} (BatchNormalization over axis {layer.axis})")
        elif not isinstance(layer, keras.Model) and _own_bias(layer):
            unreadable.append(f"{layer.name} ({type(layer).__name__})")
    return readable, unreadable


def _own_bias(layer) -> bool:
    inner = {id(weight) for sub in layer._flatten_layers(include_self=False, recursive=True) for weight in sub.weights}
    return any(weight.name in BIAS_NAMES for weight in layer.weights if id(weight) not in inner)


def _effective_bias(layer, kind):
    """A layer's bias as a (channels,) float32 tensor; BatchNormalization's is
    ``beta - moving_mean * gamma / sqrt(moving_variance + epsilon)`` (inference mode)."""
    from keras import ops

    if kind == "output":
        return ops.cast(layer.bias, "float32")
    mean = ops.cast(layer.moving_mean, "float32")
    scale = ops.rsqrt(ops.cast(layer.moving_variance, "float32") + layer.epsilon)
    if layer.scale:
        scale = scale * ops.cast(layer.gamma, "float32")
    bias = -mean * scale
    return bias + ops.cast(layer.beta, "float32") if layer.center else bias


@contextmanager
def _tap_before_activation(layer, tap):
    """Run ``layer`` with ``tap`` applied to its pre-activation output (where its bias was added)."""
    activation = layer.activation
    object.__setattr__(layer, "activation", lambda pre_activation: activation(tap(pre_activation)))
    try:
        yield
    finally:
        object.__setattr__(layer, "activation", activation)


class FullGrad(CamMethod):
    """FullGrad (Srinivas & Fleuret, "Full-Gradient Representation for Neural Network Visualization",
    NeurIPS 2019, eq. 5-6)::

        S(x) = psi(grad_x y * x) + sum_l psi(grad_{z_l} y * b_l)

    ``x`` is the model-ready input, ``z_l`` the output of layer ``l`` where its bias ``b_l`` is added
    (before the layer's activation), ``y`` the class's pre-softmax score. ``psi`` is the authors'
    post-processing: the absolute value, min-max normalised per image over the whole (h, w, channels)
    tensor (a flat tensor gives zeros; the authors divide by ``max + 1e-6``), summed over channels and
    upsampled bilinearly to the input size (``keras.ops.image.resize``, half-pixel centres; the authors
    align corners). The map is at the input's resolution and does not read the target layer.

    The gradients at the input and at every bias come from one forward and one backward pass per
    target (:func:`gradcam_cli.backend.taps_gradients`). Which biases are summed, at any depth
    (nested models and layers inside custom layers included):

    - the ``bias`` of every convolution (plain, transposed, depthwise, separable) and Dense layer that
      has one; a layer without one adds nothing;
    - every BatchNormalization's effective bias, ``beta - mean * gamma / sqrt(var + eps)``, from its
      moving statistics (channels-last only);
    - a bias whose layer output has no (h, w) grid (a Dense layer on pooled features, the classifier
      itself) is the same at every position and is left out of the map, as in the authors' code;
    - any other layer with a ``bias`` or ``beta`` variable (LayerNormalization, EinsumDense,
      attention, custom layers) is refused with one line naming it: its share of the decomposition
      cannot be read, and the sum would silently be incomplete;
    - implicit biases (a Normalization or Rescaling layer's offset, the curvature of non
      piecewise-linear activations) are outside the decomposition, as in the paper.

    A counterfactual map is refused: every term is an absolute value, so a negated score gives the
    same map.
    """

    name = "fullgrad"
    aliases = ("full-grad", "full_grad")
    uses_gradients = False  # it takes its own gradients, at the input and the biases, not at the target layer
    supports_eigen_smooth = False
    description = "input gradient x input plus every bias x its gradient, at input resolution (Srinivas 2019)"
    single_layer = "it reads its own layers (the input and every bias), not the target layer"

    @classmethod
    def counterfactual_refusal(cls) -> str | None:
        return "it sums absolute values, which a negated score leaves unchanged"

    def prepare(self, spec, probe):
        readable, unreadable = biased_layers(probe.model)
        if unreadable:
            shown = ", ".join(unreadable[:4]) + (f" and {len(unreadable) - 4} more" if len(unreadable) > 4 else "")
            raise MethodError(f"FullGrad reads the biases of convolution, Dense and BatchNormalization layers, and "
                              f"cannot read those of {shown}, so its sum would be incomplete; use "
                              f"{param('method', 'gradcam')}.")
        return readable

    def cam(self, context: CamContext):
        from keras import ops

        probe, targets = context.probe, context.targets
        head = probe.head
        # where the probe itself bypasses the head layer's activation, the logits it returns are that
        # layer's pre-activation output: they are tapped instead of the layer
        logits_layer = head.layer if head.source == "activation" else None
        tapped_layers = [(layer, kind) for layer, kind in context.method_state if layer is not logits_layer]
        logits_bias = next(((layer, kind) for layer, kind in context.method_state if layer is logits_layer), None)
        sources: list = []  # per tap: the (layer, kind) whose bias it carries, None for the input

        def run(watch, replace):
            taps = []
            sources.clear()

            def tap(tensor, source):
                if replace is not None:
                    tensor = replace(len(taps), tensor)
                if watch is not None:
                    watch(tensor)
                taps.append(tensor)
                sources.append(source)
                return tensor

            images = tap(context.images, None)
            with ExitStack() as stack:
                for layer, kind in tapped_layers:
                    source = (layer, kind)
                    if kind == "output":
                        stack.enter_context(_tap_before_activation(layer, lambda z, s=source: tap(z, s)))
                    else:
                        stack.enter_context(intercept(layer, lambda args, output, s=source: tap(output, s)))
                raw = probe.logits(images)
            if logits_bias is not None:
                raw = tap(raw, logits_bias)
            scores = self.target_scores(context.scores_of_logits(raw), ops.reshape(targets, (-1, 1)))
            return taps, scores

        taps, gradients = backend.taps_gradients(run, 1)
        size = tuple(context.images.shape[1:3])
        saliency = _post_process(ops.cast(gradients[0][0], "float32") * ops.cast(taps[0], "float32"), size)
        for tapped, gradient, source in zip(taps[1:], gradients[0][1:], sources[1:], strict=True):
            if len(tapped.shape) == 4:  # a grid of positions
                saliency = saliency + _post_process(ops.cast(gradient, "float32") * _effective_bias(*source), size)
        return saliency


def _post_process(term, size):
    """The authors' psi: |term| min-max normalised per image over (h, w, channels), summed over
    channels, resized to ``size``: (B, H, W)."""
    from keras import ops

    magnitude = ops.abs(term)
    low = ops.min(magnitude, axis=(1, 2, 3), keepdims=True)
    high = ops.max(magnitude, axis=(1, 2, 3), keepdims=True)
    summed = ops.sum(ops.divide_no_nan(magnitude - low, high - low), axis=-1, keepdims=True)
    if tuple(summed.shape[1:3]) != size:
        summed = ops.image.resize(summed, size, interpolation="bilinear")
    return summed[..., 0]
