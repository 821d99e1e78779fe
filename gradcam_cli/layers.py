"""Target-layer search and the probe that reads (activations, logits) in one forward pass.

Layer choice follows a rule on output shapes rather than layer types (type checks break on Keras 3,
where SeparableConv2D no longer subclasses the private conv base): walking back from the output,
the last layer whose output is rank 4 ``(batch, h, w, c)`` with ``h * w > 1`` and which is not a
pooling layer, looking inside nested models. torchcam's locate-candidate-layer reads output shapes
in the same spirit.

The probe never rebuilds or edits the user's graph: while the model runs, the target layer's
``call`` is intercepted on the instance to keep a handle on its output tensor (which stays the
tensor the rest of the model consumes, so gradients reach it), and the classifier head's input is
intercepted the same way to recompute the pre-softmax logits. This works for layers nested at any
depth, where a functional sub-model would raise "Graph disconnected".

Vision Transformers have no spatial map but a token sequence ``(batch, prefix + h * w, d)``. The tap
there is the tokens *entering* the last transformer block: with class-token pooling the final patch
tokens never reach the output, so their gradients are zero, while the tokens entering the last block
reach the class token through its attention (pytorch-grad-cam's ViT recipe taps the same place, the
last block's first norm). A transformer block is any layer holding an attention layer
(``MultiHeadAttention``, a class named ``...Attention``) among its own sub-layers, found also inside
layers such as keras-hub's encoders, which are not graph nodes. The prefix tokens (class,
distillation, registers) are dropped and the rest reshaped row by row to the patch grid, whose shape
follows the input's aspect ratio (:func:`token_grid`); a count that forms no grid is an error.
Methods see a ``(batch, h, w, d)`` map and never know it came from tokens.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from .errors import LayerNotFound, UnsupportedModel

PATH_SEP = "/"


MAX_PREFIX_TOKENS = 5  # class, distillation and up to 4 register tokens before the patches


@dataclass(frozen=True)
class LayerInfo:
    """A target: ``tap`` 'output' reads the layer's output; 'input' (transformer blocks) the tokens
    entering it. ``output_shape`` is the shape of the tapped tensor."""

    path: str  # "resnet50/conv5_block3_out" for nested layers
    layer: Any
    output_shape: tuple | None
    tap: str = "output"

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def is_tokens(self) -> bool:
        shape = self.output_shape
        return shape is not None and len(shape) == 3 and (shape[1] is None or shape[1] > 1)

    def shape_text(self) -> str:
        """``7x7x512`` for a map, ``17x64 tokens in`` for the tokens entering a block."""
        shape = "x".join("?" if d is None else str(d) for d in (self.output_shape or ())[1:]) or "-"
        if self.tap == "input":
            return f"{shape} tokens in"
        return f"{shape} tokens" if self.is_tokens else shape

    @property
    def is_spatial(self) -> bool:
        shape = self.output_shape
        if shape is None or len(shape) != 4:
            return False
        height, width = shape[1], shape[2]
        return height is None or width is None or height * width > 1


def _output_shape(layer) -> tuple | None:
    try:
        output = layer.output
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(output, (list, tuple)) or not hasattr(output, "shape"):
        return None
    return tuple(output.shape)


def _is_model(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def _is_attention(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.MultiHeadAttention) or type(layer).__name__.endswith("Attention")


def _sublayers(layer) -> list:
    """A layer's own tracked sub-layers (one level), in the order they were created."""
    try:
        return list(layer._flatten_layers(include_self=False, recursive=False))
    except (AttributeError, TypeError):
        return []


def _blocks_inside(layer, prefix: str) -> Iterator[tuple[str, Any]]:
    """(path, layer) of the transformer blocks among ``layer``'s sub-layers, at any depth."""
    for sub in _sublayers(layer):
        path = f"{prefix}{sub.name}"
        if _is_model(sub):
            continue
        if any(_is_attention(inner) for inner in _sublayers(sub)):
            yield path, sub
        else:
            yield from _blocks_inside(sub, path + PATH_SEP)


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


def _input_size(model) -> tuple[int | None, int | None]:
    shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else ()
    return (shape[1], shape[2]) if len(shape) == 4 else (None, None)


def _traced_input_shapes(model, taps: list[tuple[str, Any]]) -> dict[int, tuple]:
    """Shapes of the tensors entering each tapped layer, from one forward pass on a zero image
    (sub-layers of a layer have no symbolic output to read)."""
    import numpy as np

    shapes: dict[int, tuple] = {}
    if not taps:
        return shapes
    height, width = _input_size(model)
    channels = model.inputs[0].shape[-1] or 3
    zeros = np.zeros((1, height or 224, width or 224, channels), np.float32)

    def keeper(layer):
        def keep(tensor):
            shapes[id(layer)] = (None, *tuple(tensor.shape)[1:])
            return tensor
        return keep

    try:
        with ExitStack() as stack:
            for _, layer in taps:
                stack.enter_context(intercept_input(layer, keeper(layer)))
            model(zeros, training=False)
    except Exception:  # a model that cannot run on a blank image: no token taps, shapes rule only
        return {}
    return shapes


