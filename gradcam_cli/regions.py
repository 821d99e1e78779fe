"""Segmentation regions: which pixels each class's score sums over (``--region``).

``pred``: the pixels predicted as the class; ``all``: every pixel; a mask (H, W) array: its nonzero
pixels, the same for every class. Regions are computed once from the unperturbed forward pass and
kept fixed for the extra passes of Score-CAM and Ablation-CAM. The segmentation head
(:class:`gradcam_cli.heads.SegmentationHead`) builds its scores and reported pixel shares on these.

The mask functions are ``keras.ops`` on whole batches, run inside the explainer's compiled step.
"""

from __future__ import annotations

from typing import Any

from .errors import TargetError, param

REGIONS = ("pred", "all")


def predicted_pixels(raw, squash: str, units: int):
    """(B, H, W, C) 1 where a pixel is predicted as the class: the argmax over classes for a
    softmax head, a positive logit for per-pixel sigmoid units (which may overlap)."""
    from keras import ops

    if squash == "sigmoid":
        return ops.cast(raw > 0, "float32")
    return ops.one_hot(ops.argmax(raw, axis=-1), units, dtype="float32")


def region_masks(raw, region: Any, squash: str, units: int):
    """(B, H, W, C) float32 per-class regions of the pre-activation output ``raw``.

    ``region``: 'pred', 'all' or an (H, W) array (nonzero = inside), the same for every class.
    """
    from keras import ops

    if isinstance(region, str) and region == "all":
        return ops.ones_like(raw, dtype="float32")
    if isinstance(region, str) and region == "pred":
        return predicted_pixels(raw, squash, units)
    mask = ops.cast(ops.convert_to_tensor(region) != 0, "float32")[None, :, :, None]
    return ops.broadcast_to(mask, raw.shape)


def region_pixel_counts(regions):
    """(B, C) int32 pixels in each class's region, or None without regions."""
    from keras import ops

    if regions is None:
        return None
    return ops.cast(ops.sum(regions, axis=(1, 2)), "int32")


def read_region_mask(path, size: tuple[int, int]):
    """``--region MASK.png``: a (H, W) uint8 array at the segmentation output's size, 1 inside
    (nonzero pixels of the image's first channel or its alpha), resized with nearest neighbours."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as picture:
            picture.load()
            grey = picture.getchannel("A") if picture.mode in ("RGBA", "LA") else picture.convert("L")
    except (OSError, ValueError) as error:
        raise TargetError(f"{path}: cannot read the {param('region')} mask ({error}); give a PNG whose "
                          "nonzero pixels mark the region.") from None
    mask = np.asarray(grey.resize((size[1], size[0]), Image.NEAREST)) != 0
    if not mask.any():
        raise TargetError(f"{path}: the {param('region')} mask has no nonzero pixel at the model's output size "
                          f"{size[0]}x{size[1]}; mark the region with nonzero pixels.")
    return mask.astype(np.uint8)
