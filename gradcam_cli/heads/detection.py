"""The head of an object detector: per-anchor boxes and class scores, one explained box at a time.

A detector is recognised with ``task='detect'`` (``--task detect``), or by itself when it is a
keras-hub ``ObjectDetector`` (``keras_hub.models.RetinaNetObjectDetector``). Two kinds of model:

- **keras-hub detectors**: outputs ``bbox_regression`` (B, A, 4), box deltas to the anchors of
  ``model.anchor_generator`` (``center_xywh`` encoding), and ``cls_logits`` (B, A, C); the model's own
  ``decode_predictions`` (anchors, then its ``prediction_decoder``, a non-max suppression) gives the
  detections;
- **a user's model** (a file, ``FILE.py:FACTORY``, in memory) with two outputs: per-anchor boxes
  (B, A, 4), already decoded, ``yxyx`` in pixels of the model's input, and class scores (B, A, C):
  probabilities when the output layer ends in a sigmoid or a softmax, else logits, read through a
  sigmoid (as keras-hub's decoder reads its logits). The box output is the one whose name holds
  ``box``, else the first of last size 4. The detections are the tool's non-max suppression
  (:func:`gradcam_cli.boxes.non_max_suppression`).

The score of a kept box
-----------------------
A kept box ``b`` of class ``c`` is explained by the score

    S(b) = sum over anchors a with IoU(box_a, b) >= 0.5 of  p_a(c) * IoU(box_a, b)

where ``box_a`` is the box the model predicts at anchor ``a`` (decoded, before suppression) and
``p_a(c)`` the probability of class ``c`` there. Every anchor reads the kept box's class: an anchor
whose best class is another contributes its (small) probability of ``c`` rather than being cut off,
since a cut-off is a step with no gradient. The matching (IoU at least :data:`IOU_THRESHOLD`) and the
IoU are weights, held fixed: what is differentiated is the class probability at each anchor that
found the box, weighted by how well it found it. (The IoU is not differentiated: the anchor the kept
box came from sits at IoU 1, the maximum, where IoU's min/max corners have no gradient, only
one-sided ones that TensorFlow and JAX break differently; a finite difference there gives 0.) That
anchor's IoU of 1 also makes every kept box's score nonzero.

This follows the target of pytorch-grad-cam's detection tutorial (``FasterRCNNBoxScoreTarget``),
which, for a box, finds the one post-suppression detection that overlaps it most and, when that IoU
exceeds 0.5 and the label is the same, *adds* IoU and score; Grad-CAM (Selvaraju et al. 2017) then
differentiates that sum. Ours differs in three ways, each for a reason:

- before suppression, over anchors: suppression is not differentiable and keeps one anchor per
  object, while every overlapping anchor is evidence the model has for the box;
- a product, not a sum: ``IoU + score`` gives an anchor that overlaps well but hardly believes in the
  class a large score (0.5 or more from the IoU alone); the product is near zero unless the anchor
  both overlaps and scores the class;
- probabilities, not logits (unlike the classifier heads, :mod:`gradcam_cli.heads`): a sum over many
  anchors of logits would let the anchors that reject the class (large negative logits) weigh most,
  and raising their overlap would lower the score. Detections kept above a threshold sit well inside
  the sigmoid's range, where its gradient is not flat.

The reported value of a box is the decoder's own score (its class probability after suppression).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..boxes import Detection, non_max_suppression, pairwise_iou, to_yxyx
from ..errors import UnsupportedModel, param
from ..graph import describe_outputs, iter_layers, outputs_of, producer
from .base import SQUASHES, Head

IOU_THRESHOLD = 0.5
"""An anchor's box counts towards a kept box when their IoU is at least this (pytorch-grad-cam's
``FasterRCNNBoxScoreTarget`` uses 0.5 too)."""

@dataclass(frozen=True)
class DetectionHead(Head):
    """Per-anchor boxes and class scores (module docstring). ``raw`` for this head is the two
    outputs side by side, (B, A, 4 + C): the box values (deltas or boxes), then the class scores."""

    kind: ClassVar[str] = "detection"
    reports_probability: ClassVar[bool] = True
    takes_boxes: ClassVar[bool] = True

    box_output: int = 0
    class_output: int = 1
    box_format: str = "yxyx"
    class_squash: str = "none"  # what turns the class output into probabilities: sigmoid, softmax, none
    anchors: Any = field(default=None, compare=False)  # (A, 4) numpy, keras-hub: deltas are decoded on them
    anchor_format: str = "yxyx"
    input_size: tuple[int, int] = (0, 0)
    decode_predictions: Any = field(default=None, compare=False)  # the model's own decoder (keras-hub)
    output_keys: tuple[str, str] = ("", "")  # its outputs' names, for decode_predictions
    default_layer: str | None = None  # the target layer's path when none is given (module docstring)

    def describe(self):
        """A noun phrase, as the other heads' ("softmax over 5 classes"), read after "this model's head is"."""
        anchors = f" at {self.anchors.shape[0]} anchors" if self.anchors is not None else ""
        classes = f"{self.units} class{'es' if self.units != 1 else ''}"
        return f"an object detector (per-anchor boxes and scores for {classes}{anchors})"

    def select_output(self, outputs: list) -> Any:
        """The model's flattened outputs to this head's ``raw``: boxes then class scores, (B, A, 4 + C)."""
        from keras import ops

        return ops.concatenate([ops.cast(outputs[self.box_output], "float32"),
                                ops.cast(outputs[self.class_output], "float32")], axis=-1)

    def anchor_boxes(self, raw):
        """(B, A, 4) yxyx boxes in model-input pixels predicted at each anchor, in ``keras.ops``."""
        import keras

        boxes = keras.ops.cast(raw[..., :4], "float32")
        if self.anchors is not None:  # keras-hub: decoded as its decode_predictions decodes them
            height, width = self.input_size
            boxes = keras.utils.bounding_boxes.decode_deltas_to_boxes(
                anchors=keras.ops.convert_to_tensor(self.anchors, "float32"), boxes_delta=boxes,
                encoded_format="center_xywh", anchor_format=self.anchor_format, box_format=self.box_format,
                image_shape=(height, width, 3))
        return to_yxyx(boxes, self.box_format)

    def probabilities(self, raw):
        """(B, A, C) class probabilities at each anchor."""
        from keras import ops

        scores = raw[..., 4:]
        if self.class_squash == "sigmoid":
            return ops.sigmoid(scores)
        if self.class_squash == "softmax":
            return ops.softmax(scores, axis=-1)
        return scores

    def scores(self, raw, regions=None):
        """(B, T) scores of the kept boxes ``regions`` (B, T, 6): ``[top, left, bottom, right, class,
        score]`` each (:meth:`gradcam_cli.boxes.Detection.target`), by the module docstring's formula."""
        from keras import ops

        raw = ops.cast(raw, "float32")
        overlap = ops.stop_gradient(pairwise_iou(self.anchor_boxes(raw), regions[..., :4], xp=ops))  # (B, T, A)
        matched = ops.cast(overlap >= IOU_THRESHOLD, "float32")
        wanted = ops.one_hot(ops.cast(regions[..., 4], "int32"), self.units)  # (B, T, C)
        class_probability = ops.einsum("btc,bac->bta", wanted, self.probabilities(raw))
        return ops.sum(matched * overlap * class_probability, axis=-1)

    def reported(self, raw, regions=None):
        """(B, T) each kept box's own score, as the decoder gave it."""
        from keras import ops

        return ops.cast(regions[..., 5], "float32")

    def copy_scores(self, raw, kept):
        """(P,) the score of each copy's kept box on that copy (``evaluate``'s deletion, insertion,
        drop, increase and ROAD read it): ``raw`` (P, A, 4 + C), the model on P perturbed copies;
        ``kept`` (P, 6), the box each copy's map explains. The score is the best matching anchor's
        ``p_a(c) * IoU(box_a, b)`` (matching: IoU at least :data:`IOU_THRESHOLD`): how strongly the
        altered image still yields that detection. On the unaltered image it is the box's own score
        (its anchor sits at IoU 1, and suppression left no overlapping anchor surer of the class);
        it lies in [0, 1] as a probability does, where the explained sum ``S(b)`` has no bound."""
        from keras import ops

        raw = ops.cast(raw, "float32")
        overlap = pairwise_iou(self.anchor_boxes(raw), kept[:, None, :4], xp=ops)[:, 0]  # (P, A)
        wanted = ops.one_hot(ops.cast(kept[:, 4], "int32"), self.units)  # (P, C)
        class_probability = ops.sum(self.probabilities(raw) * wanted[:, None, :], axis=-1)  # (P, A)
        return ops.max(ops.where(overlap >= IOU_THRESHOLD, overlap * class_probability, 0.0), axis=-1)

    def detect(self, raw: np.ndarray, images: np.ndarray) -> list[list[Detection]]:
        """Every image's detections, best first, from ``raw`` (B, A, 4 + C) computed on ``images``
        (the model-ready batch): the model's own decoder where it has one, else the tool's
        non-max suppression."""
        import keras

        if self.decode_predictions is not None:
            outputs = dict(zip(self.output_keys, (raw[..., :4], raw[..., 4:]), strict=True))
            decoded = self.decode_predictions(outputs, images)
            boxes = np.asarray(keras.ops.convert_to_numpy(to_yxyx(decoded["boxes"], self.box_format)))
            confidence = keras.ops.convert_to_numpy(decoded["confidence"])
            labels = keras.ops.convert_to_numpy(decoded["labels"])
            counts = keras.ops.convert_to_numpy(decoded["num_detections"])
            return [[Detection(tuple(float(v) for v in boxes[i, j]), int(labels[i, j]), float(confidence[i, j]))
                     for j in range(int(counts[i]))] for i in range(len(raw))]
        boxes = keras.ops.convert_to_numpy(self.anchor_boxes(raw))
        probabilities = keras.ops.convert_to_numpy(self.probabilities(keras.ops.convert_to_tensor(raw)))
        return [non_max_suppression(boxes[i], probabilities[i]) for i in range(len(raw))]

    def row_fields(self, reported):
        return {"score": reported}

    def own_layers(self):
        """The layers that make the per-anchor outputs: their maps are the outputs themselves."""
        return self.head_layers


