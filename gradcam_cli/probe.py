"""The probe: (activations, logits) in one forward pass, by intercepting layer calls.

The probe never rebuilds or edits the user's graph: while the model runs, the target layer's
``call`` is intercepted on the instance to keep a handle on its output tensor (which stays the
tensor the rest of the model consumes, so gradients reach it), and the classifier head's input is
intercepted the same way to recompute the pre-softmax logits. This works for layers nested at any
depth, where a functional sub-model would raise "Graph disconnected".

A token sequence is reshaped to its patch grid here (:func:`token_grid`); :mod:`gradcam_cli.layers`
says where the tap sits in a transformer.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from .errors import LayerNotFound, UnsupportedModel, param
from .graph import PATH_SEP, LayerInfo, has_graph, is_model, model_input_size, model_outputs
from .hooks import (
    bypass_activation,
    float32_compute,
    intercept,
    intercept_input,
    low_precision_layers,
)

MAX_PREFIX_TOKENS = 5  # class, distillation and up to 4 register tokens before the patches


def token_grid(tokens: int, input_size: tuple[int | None, int | None] | None) -> tuple[int, int, int] | None:
    """(prefix, h, w): the fewest leading tokens to drop so that the rest fill an ``h x w`` grid with
    the input's aspect ratio (``h * W == w * H``; square when the input size is unknown)."""
    height, width = input_size or (None, None)
    if not height or not width:
        height = width = 1
    for prefix in range(0, MAX_PREFIX_TOKENS + 1):
        count = tokens - prefix
        if count < 1:
            break
        rows = round((count * height / width) ** 0.5)
        if rows > 0 and count % rows == 0 and rows * width == (count // rows) * height:
            return prefix, rows, count // rows
    return None


class Probe:
    """``probe(images) -> (activations, logits)`` for one model and target layer.

    ``activations``: the target's (B, h, w, k) map (tokens reshaped to their grid); ``logits``: the
    explained output's pre-activation values (B, C), or (B, H, W, C) for segmentation (see
    :mod:`gradcam_cli.heads` for the per-class scores made from them).

    ``watch`` is called on the activations as soon as they exist (a TensorFlow ``GradientTape``'s,
    see :mod:`gradcam_cli.backend`). ``replace(activations) -> activations`` substitutes the
    target's map inside the full forward pass (Ablation-CAM; on JAX, the map plus the ``delta`` the
    gradients are taken of), wherever in the model the layer sits.
    """

    def __init__(self, model, target: LayerInfo, head=None):
        if head is None:
            from .heads import detect_head

            head = detect_head(model)
        self.model = model
        self.target = target
        self.head = head
        self.grid = None
        self._tail = None
        self._low_precision = low_precision_layers(model)  # computed in float32 here (hooks.float32_compute)
        if target.is_tokens:
            size = model_input_size(model)
            self.grid = token_grid(target.output_shape[1], size)
            if self.grid is None:
                raise UnsupportedModel(
                    f"layer '{target.path}' has {target.output_shape[1]} tokens, which form no patch "
                    f"grid for the model's input even after dropping up to {MAX_PREFIX_TOKENS} prefix "
                    f"tokens; pick another layer with {param('layer')}."
                )

    def __call__(self, images, watch=None, replace=None):
        return self._run(images, watch=watch, keep_activations=True, replace=replace)

    def logits(self, images, replace=None):
        """Pre-activation outputs only (the extra forward passes of perturbation methods)."""
        return self._run(images, watch=None, keep_activations=replace is not None, replace=replace)[1]

    def to_map(self, tapped):
        """(map (B, h, w, k), rebuild(map) -> tensor the model consumes) for the tapped tensor."""
        from keras import ops

        if self.grid is None:
            return tapped, lambda spatial: spatial
        prefix, height, width = self.grid
        channels = tapped.shape[-1]
        spatial = ops.reshape(tapped[:, prefix:], (-1, height, width, channels))  # rows first

        def rebuild(new_spatial):
            tokens = ops.reshape(new_spatial, (-1, height * width, channels))
            return ops.concatenate([tapped[:, :prefix], tokens], axis=1) if prefix else tokens

        return spatial, rebuild

    def tail(self):
        """``tail(activations) -> logits``: the model after the target layer as a sub-model, or None
        where that part reads other tensors too (a skip connection around the layer, a layer inside
        a nested model, the tokens entering a block), for a model without a graph, and for a
        mixed-precision model (a sub-model casts its input to the float16 of the symbolic tensor it
        starts from). Where it exists it spares Ablation-CAM the forward passes through the layers
        before the target."""
        if self._tail is None:
            import keras

            if (PATH_SEP in self.target.path or is_model(self.target.layer) or self.target.tap != "output"
                    or self.grid is not None or not has_graph(self.model) or self._low_precision
                    or self.head.takes_boxes):  # a detector's score reads two outputs
                return None
            end = model_outputs(self.model)[self.head.output_index]
            try:
                sub_model = keras.Model(self.target.layer.output, end)
            except (ValueError, AttributeError, TypeError):
                return None
            self._tail = lambda activations: self._run(activations, None, False, model=sub_model)[1]
        return self._tail

    def _run(self, images, watch, keep_activations: bool, replace=None, model=None, also=()):
        """``also``: (target, tap) pairs of other layers tapped in the same pass (:class:`LayersProbe`)."""
        import keras

        captured: dict[str, Any] = {}

        def tap(tensor):
            spatial, rebuild = self.to_map(tensor)
            if replace is not None:
                spatial = replace(spatial)
            if watch is not None:
                watch(spatial)
            captured["activations"] = spatial
            return rebuild(spatial)

        def keep_head_input(args, output):
            captured["head_input"] = args[0]
            return output

        def keep_head_output(args, output):
            captured["head_input"] = output
            return output

        with ExitStack() as stack:
            if self._low_precision:
                stack.enter_context(float32_compute(self._low_precision))
            if keep_activations:
                stack.enter_context(_intercept_target(self.target, tap))
            for target, other_tap in also:
                stack.enter_context(_intercept_target(target, other_tap))
            if self.head.source == "activation":
                stack.enter_context(bypass_activation(self.head.layer, lambda pre: captured.update(head_input=pre)))
            elif self.head.source == "input":
                stack.enter_context(intercept(self.head.layer, keep_head_input))
            elif self.head.source == "layer":
                stack.enter_context(intercept(self.head.layer, keep_head_output))
            output = (model or self.model)(images, training=False)
        if keep_activations and "activations" not in captured:
            raise LayerNotFound(f"layer '{self.target.path}' was not run by the model's forward pass.")
        if isinstance(output, (list, tuple, dict)) and model is None:
            output = self.head.select_output(keras.tree.flatten(output))
        return captured.get("activations"), self._logits(captured.get("head_input"), output)

    def _logits(self, head_input, output):
        from keras import ops

        if self.head.source != "output" and head_input is not None:
            return ops.cast(head_input, "float32")
        return ops.cast(output, "float32")


def _intercept_target(target: LayerInfo, tap):
    """Call ``tap`` on what the model reads at ``target`` (a layer's output, or the tokens entering a
    transformer block) and give the model what it returns."""
    if target.tap == "input":
        return intercept_input(target.layer, tap)
    return intercept(target.layer, lambda args, output: tap(output))


class LayersProbe:
    """Several target layers tapped in one forward pass: ``probe(images, watch, replace) -> (maps,
    logits)``, ``maps`` one (B, h_i, w_i, k_i) map per probe of ``probes`` (one :class:`Probe` per
    layer, in the order the layers were given), whatever order the model runs them in.

    ``watch(map)`` and ``replace(index, map)`` are called as
    :func:`gradcam_cli.backend.taps_gradients` asks (``index``: the layer's position in ``probes``).
    ``logits(images)`` and the attributes the methods read (``model``, ``head``) are the first
    probe's.
    """

    def __init__(self, probes: list[Probe]):
        self.probes = list(probes)
        first = self.probes[0]
        self.model, self.head, self.target = first.model, first.head, first.target

    def __call__(self, images, watch=None, replace=None):
        maps: list[Any] = [None] * len(self.probes)

        def tapper(index: int, probe: Probe):
            def tap(tensor):
                spatial, rebuild = probe.to_map(tensor)
                if replace is not None:
                    spatial = replace(index, spatial)
                if watch is not None:
                    watch(spatial)
                maps[index] = spatial
                return rebuild(spatial)
            return tap

        first = self.probes[0]
        _, logits = first._run(images, None, keep_activations=False,
                               also=[(probe.target, tapper(i, probe)) for i, probe in enumerate(self.probes)])
        missing = [probe.target.path for probe, tapped in zip(self.probes, maps, strict=True) if tapped is None]
        if missing:
            raise LayerNotFound(f"layer '{missing[0]}' was not run by the model's forward pass.")
        return maps, logits

    def logits(self, images, replace=None):
        return self.probes[0].logits(images, replace=replace)
