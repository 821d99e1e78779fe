"""The traced call: the structure of a model that has no graph to read.

A Functional or Sequential model built on an ``Input`` holds a symbolic graph, which
:mod:`gradcam_cli.graph` walks. A subclassed ``keras.Model`` (layers made in ``__init__``, chained in
``call()``) has none: its structure exists only while it runs. So it is run once, here, on a batch of
one image at its input shape, with every layer it owns (at any depth: layers, ``Sequential`` blocks,
a Functional backbone and what they hold) intercepted, and each call is recorded when it returns:

- **in the order the calls end**: a block's inner layers come before the block itself, and the last
  spatial call before the head is what the target-layer rule picks, as for a graph;
- **with the shape of what it returned**, which ``layer.output`` cannot give for an eager call;
- **with the call that produced its first input** (by tensor identity), which links the head back to
  its pooling and Dense layers (CAM's check, a segmentation head's classifier).

The model's outputs are matched to the innermost call that returned them. Where the last step is a
softmax or sigmoid written as a plain function after the last layer (``return tf.nn.softmax(x)``), the
recorded values show it, and the head then reads that last layer's output as the pre-activation
values (see :mod:`gradcam_cli.heads`).

Paths name each layer through the attributes' layer names from the model down
(``block1/conv2``), as for nested models in a graph. A layer called more than once is listed at its
last call. The input shape comes from the model's first call (Keras records it when the model is
built), or from ``input_size``; a model never called needs ``input_size`` and is run with three
channels, then one.
"""

from __future__ import annotations

import weakref
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from .errors import UnsupportedModel, describe_error, param
from .hooks import intercept

PATH_SEP = "/"
SQUASH_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Call:
    """One recorded layer call: its ``path``, the ``layer``, the shape it returned (batch as None;
    None when it returned no single tensor), the index of the call that produced its first input,
    and whether the layer is a model holding other layers (a ``Sequential`` block)."""

    path: str
    layer: Any
    output_shape: tuple | None
    input_from: int | None
    is_model: bool


@dataclass(frozen=True)
class TracedOutput:
    """One output of the model: its name (a dict key, or the layer's name), shape, the index of the
    innermost call that returned it (None when no layer did) and, where the model squashes the last
    layer's values outside any layer, which squash ('softmax' or 'sigmoid'); the call is then that
    last layer."""

    name: str
    shape: tuple
    call: int | None
    squash_after: str | None = None


@dataclass(frozen=True)
class Trace:
    input_shape: tuple  # (None, height, width, channels)
    calls: tuple[Call, ...]
    outputs: tuple[TracedOutput, ...]

    def last_calls(self) -> list[Call]:
        """Each layer once, at its last call, in the order the calls ended."""
        last = {id(call.layer): index for index, call in enumerate(self.calls)}
        return [call for index, call in enumerate(self.calls) if last[id(call.layer)] == index]

    def input_of(self, layer) -> Any | None:
        """The layer whose output ``layer`` (last call) read first, or None."""
        for call in reversed(self.calls):
            if call.layer is layer:
                return None if call.input_from is None else self.calls[call.input_from].layer
        return None


_TRACES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_INPUT_SHAPES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def has_graph(model) -> bool:
    """Whether the model holds a symbolic graph (Functional, or Sequential built on an Input)."""
    return bool(getattr(model, "inputs", None))


def _required_inputs(model) -> list[str]:
    """The arguments ``model.call`` cannot run without (``training`` aside)."""
    import inspect

    try:
        parameters = inspect.signature(model.call).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in parameters if p.default is inspect.Parameter.empty and p.name != "training"
            and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]


def built_input_shape(model) -> tuple | None:
    """``(None, h, w, c)`` from the model's first call (Keras's record of its build), or None.
    Raises :class:`UnsupportedModel` for a model called on several inputs."""
    required = _required_inputs(model)
    if len(required) > 1:
        raise UnsupportedModel(f"{model.name}: the model's call takes {len(required)} inputs ({', '.join(required)}); "
                               "one image input is needed.")
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    if not shapes:
        return _default_build_shape(model)
    if len(shapes) != 1:
        raise UnsupportedModel(f"{model.name}: the model takes {len(shapes)} inputs ({', '.join(shapes)}); "
                               "one image input is needed.")
    shape = next(iter(shapes.values()))
    if isinstance(shape, dict) or (isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple, dict))):
        raise UnsupportedModel(f"{model.name}: the model is called on several tensors {shape}; one image input "
                               "is needed.")
    return (None, *tuple(shape)[1:]) if shape is not None else None


def _default_build_shape(model) -> tuple | None:
    """A model built by ``model.build()`` with its own default shape (mtcnn's networks do this),
    which Keras does not record: that default, where it is an image batch's shape."""
    import inspect

    if not getattr(model, "built", False):
        return None
    try:
        parameters = list(inspect.signature(model.build).parameters.values())
    except (TypeError, ValueError):
        return None
    default = parameters[0].default if parameters else inspect.Parameter.empty
    if isinstance(default, (list, tuple)) and len(default) == 4 and all(d is None or isinstance(d, int) for d in default):
        return (None, *tuple(default)[1:])
    return None


