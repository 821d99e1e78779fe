"""Walking a Keras model: its layers in graph order (nested models expanded), its outputs, and the
shapes of what each layer produces. Everything that reads a model's structure goes through here.

A Functional or Sequential model is read from its symbolic graph. A model without one (a subclassed
``keras.Model``) is read from its traced call (:mod:`gradcam_cli.trace`): the same functions answer
for it, from the layer calls recorded while it ran once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import trace as traced
from .errors import UnsupportedModel, param
from .trace import PATH_SEP, has_graph


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


def output_shape_of(layer) -> tuple | None:
    try:
        output = layer.output
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(output, (list, tuple)) or not hasattr(output, "shape"):
        return None
    return tuple(output.shape)


def is_model(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def sublayers(layer) -> list:
    """A layer's own tracked sub-layers (one level), in the order they were created."""
    try:
        return list(layer._flatten_layers(include_self=False, recursive=False))
    except (AttributeError, TypeError):
        return []


def model_input_shape(model) -> tuple:
    """The image input's shape ``(None, h, w, c)``: the graph's input, else the traced one; () unknown."""
    if has_graph(model):
        return tuple(model.inputs[0].shape)
    try:
        return tuple(traced.input_shape(model) or ())
    except UnsupportedModel:
        return ()


def model_channels(model) -> int:
    """Channels of the model's image input: 1 for a grayscale model, 3 when the input leaves it open."""
    shape = model_input_shape(model)
    return int(shape[-1] or 3) if len(shape) == 4 else 3


def model_input_size(model) -> tuple[int | None, int | None]:
    shape = model_input_shape(model)
    return (shape[1], shape[2]) if len(shape) == 4 else (None, None)


def _traced_layers(model, prefix: str = "", models: bool = False) -> Iterator[LayerInfo]:
    """The traced calls as layers (each at its last call): plain layers, or the models among them."""
    for call in traced.trace(model).last_calls():
        if call.is_model == models:
            yield LayerInfo(f"{prefix}{call.path}", call.layer, call.output_shape)


def iter_layers(model, prefix: str = "") -> Iterator[LayerInfo]:
    """All layers in graph order, nested models expanded in place (the models themselves omitted).
    For a model without a graph: every layer it called, at any depth, in the order the calls ended
    (a custom block after the layers inside it)."""
    if not has_graph(model):
        yield from _traced_layers(model, prefix)
        return
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if is_model(layer):
            yield from iter_layers(layer, prefix=path + PATH_SEP)
        else:
            yield LayerInfo(path, layer, output_shape_of(layer))


def nested_models(model, prefix: str = "") -> Iterator[LayerInfo]:
    """The models nested in ``model`` (a backbone inside a Sequential ...), at any depth, as layers."""
    if not has_graph(model):
        yield from _traced_layers(model, prefix, models=True)
        return
    for layer in model.layers:
        if is_model(layer):
            path = f"{prefix}{layer.name}"
            yield LayerInfo(path, layer, output_shape_of(layer))
            yield from nested_models(layer, prefix=path + PATH_SEP)


def model_outputs(model) -> list:
    """The model's symbolic outputs, in order (a subclassed model's functional twin if it has one)."""
    outputs = getattr(model, "outputs", None)
    if not outputs:
        functional = getattr(model, "_functional", None)
        outputs = getattr(functional, "outputs", None) or []
    return list(outputs)


def walk_back(model, prefix: str = "", stop=None) -> Iterator[LayerInfo]:
    """Layers in breadth-first order from the output back to the input, nested models entered
    from their own output. Graph order, unlike ``model.layers`` order, puts InceptionV3's
    ``mixed10`` before the branch layers that feed it. ``stop(info)``: walk no further back than a
    layer for which it is true (nor than a nested model holding one). A model without a graph is
    walked back along its traced calls, last first, up to the first layer ``stop`` holds for."""
    from collections import deque

    if not has_graph(model):
        for info in reversed(list(iter_layers(model, prefix))):
            yield info
            if stop is not None and stop(info):
                return
        return

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
        if is_model(operation):
            inner = list(walk_back(operation, prefix=f"{prefix}{operation.name}{PATH_SEP}", stop=stop))
            yield from inner
            if stop is not None and any(stop(info) for info in inner):
                continue
        else:
            info = LayerInfo(f"{prefix}{operation.name}", operation, output_shape_of(operation))
            yield info
            if stop is not None and stop(info):
                continue
        node = operation._inbound_nodes[node_index]
        queue.extend(getattr(t, "_keras_history", None) for t in node.input_tensors)