def transformer_taps(model) -> list[LayerInfo]:
    """The tokens entering each transformer block, in forward order: blocks found among the
    sub-layers of graph layers, and graph-level attention layers (their query input)."""
    found: list[tuple[str, Any]] = []
    for info in iter_layers(model):
        if _is_attention(info.layer) or any(_is_attention(inner) for inner in _sublayers(info.layer)):
            found.append((info.path, info.layer))
        else:
            found.extend(_blocks_inside(info.layer, info.path + PATH_SEP))
    shapes = _traced_input_shapes(model, found)
    return [LayerInfo(path, layer, shapes.get(id(layer)), tap="input") for path, layer in found
            if id(layer) in shapes and len(shapes[id(layer)]) == 3]


def _is_pooling(layer) -> bool:
    return "pool" in type(layer).__name__.lower()


def _has_conv_kernel(layer) -> bool:
    """A layer with a spatial kernel (Conv2D, SeparableConv2D, DepthwiseConv2D, ...)."""
    return any(len(weight.shape) == 4 for weight in getattr(layer, "weights", []))


def iter_layers(model, prefix: str = "") -> Iterator[LayerInfo]:
    """All layers in graph order, nested models expanded in place (the models themselves omitted)."""
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if _is_model(layer):
            yield from iter_layers(layer, prefix=path + PATH_SEP)
        else:
            yield LayerInfo(path, layer, _output_shape(layer))


def nested_models(model, prefix: str = "") -> Iterator[LayerInfo]:
    """The models nested in ``model`` (a backbone inside a Sequential ...), at any depth, as layers."""
    for layer in model.layers:
        if _is_model(layer):
            path = f"{prefix}{layer.name}"
            yield LayerInfo(path, layer, _output_shape(layer))
            yield from nested_models(layer, prefix=path + PATH_SEP)


def candidate_layers(model) -> list[LayerInfo]:
    """Layers that may serve as a CAM target (spatial, not pooling; token layers whose tokens form
    a grid; the tokens entering each transformer block), in forward order."""
    size = _input_size(model)
    taps = transformer_taps(model)
    listed = []
    for info in iter_layers(model):
        if _is_candidate(info) or (info.is_tokens and _grid_of(info, size) is not None):
            listed.append(info)
        listed.extend(tap for tap in taps if tap.path.startswith(info.path + PATH_SEP) or tap.layer is info.layer)
    return listed


def _grid_of(info: LayerInfo, size) -> tuple[int, int, int] | None:
    tokens = info.output_shape[1] if info.output_shape else None
    return token_grid(tokens, size) if tokens else None


def _is_candidate(info: LayerInfo) -> bool:
    import keras

    return (
        info.is_spatial
        and not _is_pooling(info.layer)
        and not isinstance(info.layer, keras.layers.InputLayer)
    )


def model_outputs(model) -> list:
    """The model's symbolic outputs, in order (a subclassed model's functional twin if it has one)."""
    outputs = getattr(model, "outputs", None)
    if not outputs:
        functional = getattr(model, "_functional", None)
        outputs = getattr(functional, "outputs", None) or []
    return list(outputs)


def walk_back(model, prefix: str = "") -> Iterator[LayerInfo]:
    """Layers in breadth-first order from the output back to the input, nested models entered
    from their own output. Graph order, unlike ``model.layers`` order, puts InceptionV3's
    ``mixed10`` before the branch layers that feed it."""
    from collections import deque

    seen: set[int] = set()
    queue = deque(getattr(t, "_keras_history", None) for t in model_outputs(model))
    while queue:
        history = queue.popleft()
        if history is None:
            continue
        operation, node_index = history[0], history[1]
        if id(operation) in seen:
            continue
        seen.add(id(operation))
        if _is_model(operation):
            yield from walk_back(operation, prefix=f"{prefix}{operation.name}{PATH_SEP}")
        else:
            yield LayerInfo(f"{prefix}{operation.name}", operation, _output_shape(operation))
        node = operation._inbound_nodes[node_index]
        queue.extend(getattr(t, "_keras_history", None) for t in node.input_tensors)


