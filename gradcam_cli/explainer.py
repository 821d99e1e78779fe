"""The compute core: one compiled graph per (model, layer, method, batch shape, targets mode).

A batch goes through the model once; the gradients of each target's logit with respect to the
target layer are taken in the same graph, so the cost is one forward pass plus one short backward
pass per target. The last, partial batch is padded to the batch size so that it reuses the graph.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import backend
from .errors import MethodError, OptionConflict, TargetError, param, phrase
from .graph import LayerInfo, outputs_of
from .layers import auto_target_layer, branch_note, find_layer
from .methods import CamContext, CamMethod, get_method
from .models.spec import ModelSpec
from .options import RunOptions
from .probe import Probe
from .regions import REGIONS, read_region_mask

log = logging.getLogger("gradcam_cli")
_NOTES_SHOWN: set[str] = set()

SMOOTHING = (None, "aug", "eigen")
# test-time augmentations for --smooth aug: (horizontal flip, brightness factor)
AUGMENTATIONS = tuple((flip, brightness) for flip in (False, True) for brightness in (1.0, 0.9, 1.1))


@dataclass
class BatchResult:
    """Per image: ``heatmaps`` (n, T, h, w) float32 raw maps at the layer's resolution;
    ``class_ids`` (n, T) int; ``probabilities`` (n, C) float32: what the head reports per class
    (probabilities; a regression's output values; a segmentation class's pixel share, see
    :meth:`gradcam_cli.heads.Head.reported`); ``saliency`` (n, T, H, W, C) at the model's input
    size for methods that make one (guided Grad-CAM), else None; ``region_pixels`` (n, T) int, the
    pixels of each target's region for a segmentation head, else None."""

    heatmaps: np.ndarray
    class_ids: np.ndarray
    probabilities: np.ndarray
    saliency: np.ndarray | None = None
    region_pixels: np.ndarray | None = None


def resolve_classes(spec: ModelSpec, classes: list[str | int] | None, num_classes: int) -> list[int] | None:
    """``--class`` values (indices, label names, or the tool's own ``class_N`` spelling of a class
    without a name) to indices, checked against the model."""
    if not classes:
        return None
    indices = []
    labels = spec.class_names
    for value in classes:
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            index = int(text)
        elif labels and text in labels:
            index = labels.index(text)
        elif re.fullmatch(r"class_\d+", text):
            index = int(text[len("class_"):])
        else:
            lowered = [label.lower() for label in labels or []]
            if text.lower() in lowered:
                index = lowered.index(text.lower())
            else:
                import difflib

                hint = ""
                if labels:
                    close = difflib.get_close_matches(text, labels, n=3)
                    hint = f" Did you mean {', '.join(close)}?" if close else ""
                else:
                    hint = f" This model has no labels; pass a class index or {param('labels', 'FILE')}."
                raise TargetError(f"unknown class '{text}'.{hint}")
        if not 0 <= index < num_classes:
            raise TargetError(f"class index {index} is out of range: the model has {num_classes} classes (0..{num_classes - 1}).")
        if index not in indices:  # '--class circle --class 0' is one class, explained once
            indices.append(index)
    return indices


def empty_region_message(source: str, region: str | None, label: str) -> str:
    """The one line for a segmentation class whose region holds no pixel (its map is all zero)."""
    return phrase(f"{source}: the {region} region of class '{label}' is empty (no pixel predicted as it); "
            f"pick another {param('classes')} or use {param('region', 'all')}.")


