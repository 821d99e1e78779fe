"""What is differentiated: one score per class, computed from the explained output's
pre-activation values ``z`` according to the head (:mod:`gradcam_cli.models.heads`).

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

from typing import Any

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