def upstream_of(layer) -> set[int]:
    """The ids of every operation ``layer``'s output is computed from (its first call), ``layer``
    included; a nested model counts as one operation."""
    from collections import deque

    seen: set[int] = {id(layer)}
    nodes = getattr(layer, "_inbound_nodes", None) or []
    queue = deque(getattr(t, "_keras_history", None) for t in (nodes[0].input_tensors if nodes else []))
    while queue:
        history = queue.popleft()
        if history is None or id(history[0]) in seen:
            continue
        operation, node_index = history[0], history[1]
        seen.add(id(operation))
        queue.extend(getattr(t, "_keras_history", None) for t in operation._inbound_nodes[node_index].input_tensors)
    return seen


def producer(tensor):
    """The layer that produced a symbolic tensor, or None."""
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history is not None else None


def unwrap_output_layer(layer):
    """A nested model's own output layer, followed down to a plain layer."""
    import keras

    while isinstance(layer, keras.Model):
        outputs = model_outputs(layer)
        inner = producer(outputs[0]) if len(outputs) == 1 else None
        if inner is None:
            break
        layer = inner
    return layer


@dataclass(frozen=True)
class OutputInfo:
    """One output of a model: ``name`` (its layer's name, or a dict key), ``shape``, ``layer``, the
    plain layer producing it (None where none does), and ``squash_after``: 'softmax' or 'sigmoid'
    where the model applies it to ``layer``'s output outside any layer (a traced model only)."""

    name: str
    shape: tuple
    layer: Any
    squash_after: str | None = None


def outputs_of(model) -> list[OutputInfo]:
    """The model's outputs, in order, from its graph or its traced call."""
    if not has_graph(model) and not model_outputs(model):
        trace = traced.trace(model)
        return [OutputInfo(output.name, output.shape,
                           None if output.call is None else trace.calls[output.call].layer, output.squash_after)
                for output in trace.outputs]
    infos = []
    for index, tensor in enumerate(model_outputs(model)):
        layer = producer(tensor)
        infos.append(OutputInfo(layer.name if layer is not None else f"output_{index}", tuple(tensor.shape),
                                unwrap_output_layer(layer) if layer is not None else None))
    return infos


def input_layer_of(model, layer):
    """The plain layer whose output ``layer`` reads (its first input), or None."""
    if not has_graph(model) and not model_outputs(model):
        return traced.trace(model).input_of(layer)
    try:
        source = producer(layer.input)
    except (AttributeError, ValueError):
        return None
    return unwrap_output_layer(source) if source is not None else None


def output_names(model) -> list[str]:
    """One name per model output: the name of the layer producing it (or the output's dict key)."""
    return [info.name for info in outputs_of(model)]


def describe_outputs(model) -> str:
    """``0 'age' (None, 1), 1 'kind' (None, 5)`` for the one-line multi-output message."""
    return ", ".join(f"{index} '{info.name}' {info.shape}" for index, info in enumerate(outputs_of(model)))


def select_output(model, output: str | int | None) -> int:
    """``model_output`` (a name or an index) to an output index; a single-output model needs none.

    Raises :class:`UnsupportedModel` with the list of outputs when a multi-output model gets no
    ``model_output`` or one that names no output.
    """
    count = len(outputs_of(model))
    if output is None or str(output).strip() == "":
        if count > 1:
            raise UnsupportedModel(
                f"{model.name} has {count} outputs: {describe_outputs(model)}; "
                f"pick the one to explain with {param('model_output', 'NAME|INDEX')}."
            )
        return 0
    text = str(output).strip()
    names = output_names(model)
    if text in names:
        return names.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < max(count, 1):
        return int(text)
    raise UnsupportedModel(
        f"{param('model_output', text)}: no such output; {model.name} has {count}: "
        f"{describe_outputs(model) or 'none'}."
    )


def input_preprocessing(model) -> list[LayerInfo]:
    """Layers that preprocess the image inside the model (``Rescaling``, ``Normalization``) before
    its first convolution: such a model takes raw pixels, and its default preprocessing is 'none'."""
    import keras

    found = []
    for info in iter_layers(model):
        if isinstance(info.layer, (keras.layers.Rescaling, keras.layers.Normalization)):
            found.append(info)
        elif any(len(weight.shape) == 4 for weight in getattr(info.layer, "weights", [])):
            break
    return found