class Explainer:
    """Computes class activation maps for batches of RGB pixels at the model's input size.

    >>> explainer = Explainer(spec, method="gradcam++")            # doctest: +SKIP
    >>> result = explainer.run(pixels, top_k=1)                     # doctest: +SKIP
    """

    def __init__(
        self,
        spec: ModelSpec,
        method: str | CamMethod = "gradcam",
        layer: str | None = None,
        batch_size: int = 16,
        xla: bool = False,
        smooth: str | None = None,
        chunk_size: int | None = None,
        max_channels: int | None = None,
        region: str | None = None,
        counterfactual: bool = False,
    ):
        backend.check_supported()  # PyTorch: one line, before any work
        if smooth not in SMOOTHING:
            raise MethodError(f"unknown smoothing '{smooth}': use {' or '.join(s for s in SMOOTHING if s)}.")
        self.spec = spec
        self.smooth = smooth
        self.method = get_method(method, eigen_smooth=smooth == "eigen", chunk_size=chunk_size,
                                 max_channels=max_channels)
        self.counterfactual = bool(counterfactual)
        refusal = self.method.counterfactual_refusal() if self.counterfactual else None
        if refusal:
            raise OptionConflict(f"{param('counterfactual')} does not apply to {self.method.name}: a counterfactual "
                                 f"map negates the gradients of the class score, and {refusal}.")
        self.head = spec.head
        self.region = self._region(region)
        self.target: LayerInfo = (find_layer(spec.model, layer) if layer
                                  else auto_target_layer(spec.model, head=self.head))
        self.notes = list(spec.notes) + ([] if layer else
                                         [note for note in [branch_note(spec.model, self.target, self.head)] if note])
        for note in self.notes:
            if note not in _NOTES_SHOWN:  # once a process, however many methods are explained
                _NOTES_SHOWN.add(note)
                log.warning("gradcam: %s", note)
        self.probe = Probe(spec.model, self.target, self.head)
        self.method_state = self.method.prepare(spec, self.probe)
        self.batch_size = int(batch_size)
        self.xla = xla
        self.num_classes = self.head.num_classes
        self._compiled: dict[tuple, Any] = {}
        log.info("target layer: %s %s", self.target.path, self.target.output_shape)

    @classmethod
    def from_options(cls, spec: ModelSpec, options: RunOptions, batch_size: int | None = None,
                     method: str | CamMethod | None = None) -> Explainer:
        """The explainer a run's options describe (``batch_size``, ``method``: this one instead)."""
        overrides = {"method": method, "batch_size": batch_size}
        return cls(spec, **options.explainer_arguments(**{k: v for k, v in overrides.items() if v is not None}))

    def resolve_targets(self, classes: list[int | str] | None, top_k: int) -> list[int] | None:
        """Check ``--class`` values (to indices, each once) or, without them, ``--top-k`` against the
        model. Both at once is refused: explicit classes replace the ranking, so a K > 1 would be ignored."""
        if classes is not None and len(classes) and int(top_k) != 1:
            raise OptionConflict(f"{param('top_k', top_k)} and {param('classes')} cannot be combined: {param('classes')} "
                                 f"names the classes to explain, {param('top_k')} picks each image's K most probable; "
                                 "use one.")
        if classes:
            return resolve_classes(self.spec, list(classes), self.num_classes)
        if not 1 <= int(top_k) <= self.num_classes:
            raise TargetError(f"{param('top_k', top_k)} is out of range: the model has {self.num_classes} classes.")
        return None

    def _region(self, region: str | None):
        """``--region``: 'pred' (the default), 'all' or a mask file, for segmentation heads only."""
        if not self.head.has_regions:
            if region is not None:
                raise TargetError(f"{param('region')} applies to segmentation models; this one's head is "
                                  f"{self.head.describe()}.")
            return None
        if region is None or region in REGIONS:
            return region or "pred"
        output_shape = outputs_of(self.spec.model)[self.head.output_index].shape
        return read_region_mask(region, (int(output_shape[1]), int(output_shape[2])))

    @property
    def region_name(self) -> str | None:
        """How the region was chosen ('pred', 'all', 'mask'), None when the head has no regions."""
        if self.region is None:
            return None
        return self.region if isinstance(self.region, str) else "mask"

    @property
    def layer_name(self) -> str:
        return self.target.path

    @property
    def tracing_count(self) -> int:
        """How many times the compiled steps were traced: one per (targets mode, count) used so far.
        A count that grows while the same kind of batch is run again means a retrace."""
        return sum(backend.tracing_count(step) for step in self._compiled.values())

    def _step(self, explicit: bool, count: int):
        key = (explicit, count)
        if key not in self._compiled:
            self._compiled[key] = self._build_step(explicit, count)
        return self._compiled[key]

    def _build_step(self, explicit: bool, count: int):
        from keras import ops

        probe, method, state, head, region = self.probe, self.method, self.method_state, self.head, self.region
        sign = -1.0 if self.counterfactual else 1.0

        def step(images, class_ids):
            def run(watch, replace):
                """One forward pass: the tapped map, each target's score, and what the step reports."""
                tapped, raw = probe(images, watch=watch, replace=replace)
                regions = head.regions(ops.stop_gradient(raw), region)
                logits = head.scores(raw, regions)
                reported = head.reported(raw, regions)
                targets = class_ids if explicit else ops.top_k(ops.stop_gradient(reported), k=count)[1]
                targets = ops.cast(targets, "int32")
                scores = method.target_scores(logits, targets)  # (B, count): the class's score, or the method's own
                if self.counterfactual:  # Selvaraju et al. 2017, section 3.3: every derivative negated
                    scores = -scores
                return tapped, scores, (ops.stop_gradient(logits), reported, targets, regions)

            # gradients of the tensor the model consumed (before any dtype cast), so it is on the tape
            products = None
            if method.uses_hessian:
                tapped, gradients, products, (logits, reported, targets, regions) = backend.tap_hessian_products(
                    run, count)
            else:
                tapped, gradients, (logits, reported, targets, regions) = backend.tap_gradients(
                    run, count, method.uses_gradients)
            activations = ops.cast(tapped, "float32")
            maps, saliencies = [], []
            for t in range(count):
                gradient = None if gradients is None else ops.cast(gradients[t], "float32")
                product = None if products is None else ops.cast(products[t], "float32")
                context = CamContext(activations, gradient, targets[:, t], logits, images, probe, state, regions,
                                     score_sign=sign, hessian_products=product)
                maps.append(method.cam(context))
                if method.makes_saliency:
                    saliencies.append(method.saliency(context, maps[-1]))
            outputs = [ops.stack(maps, axis=1), targets, reported]
            outputs.append(ops.stack(saliencies, axis=1) if saliencies else ops.zeros((0,)))
            pixels = head.region_pixels(regions)
            outputs.append(ops.zeros((0,), "int32") if pixels is None
                           else ops.take_along_axis(pixels, targets, axis=1))
            return tuple(outputs)

        height, width = self.spec.input_size
        channels = self.spec.channels
        return backend.compile_step(step, [((self.batch_size, height, width, channels), "float32"),
                                           ((self.batch_size, count), "int32")], xla=self.xla)

    def run(
        self,
        images: np.ndarray,
        classes: list[int | str] | np.ndarray | None = None,
        top_k: int = 1,
    ) -> BatchResult:
        """Maps for ``images``: (n, H, W, C) RGB pixels in [0, 255] at the model's input size, not yet
        preprocessed (``spec.preprocess`` is applied here); n may exceed the batch size.

        ``classes``: a list of class indices/labels explained for every image, or an (n, T) integer
        array giving each image its own targets; otherwise each image's ``top_k`` best classes.
        """
        images = np.asarray(images, dtype=np.float32)
        result = self._run_preprocessed(self._preprocess(images), classes, top_k)
        if self.smooth != "aug":
            return result
        return self._augmented(images, result)

    def _preprocess(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.spec.preprocess(images.copy()), dtype=np.float32)

    def _augmented(self, images: np.ndarray, plain: BatchResult) -> BatchResult:
        """Average of the maps over flips and brightness changes, each map flipped back first; the
        targets are those of the unaugmented images (Jacob Gildenblat's "aug smooth" idea)."""
        total = np.zeros_like(plain.heatmaps)
        for flip, brightness in AUGMENTATIONS:
            if not flip and brightness == 1.0:
                total += plain.heatmaps
                continue
            augmented = np.clip(images * brightness, 0, 255)
            if flip:
                augmented = augmented[:, :, ::-1]
            maps = self._run_preprocessed(self._preprocess(augmented), plain.class_ids, 1).heatmaps
            total += maps[..., ::-1] if flip else maps
        return BatchResult(total / len(AUGMENTATIONS), plain.class_ids, plain.probabilities, plain.saliency,
                           plain.region_pixels)

    def _run_preprocessed(self, images: np.ndarray, classes, top_k: int) -> BatchResult:
        per_image = None
        if classes is not None and np.ndim(classes) == 2:
            if int(top_k) != 1:
                raise OptionConflict(f"{param('top_k', top_k)} and per-image {param('classes')} cannot be combined; use one.")
            per_image = np.asarray(classes, np.int32)
            if per_image.min(initial=0) < 0 or per_image.max(initial=0) >= self.num_classes:
                raise TargetError(f"class indices must lie in 0..{self.num_classes - 1}.")
        else:
            classes = self.resolve_targets(classes, top_k)
        explicit = classes is not None
        count = per_image.shape[1] if per_image is not None else len(classes) if explicit else int(top_k)
        results = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            filled = len(chunk)
            if filled < self.batch_size:  # pad instead of retracing for a partial batch
                padding = np.zeros((self.batch_size - filled, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, padding])
            class_ids = np.zeros((self.batch_size, count), np.int32)
            if per_image is not None:
                class_ids[:filled] = per_image[start : start + filled]
            elif explicit:
                class_ids[:] = np.asarray(classes, np.int32)
            outputs = [backend.to_numpy(output) for output in self._step(explicit, count)(chunk, class_ids)]
            results.append([output[:filled] if output.ndim and output.shape[0] else None for output in outputs])
        return BatchResult(*(None if parts[0] is None else np.concatenate(parts)
                             for parts in zip(*results, strict=True)))