def auto_target_layer(model, head=None) -> LayerInfo:
    """The tokens entering the last transformer block of a model that has one; otherwise, walking
    back from the output, the first spatial, non-pooling layer (module docstring). For a
    segmentation ``head``, the head's own layers (the per-pixel classifier and its softmax) are
    passed over: their maps are the output itself."""
    taps = transformer_taps(model)
    if taps:
        return taps[-1]
    skip = _segmentation_head_layers(head)
    if not any(_has_conv_kernel(info.layer) for info in iter_layers(model)):
        raise UnsupportedModel(
            f"{model.name}: no convolutional layer found, so there is no spatial feature map "
            "to explain. Class activation maps need a CNN."
        )
    try:
        layers = list(walk_back(model))
    except (AttributeError, IndexError):  # a subclassed model has no graph to walk
        layers = list(reversed(list(iter_layers(model))))
    for info in layers:
        if _is_candidate(info) and id(info.layer) not in skip:
            return info
    raise UnsupportedModel(
        f"{model.name}: no layer has a spatial output (rank 4, more than one position). "
        "Pass --layer NAME."
    )


def _segmentation_head_layers(head) -> set[int]:
    if head is None or getattr(head, "kind", None) != "segmentation" or head.layer is None:
        return set()
    skip = {id(head.layer)}
    if head.source == "input":  # a Softmax layer: the classifier producing its input too
        producer = getattr(head.layer.input, "_keras_history", None)
        if producer is not None:
            skip.add(id(producer[0]))
    return skip


def find_layer(model, name: str) -> LayerInfo:
    """``--layer``: a layer name (searched in nested models too), a nested path ``outer/inner``, a
    nested model itself (its output is then the target, e.g. a MobileNetV2 backbone's 3x3x1280), or
    a transformer block's name (the tokens entering it)."""
    taps = transformer_taps(model)
    tapped = {id(tap.layer) for tap in taps}
    layers = taps + [info for info in [*iter_layers(model), *nested_models(model)] if id(info.layer) not in tapped]
    matches = [info for info in layers if name in (info.path, info.name)]
    if not matches:
        names = [info.path for info in layers]
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        if not close:
            close = [info.path for info in candidate_layers(model)][-5:]
        raise LayerNotFound(
            f"no layer named '{name}' in {model.name}. Close candidates: {', '.join(close)}. "
            f"'gradcam layers' lists them all."
        )
    if len(matches) > 1:
        raise LayerNotFound(
            f"layer name '{name}' is ambiguous in {model.name}: "
            f"{', '.join(m.path for m in matches)}. Pass the full path."
        )
    info = matches[0]
    if info.is_tokens:
        if _grid_of(info, _input_size(model)) is None:
            raise LayerNotFound(
                f"layer '{info.path}' has {info.output_shape[1]} tokens, which form no patch grid "
                f"for a {'x'.join(str(d) for d in _input_size(model))} input even after dropping up "
                f"to {MAX_PREFIX_TOKENS} prefix tokens. Pick a transformer block or a layer with a "
                "spatial output; 'gradcam layers' lists them."
            )
        return info
    if not info.is_spatial:
        raise LayerNotFound(
            f"layer '{info.path}' has output shape {info.output_shape}, not a spatial map "
            "(batch, height, width, channels) with more than one position. Pick a convolutional "
            "layer; 'gradcam layers' lists the candidates."
        )
    return info


def _output_layer(model):
    """The layer producing the model's (first) output, looking inside a nested last model."""
    layer = None
    outputs = getattr(model, "outputs", None)
    if outputs:
        history = getattr(outputs[0], "_keras_history", None)
        if history is not None:
            layer = history[0]
    if layer is None:
        layer = model.layers[-1]
    if _is_model(layer) and layer is not model:
        return _output_layer(layer)
    return layer


@contextmanager
def intercept(layer, hook):
    """Route ``layer.call`` through ``hook(args, output)`` on this instance only, then restore."""
    with _replaced_call(layer, lambda original: lambda *args, **kwargs: hook(args, original(*args, **kwargs))):
        yield


@contextmanager
def intercept_input(layer, hook):
    """Call ``layer`` on ``hook(x)`` instead of its first input ``x`` (every argument that is ``x``
    itself is replaced, so self-attention's query, key and value all read the hooked tensor)."""

    def wrap(original):
        def call(*args, **kwargs):
            first = args[0]
            hooked = hook(first)
            args = tuple(hooked if arg is first else arg for arg in args)
            kwargs = {key: hooked if value is first else value for key, value in kwargs.items()}
            return original(*args, **kwargs)
        return call

    with _replaced_call(layer, wrap):
        yield


@contextmanager
def bypass_activation(layer, keep):
    """Run ``layer`` with its own activation turned off, pass the pre-activation output to
    ``keep``, and return the activation of it, so the model's output is unchanged."""
    import keras

    activation = layer.activation

    def wrap(original):
        def call(*args, **kwargs):
            object.__setattr__(layer, "activation", keras.activations.linear)
            try:
                pre_activation = original(*args, **kwargs)
            finally:
                object.__setattr__(layer, "activation", activation)
            keep(pre_activation)
            return activation(pre_activation)
        return call

    with _replaced_call(layer, wrap):
        yield


