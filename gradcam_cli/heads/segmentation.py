"""Heads of a (batch, H, W, C) output: per-pixel classes scored over a region per class."""

from __future__ import annotations

from ..regions import predicted_pixels, region_masks, region_pixel_counts
from .base import Head, TwoClasses


class SegmentationHead(Head):
    """A (batch, H, W, C) output: per-pixel classes, scored over a region per class."""

    kind = "segmentation"
    has_regions = True
    sorted_by = "pixel share"

    @classmethod
    def recognises(cls, rank, units, squash, activation):
        return rank == 4 and not BinarySegmentationHead.recognises(rank, units, squash, activation)

    def describe(self):
        return f"segmentation, {self.units} classes per pixel"

    def scores(self, raw, regions=None):
        from keras import ops

        return ops.sum(ops.cast(raw, "float32") * regions, axis=(1, 2))

    def reported(self, raw, regions=None):
        """Each class's share of the pixels predicted as it."""
        from keras import ops

        return ops.mean(self.predicted_pixels(ops.cast(raw, "float32")), axis=(1, 2))

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


class BinarySegmentationHead(TwoClasses, SegmentationHead):
    """One sigmoid channel per pixel ``z`` (binary segmentation, edge or saliency maps): the classes
    ``negative`` / ``positive`` as for a binary classifier, the negative class's per-pixel logit the
    negated ``-z``. A pixel is predicted positive where its probability exceeds 0.5 (``z > 0``) and
    negative where it is below, so ``pred`` regions are the foreground and the background."""

    kind = "binary_segmentation"

    @classmethod
    def recognises(cls, rank, units, squash, activation):
        return rank == 4 and units == 1 and squash == "sigmoid"

    def describe(self):
        return "one sigmoid channel per pixel (binary segmentation: negative/positive)"

    def scores(self, raw, regions=None):
        return super().scores(self.both(raw), regions)

    def reported(self, raw, regions=None):
        return super().reported(self.both(raw), regions)

    def predicted_pixels(self, raw):
        return predicted_pixels(raw, "sigmoid", 2)

    def regions(self, raw, region="pred"):
        return region_masks(self.both(raw), region, "sigmoid", 2)
