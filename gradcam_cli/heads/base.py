"""The head base class: what every kind of head answers (see :mod:`gradcam_cli.heads`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

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
    takes_boxes: ClassVar[bool] = False  # a detector: its targets are kept boxes (heads/detection.py)
    perturbable: ClassVar[bool] = False  # no probability, yet evaluate may read it on perturbed copies (similarity)

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

    def select_output(self, outputs: list) -> Any:
        """The explained output among the model's flattened ``outputs``."""
        return outputs[self.output_index]

    def scores(self, raw, regions=None):
        """(B, num_classes) float32 scores whose gradients the methods use (module docstring)."""
        from keras import ops

        return ops.cast(raw, "float32")

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

    def method_refusal(self, method) -> str | None:
        """Why ``method`` (a :class:`~gradcam_cli.methods.CamMethod`) cannot explain this head, or None."""
        return None

    def row_fields(self, reported: float) -> dict:
        """What a manifest row adds for this head, given the target's reported value."""
        return {}

    def saturated(self, reported: float) -> bool:
        """Whether the score sits at a maximum where it has no gradient, so that any gradient map of it
        is rounding noise (a similarity of 1: the query is its reference)."""
        return False

    def own_layers(self) -> tuple:
        """The head's own layers, passed over by the automatic target-layer search."""
        return ()

    @classmethod
    def format_prediction(cls, label: str, value: float) -> str:
        """One prediction as printed: ``cat 93.1%``, ``value = 3.2100``, ``road 41.0% of pixels``."""
        return f"{label} {value:.1%}"


class TwoClasses:
    """Mixed into the heads of one sigmoid output ``z`` (a unit, or a channel per pixel): the classes
    ``negative`` / ``positive`` (or a labels file's two names), the negative class's logit ``-z``
    (since ``1 - sigmoid(z) = sigmoid(-z)``). Listed before the head class it is mixed into."""

    own_class_names = BINARY_CLASSES

    @property
    def num_classes(self):
        return 2

    def default_label(self, index):
        return BINARY_CLASSES[index]

    @staticmethod
    def both(raw):
        """The two classes' logits ``(-z, z)`` along the last axis."""
        from keras import ops

        raw = ops.cast(raw, "float32")
        return ops.concatenate([-raw, raw], axis=-1)

    def class_weights(self, kernel):
        """``(-w, w)``: the negative class's score is the negated logit."""
        import numpy as np

        return np.concatenate([-kernel, kernel], axis=1)