def is_keras_hub_detector(model) -> bool:
    """A keras-hub ``ObjectDetector`` (RetinaNet): anchors, a prediction decoder and its decode step."""
    return all(hasattr(model, name) for name in ("anchor_generator", "prediction_decoder", "decode_predictions"))


def detection_head(model, input_size: tuple[int, int]) -> DetectionHead:
    """The detection head of ``model`` at ``input_size`` (height, width), or :class:`UnsupportedModel`
    saying what a detector's outputs must be."""
    if is_keras_hub_detector(model):
        return _keras_hub_head(model, input_size)
    outputs = outputs_of(model)
    ranks = [len(info.shape) for info in outputs]
    boxes = [i for i, info in enumerate(outputs) if len(info.shape) == 3 and info.shape[-1] == 4]
    named = [i for i in boxes if "box" in outputs[i].name.lower()]
    box_output = (named or boxes or [None])[0]
    if len(outputs) != 2 or ranks != [3, 3] or box_output is None:
        raise UnsupportedModel(
            f"{model.name}: {param('task', 'detect')} needs two outputs, per-anchor boxes (batch, anchors, 4) "
            f"and class scores (batch, anchors, classes); this model has {len(outputs)}: "
            f"{describe_outputs(model) or 'none'}.")
    class_output = 1 - box_output
    if outputs[0].shape[1] != outputs[1].shape[1]:
        raise UnsupportedModel(f"{model.name}: the box output has {outputs[box_output].shape[1]} anchors and the class "
                               f"output {outputs[class_output].shape[1]}; {param('task', 'detect')} needs one box and one "
                               "class score per anchor.")
    layer = outputs[class_output].layer
    squash = "none" if _ends_in_squash(layer) else "sigmoid"
    return DetectionHead(source="output", layer=layer, squash="sigmoid", units=int(outputs[class_output].shape[-1]),
                         output_index=box_output, output_name=outputs[box_output].name,
                         head_layers=_own_layers(model, [info.layer for info in outputs]),
                         box_output=box_output, class_output=class_output, class_squash=squash,
                         input_size=tuple(input_size))


