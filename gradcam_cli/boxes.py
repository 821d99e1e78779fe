"""Boxes of an object detector: formats, overlap (IoU), non-max suppression, and the choice of the
boxes a run explains.

Inside the tool a box is ``yxyx`` (top, left, bottom, right) in pixels of the model's input, the
default of keras-hub's detectors. What the tool writes (the manifest's ``box``) is ``[left, top,
right, bottom]`` in pixels of the *original* image (:func:`original_box`): the model's input is the
picture stretched to the input size (:func:`gradcam_cli.decode.model_input`), so each axis scales on
its own.

:func:`pairwise_iou` is written once for NumPy and ``keras.ops`` (``xp``: either module): the
suppression below runs it in NumPy, the detection head's score (:mod:`gradcam_cli.heads.detection`)
in the compiled step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ImageError, OptionConflict, param

BOX_FORMATS = ("yxyx", "xyxy", "xywh", "center_xywh", "center_yxhw")
"""The absolute box formats a detector's box output may use (Keras's ``keras.utils.bounding_boxes``
names); a user's model file gives ``yxyx`` unless it says otherwise."""

NMS_IOU = 0.5
"""Non-max suppression of a model without its own decoder: a box overlapping a better one by more
than this IoU is dropped (keras-hub's ``NonMaxSuppression`` default)."""

MAX_DETECTIONS = 100
"""Boxes a model without its own decoder keeps per image (keras-hub's default)."""


@dataclass(frozen=True)
class Detection:
    """One box the detector kept: ``box`` yxyx in model-input pixels, its ``class_index`` and
    ``score`` (the class probability the decoder ranked it by), ``number``: its position among the
    image's boxes a run may explain (above ``min_score``, of ``classes`` if given), best first."""

    box: tuple[float, float, float, float]
    class_index: int
    score: float
    number: int = 0

    def target(self) -> list[float]:
        """The row the compiled step reads: ``[top, left, bottom, right, class, score]``."""
        return [*self.box, float(self.class_index), self.score]


def box_targets(boxes: list[list]) -> np.ndarray:
    """Per image its kept boxes (:class:`Detection`, or rows of 6 numbers) as the compiled steps read
    them: (n, T, 6) float32, T the most boxes an image has (at least 1), zeros past an image's last."""
    count = max([1, *(len(found) for found in boxes)])
    targets = np.zeros((len(boxes), count, 6), np.float32)
    for index, found in enumerate(boxes):
        for slot, box in enumerate(found):
            targets[index, slot] = box.target() if hasattr(box, "target") else np.asarray(box, np.float32)
    return targets


def to_yxyx(boxes: Any, box_format: str) -> Any:
    """``boxes`` (..., 4) in an absolute ``box_format`` to yxyx, in ``keras.ops`` (numpy in, tensor out)."""
    from keras import ops

    if box_format == "yxyx":
        return boxes
    first, second, third, fourth = (boxes[..., i] for i in range(4))
    if box_format == "xyxy":
        parts = (second, first, fourth, third)
    elif box_format == "xywh":
        parts = (second, first, second + fourth, first + third)
    elif box_format == "center_xywh":
        parts = (second - fourth / 2, first - third / 2, second + fourth / 2, first + third / 2)
    elif box_format == "center_yxhw":
        parts = (first - third / 2, second - fourth / 2, first + third / 2, second + fourth / 2)
    else:
        raise ValueError(f"unknown box format {box_format!r}: one of {', '.join(BOX_FORMATS)}")
    return ops.stack(parts, axis=-1)


def pairwise_iou(boxes: Any, kept: Any, xp: Any = np) -> Any:
    """IoU of every box of ``boxes`` (B, A, 4) with every box of ``kept`` (B, T, 4), both yxyx:
    (B, T, A). ``xp``: ``numpy`` or ``keras.ops``. A box of no area has IoU 0 with everything."""
    kept = kept[:, :, None, :]
    boxes = boxes[:, None, :, :]
    height = xp.maximum(xp.minimum(kept[..., 2], boxes[..., 2]) - xp.maximum(kept[..., 0], boxes[..., 0]), 0.0)
    width = xp.maximum(xp.minimum(kept[..., 3], boxes[..., 3]) - xp.maximum(kept[..., 1], boxes[..., 1]), 0.0)
    overlap = height * width
    area_kept = xp.maximum(kept[..., 2] - kept[..., 0], 0.0) * xp.maximum(kept[..., 3] - kept[..., 1], 0.0)
    area_boxes = xp.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * xp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    union = area_kept + area_boxes - overlap
    return overlap / xp.maximum(union, 1e-9)


