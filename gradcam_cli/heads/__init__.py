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
``detection``           ``task='detect'``, or a         one per class; each kept box's score
                        keras-hub ObjectDetector        (:mod:`.detection` has its target score)
``similarity``          references given to the run     one per reference; the cosine similarity of
                        (never detected)                the embedding to it (:mod:`.similarity`)
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

The score, report and region methods are ``keras.ops`` on whole batches, run inside the explainer's
compiled step on any supported backend (Keras is imported inside them, so ``--help`` stays light).
"""

from __future__ import annotations

from ..errors import UnsupportedModel
from ..graph import input_layer_of, outputs_of
from .base import BINARY_CLASSES, SQUASHES, Head, _is_linear
from .classifiers import BinaryHead, ClassifierHead, MultiLabelHead, RegressionHead, SoftmaxHead
from .detection import DetectionHead, detection_head, is_keras_hub_detector
from .segmentation import BinarySegmentationHead, SegmentationHead
from .similarity import SimilarityHead

__all__ = ["BINARY_CLASSES", "HEADS", "BinaryHead", "BinarySegmentationHead", "ClassifierHead", "DetectionHead", "Head",
           "MultiLabelHead", "RegressionHead", "SegmentationHead", "SoftmaxHead", "detect_head", "detection_head",
           "format_prediction", "head_class", "is_keras_hub_detector", "SimilarityHead"]

HEADS: dict[str, type[Head]] = {head.kind: head for head in
                                (SoftmaxHead, BinaryHead, MultiLabelHead, RegressionHead, SegmentationHead,
                                 BinarySegmentationHead, DetectionHead, SimilarityHead)}


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