def _keras_hub_head(model, input_size) -> DetectionHead:
    import keras

    height, width = input_size
    levels = model.anchor_generator(np.zeros((1, height, width, 3), np.float32))
    anchors = np.concatenate([keras.ops.convert_to_numpy(levels[key]) for key in levels], axis=0)
    keys = keras.tree.flatten({"bbox_regression": "bbox_regression", "cls_logits": "cls_logits"})
    decoder = model.prediction_decoder
    return DetectionHead(source="output", layer=None, squash="sigmoid", units=int(model.num_classes),
                         output_index=keys.index("bbox_regression"), output_name="bbox_regression",
                         head_layers=tuple(layer for layer in (getattr(model, "box_head", None),
                                                               getattr(model, "classification_head", None)) if layer),
                         box_output=keys.index("bbox_regression"), class_output=keys.index("cls_logits"),
                         box_format=model.bounding_box_format,
                         class_squash="sigmoid" if getattr(decoder, "from_logits", True) else "none",
                         anchors=anchors, anchor_format=model.anchor_generator.bounding_box_format,
                         input_size=tuple(input_size), decode_predictions=model.decode_predictions,
                         output_keys=("bbox_regression", "cls_logits"), default_layer=_pyramid_input(model))


def _pyramid_input(model) -> str | None:
    """The path of the image encoder's map that feeds the feature pyramid's finest level (P3 of a
    RetinaNet, stride 8): every level's predictions depend on it (through the lateral connection of
    that level and the encoder's later stages), so a box found at any level has a map there, and it
    is the finest map the pyramid reads (docs/detection.md)."""
    backbone = getattr(model, "backbone", None)
    encoder = getattr(backbone, "image_encoder", None)
    pyramid = getattr(encoder, "pyramid_outputs", None) or {}
    level = f"P{getattr(backbone, 'min_level', 3)}"
    layer = producer(pyramid[level]) if level in pyramid else None
    if layer is None:
        return None
    return next((info.path for info in iter_layers(model) if info.layer is layer), None)


def _ends_in_squash(layer) -> bool:
    """Whether the class output is probabilities: walking back through layers without weights
    (a reshape), the first one that squashes (a Softmax layer, a sigmoid or softmax activation)."""
    while layer is not None:
        activation = getattr(getattr(layer, "activation", None), "__name__", None)
        if activation in SQUASHES or type(layer).__name__ == "Softmax":
            return True
        if getattr(layer, "weights", None) or isinstance(getattr(layer, "input", None), (list, tuple)):
            return False
        layer = producer(layer.input)
    return False


def _own_layers(model, output_layers: list) -> tuple:
    """Walking back from each output through layers without weights (reshape, concatenate,
    activations, adding anchors), up to and including the first layer with weights (the per-anchor
    convolution): their maps are the outputs themselves, so the automatic target-layer search passes
    them over."""
    own, queue = [], list(output_layers)
    while queue:
        layer = queue.pop()
        if layer is None or any(layer is seen for seen in own):
            continue
        own.append(layer)
        if not getattr(layer, "weights", None):
            inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
            queue.extend(producer(tensor) for tensor in inputs)
    return tuple(own)
