"""What a model's output means: the head, detected once here and read by everything downstream.

A head says which values are differentiated (always *before* the final squashing, so that a
saturated softmax or sigmoid does not flatten the gradients; the Keras Grad-CAM example removes the
last activation for the same reason), how to report a prediction, and how classes are named.

======================  ==============================  =============================================
kind                    recognised by                   classes, reported value
======================  ==============================  =============================================
``softmax``             softmax, or several linear      one per unit; softmax probability
                        units (logits, e.g. keras-hub)
``binary``              one sigmoid unit                ``negative`` / ``positive`` (or the labels
                                                        file's two names); the negative class's
                                                        score is the negated logit ``-z``, its
                                                        probability ``1 - sigmoid(z)``
``multilabel``          several sigmoid units           one per unit, each its own sigmoid
                                                        probability (they need not sum to 1)
``regression``          one linear unit, or units with  one per unit; the output value itself
                        another activation (ReLU, ...)
``segmentation``        a (batch, H, W, C) output       one per channel; the class's share of the
                                                        pixels predicted as it (see ``targets``)
======================  ==============================  =============================================

The pre-activation values are read in one of three ways (``Head.source``): ``activation``: the
last layer (Dense, Conv2D, ...) applies the squashing itself, which is bypassed for the forward pass
the tool runs; ``input``: a separate ``Softmax``/``Activation`` layer, whose input is read;
``output``: the model already returns pre-activation values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UnsupportedModel
from ..layers import model_outputs

HEAD_KINDS = ("softmax", "binary", "multilabel", "regression", "segmentation")
BINARY_CLASSES = ("negative", "positive")
SQUASHES = ("softmax", "sigmoid")


@dataclass(frozen=True)
class Head:
    """The detected head of one model output (see the module docstring)."""

    kind: str  # one of HEAD_KINDS
    source: str  # 'activation' | 'input' | 'output'
    layer: Any  # the layer producing the output (None when source is 'output' and unknown)
    squash: str  # 'softmax' | 'sigmoid' | 'none': what turns pre-activation values into the output
    units: int  # output units (channels for segmentation)
    output_index: int = 0
    output_name: str = ""

    @property
    def num_classes(self) -> int:
        """Classes a target may name: two for a binary head, else one per unit."""
        return 2 if self.kind == "binary" else self.units

    @property
    def reports_probability(self) -> bool:
        return self.kind in ("softmax", "binary", "multilabel")

    def default_label(self, index: int) -> str:
        if self.kind == "binary":
            return BINARY_CLASSES[index]
        if self.kind == "regression":
            return "value" if self.units == 1 else f"unit_{index}"
        return f"class_{index}"

    def describe(self) -> str:
        text = {"softmax": f"softmax over {self.units} classes",
                "binary": "one sigmoid unit (binary: negative/positive)",
                "multilabel": f"{self.units} sigmoid units (multi-label)",
                "regression": f"{self.units} linear unit{'s' if self.units > 1 else ''} (regression)",
                "segmentation": f"segmentation, {self.units} classes per pixel"}[self.kind]
        return text


def _producer(tensor):
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history is not None else None


def _unwrap(layer):
    """A nested model's own output layer, followed down to a plain layer."""
    import keras

    while isinstance(layer, keras.Model):
        outputs = model_outputs(layer)
        inner = _producer(outputs[0]) if len(outputs) == 1 else None
        if inner is None:
            break
        layer = inner
    return layer


def output_names(model) -> list[str]:
    """One name per model output: the name of the layer producing it."""
    names = []
    for index, tensor in enumerate(model_outputs(model)):
        producer = _producer(tensor)
        names.append(producer.name if producer is not None else f"output_{index}")
    return names


def describe_outputs(model) -> str:
    """``0 'age' (None, 1), 1 'kind' (None, 5)`` for the one-line multi-output message."""
    return ", ".join(
        f"{index} '{name}' {tuple(tensor.shape)}"
        for index, (name, tensor) in enumerate(zip(output_names(model), model_outputs(model), strict=True))
    )