def set_input_shape(model, shape: tuple) -> Trace:
    """Trace ``model`` at ``shape`` ``(None, h, w, c)`` and keep the trace (for as long as the model lives)."""
    _INPUT_SHAPES[model] = tuple(shape)
    _TRACES.pop(model, None)
    return trace(model)


def input_shape(model) -> tuple | None:
    """The shape the model is traced at: set by :func:`set_input_shape`, else its built shape."""
    return _INPUT_SHAPES.get(model) or built_input_shape(model)


def trace(model) -> Trace:
    """The model's trace, recorded on first use (module docstring)."""
    found = _TRACES.get(model)
    if found is not None:
        return found
    shape = input_shape(model)
    if shape is None or len(shape) != 4 or shape[1] is None or shape[2] is None:
        raise UnsupportedModel(
            f"{model.name}: the model has never been called, so its input size is unknown; give "
            f"{param('input_size', 'H,W')} (or call it once on a batch of images)."
        )
    found = _record(model, shape)
    _TRACES[model] = found
    return found


def _children(layer) -> list:
    import keras

    if isinstance(layer, keras.Model):
        try:
            children = list(layer.layers)
        except (AttributeError, ValueError):
            children = []
    else:
        children = []
    try:
        own = list(layer._flatten_layers(include_self=False, recursive=False))
    except (AttributeError, TypeError):
        own = []
    known = {id(child) for child in children}
    return children + [child for child in own if id(child) not in known
                       and not isinstance(child, keras.layers.InputLayer)]


def layer_paths(model) -> dict[int, tuple[str, Any]]:
    """``id(layer) -> (path, layer)`` for every layer the model holds, at any depth (first path wins)."""
    paths: dict[int, tuple[str, Any]] = {}

    def visit(layer, prefix: str) -> None:
        for child in _children(layer):
            if id(child) in paths or child is model:
                continue
            path = f"{prefix}{child.name}"
            paths[id(child)] = (path, child)
            visit(child, path + PATH_SEP)

    visit(model, "")
    return paths


def _shape(value) -> tuple | None:
    shape = getattr(value, "shape", None)
    if shape is None or isinstance(value, (list, tuple, dict)):
        return None
    return (None, *tuple(shape)[1:])


def _record(model, shape: tuple) -> Trace:
    import keras
    import numpy as np

    calls: list[Call] = []
    produced: dict[int, int] = {}
    values: list = []  # what each call returned; also keeps the tensors alive, so that ids stay unique

    def recorder(path, layer):
        def hook(args, output):
            first = args[0] if args else None
            source = produced.get(id(first)) if first is not None else None
            calls.append(Call(path, layer, _shape(output), source, isinstance(layer, keras.Model)))
            values.append(output)
            if _shape(output) is not None:
                produced.setdefault(id(output), len(calls) - 1)
            return output
        return hook

    # values in [0, 1]: any preprocessing's range; random, so that a squash is seen in the values
    batch = np.random.default_rng(0).uniform(0, 1, (1, *shape[1:])).astype(np.float32)
    try:
        with ExitStack() as stack:
            for path, layer in layer_paths(model).values():
                if isinstance(layer, keras.layers.InputLayer):
                    continue
                stack.enter_context(intercept(layer, recorder(path, layer)))
            result = model(batch, training=False)
    except UnsupportedModel:
        raise
    except Exception as error:  # the user's model failed on an image batch: one line, not its traceback
        raise UnsupportedModel(
            f"{model.name}: running the model on a {shape[1]}x{shape[2]}x{shape[3]} image batch failed "
            f"({describe_error(error)}); give the size it takes with {param('input_size', 'H,W')}."
        ) from None
    return Trace(tuple(shape), tuple(calls), tuple(_outputs(result, calls, values, produced)))


def _outputs(result, calls: list[Call], values: list, produced: dict[int, int]) -> list[TracedOutput]:
    import keras

    items = list(result.items()) if isinstance(result, dict) else [(None, value) for value in keras.tree.flatten(result)]
    outputs = []
    for index, (key, value) in enumerate(items):
        call = produced.get(id(value))
        squash = None
        if call is None and len(items) == 1:
            call, squash = _squashed_last_call(value, calls, values)
        name = str(key) if key is not None else calls[call].layer.name if call is not None else f"output_{index}"
        outputs.append(TracedOutput(name, _shape(value) or (None,), call, squash))
    return outputs


def _squashed_last_call(value, calls: list[Call], values: list) -> tuple[int | None, str | None]:
    """(index, squash) where the output equals softmax or sigmoid of the last layer call's output
    (a squash written as a function after the last layer); (None, None) otherwise."""
    import numpy as np

    layer_calls = [index for index, call in enumerate(calls) if not call.is_model]
    if not layer_calls:
        return None, None
    index = layer_calls[-1]
    before = np.asarray(values[index], np.float64)
    after = np.asarray(value, np.float64)
    if before.shape != after.shape:
        return None, None
    shifted = np.exp(before - before.max(axis=-1, keepdims=True))
    candidates = {"softmax": shifted / shifted.sum(axis=-1, keepdims=True), "sigmoid": 1 / (1 + np.exp(-before))}
    for squash, expected in candidates.items():
        if np.allclose(after, expected, atol=SQUASH_TOLERANCE, rtol=1e-3) and not np.allclose(before, after):
            return index, squash
    return None, None
