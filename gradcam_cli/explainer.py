"""The compute core: one compiled graph per (model, layer, method, batch shape, targets mode).

A batch goes through the model once; the gradients of each target's logit with respect to the
target layer are taken in the same graph, so the cost is one forward pass plus one short backward
pass per target. The last, partial batch is padded to the batch size so that it reuses the graph.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import backend
from .boxes import box_targets
from .errors import MethodError, OptionConflict, TargetError, param
from .graph import LayerInfo, outputs_of
from .layers import auto_target_layer, branch_note, find_layer, layer_names
from .methods import CamContext, CamMethod, get_method, tuning_for
from .methods.base import COMBINE, ROUNDING_BALANCE, combine_layer_maps
from .models.spec import ModelSpec
from .options import TUNING_FIELDS, RunOptions
from .probe import LayersProbe, Probe
from .regions import REGIONS, read_region_mask
from .targets import resolve_classes

log = logging.getLogger("gradcam_cli")
_NOTES_SHOWN: set[str] = set()

SMOOTHING = (None, "aug", "eigen")
# test-time augmentations for --smooth aug: (horizontal flip, brightness factor)
AUGMENTATIONS = tuple((flip, brightness) for flip in (False, True) for brightness in (1.0, 0.9, 1.1))


@dataclass
class BatchResult:
    """Per image: ``heatmaps`` (n, T, h, w) float32 raw maps at the layer's resolution (several
    layers: their combined map, at the finest layer's);
    ``class_ids`` (n, T) int; ``probabilities`` (n, C) float32: what the head reports per class
    (probabilities; a regression's output values; a segmentation class's pixel share, see
    :meth:`gradcam_cli.heads.Head.reported`); ``saliency`` (n, T, H, W, C) at the model's input
    size for methods that make one (guided Grad-CAM), else None; ``region_pixels`` (n, T) int, the
    pixels of each target's region for a segmentation head, else None; ``balance`` (n, T), how large each
    map's channel sum is next to its terms (:meth:`CamMethod.cam_and_balance`), else None."""

    heatmaps: np.ndarray
    class_ids: np.ndarray
    probabilities: np.ndarray
    saliency: np.ndarray | None = None
    region_pixels: np.ndarray | None = None
    balance: np.ndarray | None = None

    def rounding_noise(self, image: int, rank: int) -> bool | None:
        """Whether a map is rounding noise (its channel sum under :data:`ROUNDING_BALANCE` of its
        terms, :meth:`CamMethod.cam_and_balance`); None where the method's map is not such a sum."""
        if self.balance is None:
            return None
        return bool(self.balance[image, rank] < ROUNDING_BALANCE)


