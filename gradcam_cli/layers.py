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
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from .errors import LayerNotFound, UnsupportedModel

PATH_SEP = "/"


@dataclass(frozen=True)
class LayerInfo:
    path: str  # "resnet50/conv5_block3_out" for nested layers
    layer: Any
    output_shape: tuple | None

    @property
    def name(self) -> str:
        return self.layer.name

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
    """Layers that may serve as a CAM target (spatial, not pooling), in forward order."""
    return [info for info in iter_layers(model) if _is_candidate(info)]


def _is_candidate(info: LayerInfo) -> bool:
    import keras

    return (
        info.is_spatial
        and not _is_pooling(info.layer)
        and not isinstance(info.layer, keras.layers.InputLayer)
    )


def _model_outputs(model) -> list:
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
    queue = deque(getattr(t, "_keras_history", None) for t in _model_outputs(model))
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


def auto_target_layer(model) -> LayerInfo:
    """Walking back from the output, the first spatial, non-pooling layer (module docstring)."""
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
        if _is_candidate(info):
            return info
    raise UnsupportedModel(
        f"{model.name}: no layer has a spatial output (rank 4, more than one position). "
        "Pass --layer NAME."
    )


def find_layer(model, name: str) -> LayerInfo:
    """``--layer``: a layer name (searched in nested models too), a nested path ``outer/inner``, or a
    nested model itself (its output is then the target, e.g. a MobileNetV2 backbone's 3x3x1280)."""
    layers = [*iter_layers(model), *nested_models(model)]
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


def _activation_name(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None)


@dataclass(frozen=True)
class Head:
    """How to obtain pre-activation logits and report probabilities.

    ``kind``: 'dense' (softmax/sigmoid inside the last Dense: logits = input @ kernel + bias),
    'input' (separate Softmax/Activation layer: logits = its input), or 'output' (the model already
    returns logits, or scores without a recognised squashing; probabilities = softmax).
    """

    kind: str
    layer: Any
    squash: str  # 'softmax' | 'sigmoid'


def find_head(model) -> Head:
    import keras

    last = _output_layer(model)
    activation = _activation_name(last)
    if isinstance(last, keras.layers.Softmax):
        return Head("input", last, "softmax")
    if isinstance(last, keras.layers.Activation) and activation in ("softmax", "sigmoid"):
        return Head("input", last, activation)
    if isinstance(last, keras.layers.Dense) and activation in ("softmax", "sigmoid"):
        return Head("dense", last, activation)
    return Head("output", None, "softmax")


@contextmanager
def intercept(layer, hook):
    """Route ``layer.call`` through ``hook(args, output)`` on this instance only, then restore."""
    had_own = "call" in vars(layer)
    original = layer.call

    def call(*args, **kwargs):
        output = original(*args, **kwargs)
        return hook(args, output)

    object.__setattr__(layer, "call", call)
    try:
        yield
    finally:
        if had_own:
            object.__setattr__(layer, "call", original)
        else:
            object.__delattr__(layer, "call")


class Probe:
    """``probe(images) -> (activations, logits)`` for one model and target layer.

    Call it under a ``tf.GradientTape`` (inside a ``tf.function``) to differentiate logits with
    respect to the activations; ``watch`` is called on the activations as soon as they exist.
    """

    def __init__(self, model, target: LayerInfo, head: Head | None = None):
        self.model = model
        self.target = target
        self.head = head or find_head(model)
        self._tail = None

    def __call__(self, images, watch=None):
        return self._run(images, watch=watch, keep_activations=True)

    def logits(self, images):
        """Pre-softmax logits only (the extra forward passes of perturbation methods)."""
        return self._run(images, watch=None, keep_activations=False)[1]

    def _run(self, images, watch, keep_activations: bool):
        captured: dict[str, Any] = {}

        def keep_target_output(args, output):
            if watch is not None:
                watch(output)
            captured["activations"] = output
            return output

        def keep_head_input(args, output):
            captured["head_input"] = args[0]
            return output

        with ExitStack() as stack:
            if keep_activations:
                stack.enter_context(intercept(self.target.layer, keep_target_output))
            if self.head.kind != "output":
                stack.enter_context(intercept(self.head.layer, keep_head_input))
            output = self.model(images, training=False)
        if keep_activations and "activations" not in captured:
            raise LayerNotFound(f"layer '{self.target.path}' was not run by the model's forward pass.")
        if isinstance(output, (list, tuple)):
            output = output[0]
        return captured.get("activations"), self._logits(captured.get("head_input"), output)

    def _logits(self, head_input, output):
        import tensorflow as tf

        if self.head.kind == "dense":
            logits = tf.matmul(tf.cast(head_input, tf.float32), tf.cast(self.head.layer.kernel, tf.float32))
            if self.head.layer.use_bias:
                logits = logits + tf.cast(self.head.layer.bias, tf.float32)
            return logits
        if self.head.kind == "input":
            return tf.cast(head_input, tf.float32)
        return tf.cast(output, tf.float32)

    def tail(self):
        """``tail(activations) -> logits``: the model after the target layer, or None where that
        part reads other tensors too (a skip connection around the layer, a nested target)."""
        if self._tail is None:
            import keras

            if PATH_SEP in self.target.path or _is_model(self.target.layer):
                return None
            end = self.head.layer.input if self.head.kind != "output" else _model_outputs(self.model)[0]
            try:
                sub_model = keras.Model(self.target.layer.output, end)
            except (ValueError, AttributeError):
                return None

            def run_tail(activations):
                end_value = sub_model(activations, training=False)  # the head's input, or the output
                return self._logits(end_value, end_value)

            self._tail = run_tail
        return self._tail

    def probabilities(self, logits):
        import tensorflow as tf

        if self.head.squash == "sigmoid":
            return tf.sigmoid(logits)
        return tf.nn.softmax(logits, axis=-1)
