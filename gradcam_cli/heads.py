"""What a model's output means: the head, detected once here and read by everything downstream.

A head says which values are differentiated (always *before* the final squashing, so that a
saturated softmax or sigmoid does not flatten the gradients; the Keras Grad-CAM example removes the
last activation for the same reason), how to report a prediction, and how classes are named. There
is one class per kind; code downstream calls its methods and never switches on the kind.

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
                                                        pixels predicted as it (see ``Scores``)
======================  ==============================  =============================================

The kind names are written into manifest rows (``head``); :data:`HEADS` maps them back to classes.

The pre-activation values are read in one of four ways (``Head.source``): ``activation``: the
last layer (Dense, Conv2D, ...) applies the squashing itself, which is bypassed for the forward pass
the tool runs; ``input``: a separate ``Softmax``/``Activation`` layer, whose input is read;
``layer``: a model without a graph squashes its last layer's output in plain code
(``return tf.nn.softmax(self.head(x))``), and that layer's output is read; ``output``: the model
already returns pre-activation values.

Scores
------
What is differentiated (:meth:`Head.scores`): one score per class, computed from the explained
output's pre-activation values ``z`` according to the head.

- softmax, multi-label, regression: ``score_c = z_c`` (a class logit, a sigmoid unit's logit, the
  unit's value before any activation);
- binary (one sigmoid unit ``z``): ``score = (-z, z)`` for (negative, positive): the negative class's
  logit is the negated logit, since ``1 - sigmoid(z) = sigmoid(-z)``;
- segmentation (``z``: (B, H, W, C)): ``score_c = sum over the region R_c of z[..., c]``, the sum of
  the class's pre-softmax output over a region, as pytorch-grad-cam's ``SemanticSegmentationTarget``
  (a *sum*, not a mean: a mean would weigh one pixel of a small region as much as the whole of a
  large one, and the per-map min-max normalisation of the display removes the scale anyway).

What is reported (:meth:`Head.reported`) ranks the classes: the default targets are each image's
largest reported values.

Segmentation regions (``--region``: ``pred``, ``all`` or a mask) are in :mod:`gradcam_cli.regions`.

The score, report and region methods are TensorFlow ops on whole batches, run inside the
explainer's compiled step (TensorFlow is imported inside them, so ``--help`` stays light).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import UnsupportedModel
from .graph import input_layer_of, outputs_of
from .regions import predicted_pixels, region_masks, region_pixel_counts

BINARY_CLASSES = ("negative", "positive")
SQUASHES = ("softmax", "sigmoid")


def _is_linear(activation: str | None) -> bool:
    return activation in (None, "linear")


@dataclass(frozen=True)
class Head:
    """The detected head of one model output (see the module docstring); one subclass per kind.

    ``source``: 'activation' | 'input' | 'layer' | 'output', where the pre-activation values are read;
    ``layer``: the layer producing the output (None when ``source`` is 'output' and unknown);
    ``squash``: 'softmax' | 'sigmoid' | 'none', what turns pre-activation values into the output;
    ``units``: output units (channels for segmentation).
    """

    kind: ClassVar[str] = ""  # the name written into manifest rows; never change one
    reports_probability: ClassVar[bool] = False
    has_regions: ClassVar[bool] = False
    sorted_by: ClassVar[str] = "score"  # what the report's sort orders by
    own_class_names: ClassVar[tuple[str, ...] | None] = None  # names without a labels file

    source: str
    layer: Any
    squash: str
    units: int
    output_index: int = 0
    output_name: str = ""
    head_layers: tuple = ()  # a segmentation head's own layers (see ``own_layers``)

    @classmethod
    def recognises(cls, rank: int, units: int | None, squash: str, activation: str | None) -> bool:
        """Whether an output of ``rank`` and ``units`` whose last step is ``squash`` (with the
        layer's ``activation`` name) is this kind; exactly one kind recognises a supported output."""
        return False

    @classmethod
    def squash_of(cls, detected: str) -> str:
        """The squash this head applies, given the one detected on the output layer."""
        return detected

    @property
    def num_classes(self) -> int:
        """Classes a target may name."""
        return self.units

    def default_label(self, index: int) -> str:
        """A class's name where no labels file names it."""
        return f"class_{index}"

    def class_names(self, labels: list[str] | None) -> list[str] | None:
        """Class names: a labels file with one name per class, else the head's own names (a binary
        head's ``negative``/``positive``), else ``labels`` as given (None where indices are all there is)."""
        if labels is not None and len(labels) == self.num_classes:
            return list(labels)
        return list(self.own_class_names) if self.own_class_names else labels

    def describe(self) -> str:
        raise NotImplementedError

    def scores(self, raw, regions=None):
        """(B, num_classes) float32 scores whose gradients the methods use (module docstring)."""
        import tensorflow as tf

        return tf.cast(raw, tf.float32)

    def reported(self, raw, regions=None):
        """(B, num_classes) float32 values a prediction reports; the default targets are the largest."""
        raise NotImplementedError

    def regions(self, raw, region: Any = "pred"):
        """(B, H, W, C) float32 per-class regions (segmentation), else None."""
        return None

    def region_pixels(self, regions):
        """(B, C) int32 pixels in each class's region, or None without regions."""
        return None

    def class_weights(self, kernel):
        """CAM's (k, num_classes) class weights from the output Dense layer's (k, units) kernel."""
        return kernel

    def row_fields(self, reported: float) -> dict:
        """What a manifest row adds for this head, given the target's reported value."""
        return {}

    def own_layers(self) -> tuple:
        """The head's own layers, passed over by the automatic target-layer search."""
        return ()

    @classmethod
    def format_prediction(cls, label: str, value: float) -> str:
        """One prediction as printed: ``cat 93.1%``, ``value = 3.2100``, ``road 41.0% of pixels``."""
        return f"{label} {value:.1%}"


class ClassifierHead(Head):
    """A head whose reported values are class probabilities."""

    reports_probability = True
    sorted_by = "probability"


class SoftmaxHead(ClassifierHead):
    """Softmax over the classes, or several linear units read as a classifier's logits."""

    kind = "softmax"

    @classmethod
    def recognises(cls, rank, units, squash, activation):
        logits = squash == "none" and units != 1 and _is_linear(activation)
        return rank == 2 and (squash == "softmax" or logits)

    @classmethod
    def squash_of(cls, detected):
        return "softmax"

    def describe(self):
        return f"softmax over {self.units} classes"

    def reported(self, raw, regions=None):
        import tensorflow as tf

        return tf.nn.softmax(tf.cast(raw, tf.float32), axis=-1)


class BinaryHead(ClassifierHead):
    """One sigmoid unit ``z``: two classes, the negative one scored ``-z``."""

    kind = "binary"
    own_class_names = BINARY_CLASSES

    @classmethod
    def recognises(cls, rank, units, squash, activation):
        return rank == 2 and squash == "sigmoid" and units == 1

    @property
    def num_classes(self):
        return 2

    def default_label(self, index):
        return BINARY_CLASSES[index]

    def describe(self):
        return "one sigmoid unit (binary: negative/positive)"

    def scores(self, raw, regions=None):
        import tensorflow as tf

        raw = tf.cast(raw, tf.float32)
        return tf.concat([-raw, raw], axis=-1)

    def reported(self, raw, regions=None):
        import tensorflow as tf

        return tf.sigmoid(self.scores(raw))

    def class_weights(self, kernel):
        """``(-w, w)``: the negative class's score is the negated logit."""
        import numpy as np

        return np.concatenate([-kernel, kernel], axis=1)


class MultiLabelHead(ClassifierHead):
    """Several sigmoid units, each its own probability."""

    kind = "multilabel"

    @classmethod
    def recognises(cls, rank, units, squash, activation):
        return rank == 2 and squash == "sigmoid" and units != 1

    def describe(self):
        return f"{self.units} sigmoid units (multi-label)"

    def reported(self, raw, regions=None):
        import tensorflow as tf

        return tf.sigmoid(tf.cast(raw, tf.float32))


class RegressionHead(Head):
    """One linear unit, or units with an activation other than softmax/sigmoid (ReLU, ...)."""

    kind = "regression"
    sorted_by = "predicted value"

    @classmethod
    def recognises(cls, rank, units, squash, activation):
        return rank == 2 and squash == "none" and (units == 1 or not _is_linear(activation))

    def default_label(self, index):
        return "value" if self.units == 1 else f"unit_{index}"

    def describe(self):
        return f"{self.units} linear unit{'s' if self.units > 1 else ''} (regression)"

    def reported(self, raw, regions=None):
        """The output value: the layer's own activation applied again (e.g. a ReLU count)."""
        import tensorflow as tf

        raw = tf.cast(raw, tf.float32)
        if self.source == "activation" and self.layer is not None:
            return tf.cast(self.layer.activation(raw), tf.float32)
        return raw

    def row_fields(self, reported):
        return {"value": reported}

    @classmethod
    def format_prediction(cls, label, value):
        return f"{label} = {value:.4g}"


class SegmentationHead(Head):
    """A (batch, H, W, C) output: per-pixel classes, scored over a region per class."""

    kind = "segmentation"
    has_regions = True
    sorted_by = "pixel share"

    @classmethod
    def recognises(cls, rank, units, squash, activation):
        return rank == 4

    def describe(self):
        return f"segmentation, {self.units} classes per pixel"

    def scores(self, raw, regions=None):
        import tensorflow as tf

        return tf.reduce_sum(tf.cast(raw, tf.float32) * regions, axis=(1, 2))

    def reported(self, raw, regions=None):
        """Each class's share of the pixels predicted as it."""
        import tensorflow as tf

        return tf.reduce_mean(self.predicted_pixels(tf.cast(raw, tf.float32)), axis=(1, 2))

    def predicted_pixels(self, raw):
        """(B, H, W, C) 1 where a pixel is predicted as the class (:func:`regions.predicted_pixels`)."""
        return predicted_pixels(raw, self.squash, self.units)

    def regions(self, raw, region="pred"):
        """``region``: 'pred', 'all' or an (H, W) array (nonzero = inside), the same for every class."""
        return region_masks(raw, region, self.squash, self.units)

    def region_pixels(self, regions):
        return region_pixel_counts(regions)

    def row_fields(self, reported):
        return {"pixel_share": reported}

    def own_layers(self):
        """The per-pixel classifier, and the Softmax layer after it where there is one: their maps
        are the output itself."""
        return self.head_layers

    @classmethod
    def format_prediction(cls, label, value):
        return f"{label} {value:.1%} of pixels"


HEADS: dict[str, type[Head]] = {head.kind: head for head in
                                (SoftmaxHead, BinaryHead, MultiLabelHead, RegressionHead, SegmentationHead)}


def head_class(kind: str) -> type[Head]:
    """The class of a kind name read from a manifest row; an unknown name gets the base class, which
    prints a percentage and sorts by 'score'."""
    return HEADS.get(kind, Head)


def format_prediction(kind: str, label: str, value: float) -> str:
    """One prediction as printed, from the head's kind name (a manifest row's ``head``)."""
    return head_class(kind).format_prediction(label, value)


def _activation_name(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None)


def detect_head(model, output_index: int = 0) -> Head:
    """The head of output ``output_index``: the one class in :data:`HEADS` that recognises it
    (module docstring's table)."""
    import keras

    outputs = outputs_of(model)
    info = outputs[output_index] if outputs else None
    layer = info.layer if info is not None else None
    shape = tuple(info.shape) if info is not None else ()
    name = info.name if info is not None else "output"

    activation = _activation_name(layer)
    if info is not None and info.squash_after:
        source, squash, activation = "layer", info.squash_after, info.squash_after
    elif isinstance(layer, keras.layers.Softmax):
        source, squash = "input", "softmax"
    elif isinstance(layer, keras.layers.Activation) and activation in SQUASHES:
        source, squash = "input", activation
    elif activation in SQUASHES:
        source, squash = "activation", activation
    elif not _is_linear(activation) and hasattr(layer, "activation"):
        source, squash = "activation", "none"  # e.g. ReLU on a count: differentiate before it
    else:
        source, squash = "output", "none"
    if source == "activation" and isinstance(layer, keras.layers.Activation):
        source = "input"

    units = shape[-1] if shape else None
    kinds = [head for head in HEADS.values() if head.recognises(len(shape), units, squash, activation)]
    if not kinds:
        raise UnsupportedModel(
            f"{model.name}: output '{name}' has shape {shape}; a classifier (batch, classes), a "
            "regression (batch, units) or a segmentation map (batch, height, width, classes) is needed."
        )
    if units is None:
        raise UnsupportedModel(f"{model.name}: output '{name}' has an unknown number of units {shape}.")
    kind = kinds[0]
    own = ()
    if kind.has_regions and layer is not None:
        classifier = input_layer_of(model, layer) if source == "input" else None
        own = (layer,) if classifier is None else (layer, classifier)
    return kind(source=source, layer=layer, squash=kind.squash_of(squash), units=int(units),
                output_index=output_index, output_name=name, head_layers=own)