@contextmanager
def _replaced_call(layer, wrap):
    had_own = "call" in vars(layer)
    original = layer.call
    object.__setattr__(layer, "call", wrap(original))
    try:
        yield
    finally:
        if had_own:
            object.__setattr__(layer, "call", original)
        else:
            object.__delattr__(layer, "call")


class Probe:
    """``probe(images) -> (activations, logits)`` for one model and target layer.

    ``activations``: the target's (B, h, w, k) map (tokens reshaped to their grid); ``logits``: the
    explained output's pre-activation values (B, C), or (B, H, W, C) for segmentation (see
    :mod:`gradcam_cli.targets` for the per-class scores made from them).

    Call it under a ``tf.GradientTape`` (inside a ``tf.function``) to differentiate logits with
    respect to the activations; ``watch`` is called on the activations as soon as they exist.
    ``replace(activations) -> activations`` substitutes the target's map inside the full forward
    pass (Ablation-CAM), wherever in the model the layer sits.
    """

    def __init__(self, model, target: LayerInfo, head=None):
        if head is None:
            from .models.heads import detect_head

            head = detect_head(model)
        self.model = model
        self.target = target
        self.head = head
        self.grid = None
        self._tail = None
        if target.is_tokens:
            size = _input_size(model)
            self.grid = token_grid(target.output_shape[1], size)
            if self.grid is None:
                raise UnsupportedModel(
                    f"layer '{target.path}' has {target.output_shape[1]} tokens, which form no patch "
                    f"grid for the model's input even after dropping up to {MAX_PREFIX_TOKENS} prefix "
                    "tokens; pick another layer with --layer."
                )

    def __call__(self, images, watch=None):
        return self._run(images, watch=watch, keep_activations=True)

    def logits(self, images, replace=None):
        """Pre-activation outputs only (the extra forward passes of perturbation methods)."""
        return self._run(images, watch=None, keep_activations=replace is not None, replace=replace)[1]

    def to_map(self, tapped):
        """(map (B, h, w, k), rebuild(map) -> tensor the model consumes) for the tapped tensor."""
        import tensorflow as tf

        if self.grid is None:
            return tapped, lambda spatial: spatial
        prefix, height, width = self.grid
        channels = tapped.shape[-1]
        spatial = tf.reshape(tapped[:, prefix:], (-1, height, width, channels))  # rows first

        def rebuild(new_spatial):
            tokens = tf.reshape(new_spatial, (-1, height * width, channels))
            return tf.concat([tapped[:, :prefix], tokens], axis=1) if prefix else tokens

        return spatial, rebuild

    def tail(self):
        """``tail(activations) -> logits``: the model after the target layer as a sub-model, or None
        where that part reads other tensors too (a skip connection around the layer, a layer inside
        a nested model, the tokens entering a block). Where it exists it spares Ablation-CAM the
        forward passes through the layers before the target."""
        if self._tail is None:
            import keras

            if (PATH_SEP in self.target.path or _is_model(self.target.layer) or self.target.tap != "output"
                    or self.grid is not None):
                return None
            end = model_outputs(self.model)[self.head.output_index]
            try:
                sub_model = keras.Model(self.target.layer.output, end)
            except (ValueError, AttributeError, TypeError):
                return None
            self._tail = lambda activations: self._run(activations, None, False, model=sub_model)[1]
        return self._tail

    def _run(self, images, watch, keep_activations: bool, replace=None, model=None):
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

        with ExitStack() as stack:
            if keep_activations and self.target.tap == "input":
                stack.enter_context(intercept_input(self.target.layer, tap))
            elif keep_activations:
                stack.enter_context(intercept(self.target.layer, lambda args, output: tap(output)))
            if self.head.source == "activation":
                stack.enter_context(bypass_activation(self.head.layer, lambda pre: captured.update(head_input=pre)))
            elif self.head.source == "input":
                stack.enter_context(intercept(self.head.layer, keep_head_input))
            output = (model or self.model)(images, training=False)
        if keep_activations and "activations" not in captured:
            raise LayerNotFound(f"layer '{self.target.path}' was not run by the model's forward pass.")
        if isinstance(output, (list, tuple, dict)) and model is None:
            output = keras.tree.flatten(output)[self.head.output_index]
        return captured.get("activations"), self._logits(captured.get("head_input"), output)

    def _logits(self, head_input, output):
        import tensorflow as tf

        if self.head.source != "output" and head_input is not None:
            return tf.cast(head_input, tf.float32)
        return tf.cast(output, tf.float32)