class Explainer:
    """Computes class activation maps for batches of RGB pixels at the model's input size.

    >>> explainer = Explainer(spec, method="gradcam++")            # doctest: +SKIP
    >>> result = explainer.run(pixels, top_k=1)                     # doctest: +SKIP
    """

    def __init__(
        self,
        spec: ModelSpec,
        method: str | CamMethod = "gradcam",
        layer: str | list[str] | None = None,
        batch_size: int = 16,
        xla: bool = False,
        smooth: str | None = None,
        chunk_size: int | None = None,
        max_channels: int | None = None,
        region: str | None = None,
        counterfactual: bool = False,
        combine: str | None = None,
        tuning: dict | None = None,
    ):
        backend.check_supported()  # PyTorch: one line, before any work
        if smooth not in SMOOTHING:
            raise MethodError(f"unknown smoothing '{smooth}': use {' or '.join(s for s in SMOOTHING if s)}.")
        self.spec = spec
        self.smooth = smooth
        unknown = sorted(set(tuning or {}) - set(TUNING_FIELDS))
        if unknown:
            raise OptionConflict(f"unknown tuning option '{unknown[0]}': use {', '.join(TUNING_FIELDS)}.")
        self.method = get_method(method, tuning=tuning, eigen_smooth=smooth == "eigen", chunk_size=chunk_size,
                                 max_channels=max_channels)
        self.tuning = {key: value for key, value in (tuning or {}).items() if value is not None}
        self.counterfactual = bool(counterfactual)
        refusal = self.method.counterfactual_refusal() if self.counterfactual else None
        if refusal:
            raise OptionConflict(f"{param('counterfactual')} does not apply to {self.method.name}: a counterfactual "
                                 f"map negates the gradients of the class score, and {refusal}.")
        self.head = spec.head
        refused = self.head.method_refusal(self.method)  # e.g. a class-agnostic method on a similarity
        if refused:
            raise MethodError(f"{refused}.")
        if self.head.takes_boxes and smooth == "aug":
            raise OptionConflict(f"{param('smooth', 'aug')} flips the images, and a detector's boxes would have to "
                                 f"flip with them; use {param('smooth', 'eigen')} or none.")
        self.region = self._region(region)
        layer = layer or getattr(self.head, "default_layer", None)  # a detector's pyramid level (heads/detection.py)
        names = layer_names(layer)
        found = [find_layer(spec.model, name) for name in names] or [auto_target_layer(spec.model, head=self.head)]
        # several layers: each map computed in the same pass, then combined (``combine``, methods/base.py)
        self.targets: list[LayerInfo] = list({(id(info.layer), info.tap): info for info in found}.values())
        self.target: LayerInfo = self.targets[0]
        self.combine = self._combine(combine)
        self.notes = list(spec.notes) + ([] if names else
                                         [note for note in [branch_note(spec.model, self.target, self.head)] if note])
        for note in self.notes:
            if note not in _NOTES_SHOWN:  # once a process, however many methods are explained
                _NOTES_SHOWN.add(note)
                log.warning("gradcam: %s", note)
        self.probes = [Probe(spec.model, target, self.head) for target in self.targets]
        self.probe = self.probes[0]
        self.method_states = [self.method.prepare(spec, probe) for probe in self.probes]
        self.method_state = self.method_states[0]
        self.batch_size = int(batch_size)
        self.xla = xla
        self.num_classes = self.head.num_classes
        self._compiled: dict[tuple, Any] = {}
        self._detect_step = None  # a detector's forward pass (detect)
        for target in self.targets:
            log.info("target layer: %s %s", target.path, target.output_shape)

    @classmethod
    def from_options(cls, spec: ModelSpec, options: RunOptions, batch_size: int | None = None,
                     method: str | CamMethod | None = None) -> Explainer:
        """The explainer a run's options describe (``batch_size``, ``method``: this one instead, with the
        part of the options' ``tuning`` that tunes it: a run of several methods checks the rest once,
        :func:`~gradcam_cli.methods.check_tuning`)."""
        overrides = {"method": method, "batch_size": batch_size}
        if method is not None:
            overrides["tuning"] = tuning_for(method, options.tuning) or {}
        return cls(spec, **options.explainer_arguments(**{k: v for k, v in overrides.items() if v is not None}))

    def _combine(self, combine: str | None) -> str | None:
        """``combine`` checked against the layers and the method: None for one layer, else how the
        layers' maps are combined ('mean' unless given)."""
        if combine is not None and combine not in COMBINE:
            raise OptionConflict(f"unknown {param('combine', combine)}: use {' or '.join(COMBINE)}.")
        if len(self.targets) < 2:
            if combine is not None:
                raise OptionConflict(f"{param('combine', combine)} combines the maps of several layers: give two or "
                                     f"more with {param('layer')}, or leave {param('combine')} out.")
            return None
        refusal = self.method.several_layers_refusal()
        if refusal:
            raise OptionConflict(f"{self.method.name} cannot map several layers at once: {refusal}; give one "
                                 f"{param('layer')} or use another {param('method')}.")
        return combine or COMBINE[0]

    def resolve_targets(self, classes: list[int | str] | None, top_k: int) -> list[int] | None:
        """Check ``--class`` values (to indices, each once) or, without them, ``--top-k`` against the
        model. Both at once is refused: explicit classes replace the ranking, so a K > 1 would be ignored.
        A detector's targets are its boxes (``classes`` keeps those of the classes named)."""
        if self.head.takes_boxes and int(top_k) != 1:
            raise OptionConflict(f"{param('top_k', top_k)} ranks a classifier's classes; a detector explains each box "
                                 f"scoring {param('min_score')} or more (pick some with {param('boxes')}).")
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
        """The target layer's path; several layers' paths joined by '+'."""
        return "+".join(self.layer_paths)

    @property
    def layer_paths(self) -> list[str]:
        return [target.path for target in self.targets]

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

        method, states, head, region, probes = self.method, self.method_states, self.head, self.region, self.probes
        several = len(probes) > 1
        probe = LayersProbe(probes) if several else self.probe  # several: every layer tapped in one pass
        sign = -1.0 if self.counterfactual else 1.0

        def step(images, class_ids, *kept_boxes):
            def run(watch, replace):
                """One forward pass: the tapped map, each target's score, and what the step reports."""
                tapped, raw = probe(images, watch=watch, replace=replace)
                # a detector's targets are its kept boxes (B, count, 6), given; else the head's regions
                regions = kept_boxes[0] if kept_boxes else head.regions(ops.stop_gradient(raw), region)
                logits = head.scores(raw, regions)
                reported = head.reported(raw, regions)
                targets = class_ids if explicit else ops.top_k(ops.stop_gradient(reported), k=count)[1]
                targets = ops.cast(targets, "int32")
                scores = method.target_scores(logits, targets)  # (B, count): the class's score, or the method's own
                if self.counterfactual:  # Selvaraju et al. 2017, section 3.3: every derivative negated
                    scores = -scores
                return tapped, scores, (ops.stop_gradient(logits), reported, targets, regions)

            # gradients of the tensor the model consumed (before any dtype cast), so it is on the tape;
            # below, per target t and layer i: gradients[t][i], products[t][i]
            products = None
            if several and method.uses_gradients:
                tapped, gradients, (logits, reported, targets, regions) = backend.taps_gradients(run, count)
            elif several:
                tapped, _, (logits, reported, targets, regions) = run(None, None)
                gradients = None
            elif method.uses_hessian:
                tapped, gradients, products, (logits, reported, targets, regions) = backend.tap_hessian_products(
                    run, count)
                tapped, gradients, products = [tapped], [[g] for g in gradients], [[p] for p in products]
            else:
                tapped, gradients, (logits, reported, targets, regions) = backend.tap_gradients(
                    run, count, method.uses_gradients)
                tapped, gradients = [tapped], None if gradients is None else [[g] for g in gradients]
            layers_activations = [ops.cast(activations, "float32") for activations in tapped]
            maps, saliencies, balances = [], [], []
            for t in range(count):
                contexts = [CamContext(activations, None if gradients is None else ops.cast(gradients[t][i], "float32"),
                                       targets[:, t], logits, images, probes[i], states[i], regions, score_sign=sign,
                                       hessian_products=None if products is None
                                       else ops.cast(products[t][i], "float32"))
                            for i, activations in enumerate(layers_activations)]
                layered = [method.cam_and_balance(context) for context in contexts]  # (map, balance) per layer
                layer_maps = [layer_map for layer_map, _ in layered]
                if layered[0][1] is not None:  # the least balanced layer: a noise layer spoils a combination
                    balances.append(ops.min(ops.stack([balance for _, balance in layered], axis=1), axis=1))
                maps.append(combine_layer_maps(layer_maps, self.combine) if several else layer_maps[0])
                if method.makes_saliency:  # guided Grad-CAM: guided backpropagation x the (combined) map
                    saliencies.append(method.saliency(contexts[0], maps[-1]))
            outputs = [ops.stack(maps, axis=1), targets, reported]
            outputs.append(ops.stack(saliencies, axis=1) if saliencies else ops.zeros((0,)))
            pixels = head.region_pixels(regions)
            outputs.append(ops.zeros((0,), "int32") if pixels is None
                           else ops.take_along_axis(pixels, targets, axis=1))
            outputs.append(ops.stack(balances, axis=1) if balances else ops.zeros((0,)))
            return tuple(outputs)

        height, width = self.spec.input_size
        channels = self.spec.channels
        specs = [((self.batch_size, height, width, channels), "float32"), ((self.batch_size, count), "int32")]
        if head.takes_boxes:
            specs.append(((self.batch_size, count, 6), "float32"))
        return backend.compile_step(step, specs, xla=self.xla)

    def run(
        self,
        images: np.ndarray,
        classes: list[int | str] | np.ndarray | None = None,
        top_k: int = 1,
        boxes: list | None = None,
    ) -> BatchResult:
        """Maps for ``images``: (n, H, W, C) RGB pixels in [0, 255] at the model's input size, not yet
        preprocessed (``spec.preprocess`` is applied here); n may exceed the batch size.

        ``classes``: a list of class indices/labels explained for every image, or an (n, T) integer
        array giving each image its own targets; otherwise each image's ``top_k`` best classes.
        ``boxes``: a detector's (:meth:`detect`): per image, the kept boxes to explain
        (:class:`~gradcam_cli.boxes.Detection`); ``class_ids`` are then their classes, -1 where an
        image has fewer boxes than the most of the batch, and ``probabilities`` (n, T) their scores.
        """
        images = np.asarray(images, dtype=np.float32)
        if self.head.takes_boxes:
            return self._run_boxes(self._preprocess(images), boxes)
        result = self._run_preprocessed(self._preprocess(images), classes, top_k)
        if self.smooth != "aug":
            return result
        return self._augmented(images, result)

    def detect(self, images: np.ndarray) -> list:
        """A detector's detections, per image, best first (:meth:`gradcam_cli.heads.DetectionHead.detect`):
        ``images`` as for :meth:`run`; one forward pass, compiled for the batch size, then the model's
        decoder (or the tool's non-max suppression)."""
        if self._detect_step is None:
            self._detect_step = backend.compile_step(
                lambda chunk: self.probe.logits(chunk),
                [((self.batch_size, *self.spec.input_size, self.spec.channels), "float32")], xla=self.xla)
        prepared = self._preprocess(np.asarray(images, dtype=np.float32))
        found: list = []
        for start in range(0, len(prepared), self.batch_size):
            chunk, filled = self._padded(prepared[start : start + self.batch_size])
            raw = backend.to_numpy(self._detect_step(chunk))
            found += self.head.detect(raw, chunk)[:filled]
        return found

    def _padded(self, chunk: np.ndarray) -> tuple[np.ndarray, int]:
        """``chunk`` padded with zeros to the batch size (the compiled shape), and how many are real."""
        filled = len(chunk)
        if filled < self.batch_size:
            chunk = np.concatenate([chunk, np.zeros((self.batch_size - filled, *chunk.shape[1:]), chunk.dtype)])
        return chunk, filled

    def _run_boxes(self, images: np.ndarray, boxes: list | None) -> BatchResult:
        """:meth:`run` for a detector: each image's ``boxes`` are its targets (slots 0..T-1 of the step)."""
        if boxes is None or len(boxes) != len(images):
            raise TargetError("a detector explains boxes: pass each image's boxes to explain (Explainer.detect "
                              f"finds them); got {'none' if boxes is None else len(boxes)} for {len(images)} image(s).")
        targets = box_targets(boxes)
        count = targets.shape[1]
        if targets[..., 4].min(initial=0) < 0 or targets[..., 4].max(initial=0) >= self.num_classes:
            raise TargetError(f"box classes must lie in 0..{self.num_classes - 1}.")
        slots = np.broadcast_to(np.arange(count, dtype=np.int32), (self.batch_size, count)).copy()
        results = []
        for start in range(0, len(images), self.batch_size):
            chunk, filled = self._padded(images[start : start + self.batch_size])
            kept = self._padded(targets[start : start + self.batch_size])[0]
            outputs = [backend.to_numpy(output) for output in self._step(True, count)(chunk, slots, kept)]
            results.append([output[:filled] if output.ndim and output.shape[0] else None for output in outputs])
        result = BatchResult(*(None if parts[0] is None else np.concatenate(parts) for parts in zip(*results, strict=True)))
        given = np.asarray([[slot < len(found) for slot in range(count)] for found in boxes])
        result.class_ids = np.where(given, targets[..., 4].astype(np.int32), -1)
        return result

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
                           plain.region_pixels, plain.balance)

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
