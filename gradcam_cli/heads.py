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

Scores
------
What is differentiated: one score per class, computed from the explained output's
pre-activation values ``z`` according to the head (:mod:`gradcam_cli.heads`).

- softmax, multi-label, regression: ``score_c = z_c`` (a class logit, a sigmoid unit's logit, the
  unit's value before any activation);
- binary (one sigmoid unit ``z``): ``score = (-z, z)`` for (negative, positive): the negative class's
  logit is the negated logit, since ``1 - sigmoid(z) = sigmoid(-z)``;
- segmentation (``z``: (B, H, W, C)): ``score_c = sum over the region R_c of z[..., c]``, the sum of
  the class's pre-softmax output over a region, as pytorch-grad-cam's ``SemanticSegmentationTarget``
  (a *sum*, not a mean: a mean would weigh one pixel of a small region as much as the whole of a
  large one, and the per-map min-max normalisation of the display removes the scale anyway).

Segmentation regions (``--region``): ``pred``: the pixels whose argmax is the class; ``all``: every
pixel; a mask (H, W) array: its nonzero pixels. Regions are computed once from the unperturbed
forward pass and kept fixed for the extra passes of Score-CAM and Ablation-CAM.

Everything here is TensorFlow ops on whole batches, run inside the engine's compiled step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UnsupportedModel
from .graph import describe_outputs, model_outputs, output_names, producer, unwrap_output_layer

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
    layer = unwrap_output_layer(producer(tensor)) if tensor is not None else None
    if layer is None and not outputs and getattr(model, "layers", None):
        layer = unwrap_output_layer(model.layers[-1])
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



REGIONS = ("pred", "all")


def region_masks(head, raw, region: Any = "pred"):
    """(B, H, W, C) float32 per-class regions of a segmentation head, else None.

    ``region``: 'pred', 'all' or an (H, W) array (nonzero = inside), the same for every class.
    """
    import tensorflow as tf

    if head.kind != "segmentation":
        return None
    if isinstance(region, str) and region == "all":
        return tf.ones_like(raw, tf.float32)
    if isinstance(region, str) and region == "pred":
        return predicted_pixels(head, raw)
    mask = tf.cast(tf.constant(region) != 0, tf.float32)[None, :, :, None]
    return tf.broadcast_to(mask, tf.shape(raw))


def predicted_pixels(head, raw):
    """(B, H, W, C) 1 where a pixel is predicted as the class: the argmax over classes for a
    softmax head, a positive logit for per-pixel sigmoid units (which may overlap)."""
    import tensorflow as tf

    if head.squash == "sigmoid":
        return tf.cast(raw > 0, tf.float32)
    return tf.one_hot(tf.argmax(raw, axis=-1), head.units, dtype=tf.float32)


def read_region_mask(path, size: tuple[int, int]):
    """``--region MASK.png``: a (H, W) uint8 array at the segmentation output's size, 1 inside
    (nonzero pixels of the image's first channel or its alpha), resized with nearest neighbours."""
    import numpy as np
    from PIL import Image

    from .errors import TargetError

    try:
        with Image.open(path) as picture:
            picture.load()
            grey = picture.getchannel("A") if picture.mode in ("RGBA", "LA") else picture.convert("L")
    except (OSError, ValueError) as error:
        raise TargetError(f"{path}: cannot read the --region mask ({error}); give a PNG whose "
                          "nonzero pixels mark the region.") from None
    mask = np.asarray(grey.resize((size[1], size[0]), Image.NEAREST)) != 0
    if not mask.any():
        raise TargetError(f"{path}: the --region mask has no nonzero pixel at the model's output size "
                          f"{size[0]}x{size[1]}; mark the region with nonzero pixels.")
    return mask.astype(np.uint8)


def class_scores(head, raw, regions=None):
    """(B, num_classes) scores whose gradients the methods use (module docstring)."""
    import tensorflow as tf

    raw = tf.cast(raw, tf.float32)
    if head.kind == "binary":
        return tf.concat([-raw, raw], axis=-1)
    if head.kind == "segmentation":
        return tf.reduce_sum(raw * regions, axis=(1, 2))
    return raw


def reported_values(head, raw, regions=None):
    """(B, num_classes) what a prediction reports: probabilities (softmax, binary, multi-label),
    the output value (regression), or each class's share of the pixels predicted as it
    (segmentation). The default targets are each image's largest values."""
    import tensorflow as tf

    raw = tf.cast(raw, tf.float32)
    if head.kind == "segmentation":
        return tf.reduce_mean(predicted_pixels(head, raw), axis=(1, 2))
    if head.kind == "binary":
        return tf.sigmoid(tf.concat([-raw, raw], axis=-1))
    if head.squash == "softmax":
        return tf.nn.softmax(raw, axis=-1)
    if head.squash == "sigmoid":
        return tf.sigmoid(raw)
    if head.source == "activation" and head.layer is not None:  # e.g. a ReLU regression unit
        return tf.cast(head.layer.activation(raw), tf.float32)
    return raw


def region_pixel_counts(regions):
    """(B, C) int32 pixels in each class's region, or None without regions."""
    import tensorflow as tf

    if regions is None:
        return None
    return tf.cast(tf.reduce_sum(regions, axis=(1, 2)), tf.int32)