def non_max_suppression(boxes: np.ndarray, probabilities: np.ndarray, iou_threshold: float = NMS_IOU,
                        max_detections: int = MAX_DETECTIONS) -> list[Detection]:
    """Greedy non-max suppression of one image's per-anchor ``boxes`` (A, 4) yxyx and class
    ``probabilities`` (A, C), across classes (as keras-hub's ``NonMaxSuppression``): each anchor is
    ranked by its best class, and a box overlapping a better kept one by more than ``iou_threshold``
    is dropped. Returns the kept boxes, best first."""
    confidence = probabilities.max(axis=1)
    classes = probabilities.argmax(axis=1)
    order = np.argsort(-confidence, kind="stable")
    kept: list[Detection] = []
    while order.size and len(kept) < max_detections:
        best, order = order[0], order[1:]
        kept.append(Detection(tuple(float(v) for v in boxes[best]), int(classes[best]), float(confidence[best])))
        if order.size:
            overlaps = pairwise_iou(boxes[None, order], boxes[None, None, best])[0, 0]
            order = order[overlaps <= iou_threshold]
    return kept


def pick_detections(found: list[Detection], source: str, min_score: float, boxes: list[int] | None = None,
                    classes: list[int] | None = None) -> list[Detection]:
    """The boxes one image explains: those of ``found`` (best first) scoring ``min_score`` or more and
    of ``classes`` when given, numbered from 0 in that order; ``boxes`` picks some by number. Raises
    :class:`ImageError` (one line naming ``source``) when none is left or a number is out of range."""
    candidates = [d for d in found if d.class_index in classes] if classes else list(found)
    above = [d for d in candidates if d.score >= min_score]
    if not above:
        which = f" of {param('classes')} {','.join(map(str, classes))}" if classes else ""
        if not candidates:  # lowering min_score cannot help: the decoder's own threshold dropped them
            raise ImageError(f"{source}: the model's decoder kept no box{which} (its own confidence threshold or "
                             f"suppression, which {param('min_score')} cannot lower); nothing to explain.")
        raise ImageError(f"{source}: no detection{which} scores {param('min_score', min_score)} or more (the best "
                         f"scores {_below(candidates[0].score, min_score)}); lower {param('min_score')} to explain "
                         "weaker boxes.")
    numbered = [Detection(d.box, d.class_index, d.score, number) for number, d in enumerate(above)]
    if not boxes:
        return numbered
    wrong = [n for n in boxes if not 0 <= n < len(numbered)]
    if wrong:
        raise ImageError(f"{source}: {param('boxes', wrong[0])} is out of range: {len(numbered)} detection(s) score "
                         f"{param('min_score', min_score)} or more (boxes 0..{len(numbered) - 1}).")
    return [numbered[n] for n in dict.fromkeys(boxes)]


def _below(score: float, limit: float) -> str:
    """``score`` (less than ``limit``) with enough digits to read as less: 0.999998, not 1.000."""
    for digits in range(3, 10):
        text = f"{score:.{digits}f}"
        if float(text) < limit:
            return text
    return repr(score)


def original_box(box: tuple[float, float, float, float], input_size: tuple[int, int],
                 original_size: tuple[int, int]) -> list[float]:
    """A yxyx box in model-input pixels (``input_size``: height, width) as ``[left, top, right,
    bottom]`` in pixels of a picture of ``original_size`` (width, height), clipped to it, to 0.1 px."""
    top, left, bottom, right = box
    height, width = input_size
    scale_x, scale_y = original_size[0] / width, original_size[1] / height
    corners = [left * scale_x, top * scale_y, right * scale_x, bottom * scale_y]
    limits = [original_size[0], original_size[1]] * 2
    return [round(min(max(value, 0.0), limit), 1) for value, limit in zip(corners, limits, strict=True)]


def box_fields(detection: Detection, input_size: tuple[int, int], original_size: tuple[int, int]) -> dict:
    """What a manifest row of an explained box adds: ``box`` ``[left, top, right, bottom]`` in the
    original image's pixels (``original_size``: width, height) and ``box_index``, the box's number."""
    return {"box": original_box(detection.box, input_size, original_size), "box_index": detection.number}


def refuse_box_options(head: Any, min_score: float | None, boxes: list[int] | None) -> None:
    """``min_score`` (None: not given) and ``boxes`` choose a detector's boxes: given for a model whose
    ``head`` is no detector they would be ignored, so they are refused in one line (as ``region`` is
    for a model that does not segment)."""
    given = [param("min_score", min_score) if min_score is not None else None,
             param("boxes", ",".join(map(str, boxes))) if boxes else None]
    given = [text for text in given if text]
    if given and not head.takes_boxes:
        raise OptionConflict(f"{' and '.join(given)} choose{'s' if len(given) == 1 else ''} an object detector's "
                             f"boxes; this model's head is {head.describe()}: leave "
                             f"{'them' if len(given) > 1 else 'it'} out, or give {param('task', 'detect')} for a "
                             "detector.")


def pick_for_batch(found: list[list[Detection]], sources: list[str], min_score: float, boxes: list[int] | None,
                   classes: list[int] | None) -> tuple[list[int], list[list[Detection]], list[tuple[str, str]]]:
    """:func:`pick_detections` for each image of a batch: (the positions of the images that have
    boxes to explain, their boxes, (source, one-line reason) for each image that has none)."""
    kept, picked, failures = [], [], []
    for position, (detections, source) in enumerate(zip(found, sources, strict=True)):
        try:
            picked.append(pick_detections(detections, source, min_score, boxes, classes))
            kept.append(position)
        except ImageError as error:
            failures.append((source, str(error)))
    return kept, picked, failures
