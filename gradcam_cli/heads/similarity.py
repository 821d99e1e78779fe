"""The similarity head: an embedding scored by its cosine similarity to reference embeddings.

An embedding model (a face or retrieval network, a ``keras.applications`` backbone built with
``include_top=False, pooling='avg'``, a classifier's penultimate layer) has no classes: what it
"predicts" is a direction in feature space. pytorch-grad-cam's ``SimilarityToConceptTarget``
explains it by differentiating the cosine similarity between the image's embedding and a reference
embedding (another image's, or a concept's). This head does the same: its "classes" are the
references (one target per reference), so every gradient method runs unchanged and its map shows
what in the query makes it close to the reference.

Score (:meth:`SimilarityHead.scores`), for the explained embedding ``e`` of one image and the
references' unit vectors ``r_j`` (:class:`gradcam_cli.reference.Reference` computes them once,
before the run, through the same decode path and preprocessing as the queries)::

    score_j = cos(e, r_j) = (e . r_j) / max(|e|, eps)        (|r_j| = 1)

A rank-4 embedding ``(B, h, w, D)`` (a backbone without pooling, a convolutional layer named with
``model_output``) is mean-pooled over its ``h w`` positions first, as a ``GlobalAveragePooling2D``
layer would pool it. What is reported (a manifest row's ``similarity``) is the same cosine, in
[-1, 1]; it is no probability.

The head is never detected from a model's outputs (an embedding's linear units look like a
classifier's logits): :mod:`gradcam_cli.reference` makes it when a run is given references.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import MethodError, param
from .base import Head

RATIO_METRICS = ("drop",)
"""``evaluate``'s metrics refused for a similarity: Average Drop divides by the unaltered image's score,
``max(0, Y - O) / Y``, a ratio that means nothing where ``Y`` is a cosine (0 or negative is possible).
Deletion, insertion, Increase in Confidence and ROAD compare scores, which a cosine allows."""
EPSILON = 1e-12  # a zero embedding (every ReLU feature off) has similarity 0, not NaN
EMBEDDING_RANKS = (2, 4)


SATURATED_COSINE = 1.0 - 1e-5
"""A similarity this close to 1 is at the cosine's maximum (within float32 rounding of a unit vector's
norm): its gradient is zero up to rounding, so its maps are flagged ``rounding_noise``."""


def pooled(raw):
    """(B, D) float32 embeddings: ``raw`` as is (rank 2), or mean-pooled over its positions (rank 4)."""
    from keras import ops

    raw = ops.cast(raw, "float32")
    return ops.mean(raw, axis=(1, 2)) if len(raw.shape) == 4 else raw


def cosine(embeddings, references):
    """(B, R) cosine similarities of (B, D) embeddings with (R, D) unit reference vectors."""
    from keras import ops

    norms = ops.maximum(ops.sqrt(ops.sum(ops.square(embeddings), axis=-1, keepdims=True)), EPSILON)
    return ops.matmul(embeddings / norms, ops.transpose(ops.convert_to_tensor(references, "float32")))


@dataclass(frozen=True)
class SimilarityHead(Head):
    """Cosine similarity of an embedding to references (module docstring); one class per reference.

    ``source`` is 'output' (a model output read as is, its activation included) or 'layer' (an inner
    layer's output, named with ``model_output``); ``units``: the number of references;
    ``references``: their (R, D) unit vectors; ``names``: their labels; ``dimensions``: D;
    ``head_layers``: for an inner layer, the layers computed after it, which the automatic
    target-layer search passes over (their gradients of the score are zero).
    """

    kind: ClassVar[str] = "similarity"
    sorted_by: ClassVar[str] = "similarity"
    perturbable: ClassVar[bool] = True

    references: Any = field(default=None, compare=False, repr=False)
    names: tuple[str, ...] = ()
    dimensions: int = 0

    def describe(self) -> str:
        count = self.units
        return (f"cosine similarity of the {self.dimensions}-dimensional embedding '{self.output_name}' to "
                f"{count} reference{'s' if count != 1 else ''}")

    def default_label(self, index: int) -> str:
        return self.names[index] if 0 <= index < len(self.names) else f"reference_{index}"

    def class_names(self, labels):
        """The references' names (a labels file names a classifier's classes, not these)."""
        return [self.default_label(index) for index in range(self.units)]

    def scores(self, raw, regions=None):
        return cosine(pooled(raw), self.references)

    def reported(self, raw, regions=None):
        from keras import ops

        return ops.clip(self.scores(raw), -1.0, 1.0)  # a unit vector's cosine with itself rounds to 1.000001

    def class_weights(self, kernel):
        """CAM reads a classifier's Dense weights of a class; a cosine similarity has none."""
        raise MethodError(f"{_no_class_weights()}.")

    def method_refusal(self, method) -> str | None:
        if method.reads_class_weights:  # before CAM looks for a Dense layer, which an embedding may not end in
            return _no_class_weights()
        if method.class_agnostic:
            return (f"{method.name} is class-agnostic: its map is the same whatever the reference, so it cannot show "
                    f"what makes the image close to one; use {param('method', 'gradcam')} or another method that "
                    "differentiates the similarity")
        return None

    def row_fields(self, reported: float) -> dict:
        return {"similarity": reported}

    def saturated(self, reported: float) -> bool:
        """A cosine of 1 is its maximum: its gradient vanishes there (the query is the reference, or
        points the same way), and the map is rounding noise."""
        return reported >= SATURATED_COSINE

    def own_layers(self) -> tuple:
        return self.head_layers

    @classmethod
    def format_prediction(cls, label: str, value: float) -> str:
        return f"cosine {value:.3f} to {label}"


def _no_class_weights() -> str:
    return (f"CAM reads the Dense weights of a class, and a similarity to a reference is no class score (a cosine, "
            f"not linear in the features); use {param('method', 'gradcam')}")