def select_output(model, output: str | int | None) -> int:
    """``--output NAME|INDEX`` to an output index; a single-output model needs none.

    Raises :class:`UnsupportedModel` with the list of outputs when a multi-output model gets no
    ``--output`` or one that names no output.
    """
    count = len(model_outputs(model))
    if output is None or str(output).strip() == "":
        if count > 1:
            raise UnsupportedModel(
                f"{model.name} has {count} outputs: {describe_outputs(model)}; "
                "pick the one to explain with --output NAME|INDEX (--model-output in gradcam compare, output= in Python)."
            )
        return 0
    text = str(output).strip()
    names = output_names(model)
    if text in names:
        return names.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < max(count, 1):
        return int(text)
    raise UnsupportedModel(
        f"--output {text}: no such output; {model.name} has {count}: {describe_outputs(model) or 'none'} "
        "(the folder to write to is -o/--output-dir)."
    )


def _activation_name(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None)


def detect_head(model, output_index: int = 0) -> Head:
    """The head of output ``output_index`` (module docstring's table)."""
    import keras

    outputs = model_outputs(model)
    tensor = outputs[output_index] if outputs else None
    layer = _unwrap(_producer(tensor)) if tensor is not None else None
    if layer is None and not outputs and getattr(model, "layers", None):
        layer = _unwrap(model.layers[-1])
    shape = tuple(tensor.shape) if tensor is not None else tuple(getattr(model, "output_shape", ()) or ())
    name = output_names(model)[output_index] if outputs else getattr(layer, "name", "output")

    activation = _activation_name(layer)
    if isinstance(layer, keras.layers.Softmax):
        source, squash = "input", "softmax"
    elif isinstance(layer, keras.layers.Activation) and activation in SQUASHES:
        source, squash = "input", activation
    elif activation in SQUASHES:
        source, squash = "activation", activation
    elif activation not in (None, "linear") and hasattr(layer, "activation"):
        source, squash = "activation", "none"  # e.g. ReLU on a count: differentiate before it
    else:
        source, squash = "output", "none"
    if source == "activation" and isinstance(layer, keras.layers.Activation):
        source = "input"

    if len(shape) == 4:
        kind = "segmentation"
    elif len(shape) == 2:
        units = shape[-1]
        if squash == "softmax":
            kind = "softmax"
        elif squash == "sigmoid":
            kind = "binary" if units == 1 else "multilabel"
        elif units == 1 or activation not in (None, "linear"):
            kind = "regression"
        else:
            kind, squash = "softmax", "softmax"  # several linear units: a classifier's logits
    else:
        raise UnsupportedModel(
            f"{model.name}: output '{name}' has shape {shape}; a classifier (batch, classes), a "
            "regression (batch, units) or a segmentation map (batch, height, width, classes) is needed."
        )
    units = shape[-1]
    if units is None:
        raise UnsupportedModel(f"{model.name}: output '{name}' has an unknown number of units {shape}.")
    return Head(kind=kind, source=source, layer=layer, squash=squash, units=int(units),
                output_index=output_index, output_name=name)


def format_prediction(kind: str, label: str, value: float) -> str:
    """One prediction as printed: ``cat 93.1%``, ``value = 3.2100``, ``road 41.0% of pixels``."""
    if kind == "regression":
        return f"{label} = {value:.4g}"
    if kind == "segmentation":
        return f"{label} {value:.1%} of pixels"
    return f"{label} {value:.1%}"


def class_labels(head: Head, labels: list[str] | None) -> list[str] | None:
    """Class names for ``head``: a labels file with one name per class; a binary head's default
    ``negative``/``positive``. Returns None where indices are all there is."""
    if labels is not None and len(labels) == head.num_classes:
        return list(labels)
    if head.kind == "binary":
        return list(BINARY_CLASSES)
    return labels
