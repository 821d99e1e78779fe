"""Perturbed copies of a batch, built and scored inside one compiled graph per shape.

Every faithfulness metric reads the model's probability of the explained class on altered copies
of each image: pixels deleted (set to zero) or inserted (copied onto a blurred version) in the
order of the map, or the image multiplied by its map. A :class:`PerturbationRunner` receives the
batch once (its pixels, blurred copies, pixel ranks and display maps) and a table of *rows*, one
per copy: ``(item, kind, count, target)``. The graph gathers each row's source, builds the copy,
applies the model's preprocessing and runs the explainer's :class:`~gradcam_cli.probe.Probe`, for
``copies_per_pass`` rows at a time (the memory bound). Python loops only over those chunks. The
probability read is what the head reports (:meth:`gradcam_cli.heads.Head.reported`: softmax,
a binary head's two sigmoid sides, or a multi-label unit's sigmoid).

ROAD's rows (:mod:`.road`) remove pixels by noisy linear imputation (:mod:`.imputation`) instead:
their copies are built by a second compiled step, always XLA-compiled (the imputation is an
iterative solve whose pad-and-slice steps XLA fuses), and scored by a third that applies the
preprocessing and the probe under the runner's own ``xla`` setting; the same chunking bounds both.

Perturbations happen in pixel space, before preprocessing, as the papers define them (RISE's
deletion substrate is a black image, not a zero *after* normalisation). That is possible inside
the graph because every preprocessing this tool knows is affine per pixel, ``x @ M + c`` (scaling,
mean/std normalisation, caffe's RGB->BGR flip): :func:`affine_preprocess` reads ``M`` and ``c`` off
the model's own preprocessing function and checks the fit on random images.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .. import backend
from ..errors import EvaluationError, param
from . import imputation

DELETE, INSERT, MULTIPLY = 0, 1, 2
REMOVE_MOST, REMOVE_LEAST = 3, 4  # ROAD: the first / last `count` pixels of the order imputed
IMPUTED = (REMOVE_MOST, REMOVE_LEAST)
TIE_SEED = 13  # the fixed permutation that orders pixels of equal saliency
RISE_SIGMA = 5 / 224  # RISE's blur: Gaussian, sigma 5 and kernel 11 (radius 5) at 224 px, scaled


@dataclass
class Rows:
    """One row per perturbed copy: ``item`` indexes the (image, target) maps, ``image`` the pixels,
    ``kind`` is DELETE/INSERT/MULTIPLY/REMOVE_MOST/REMOVE_LEAST, ``count`` the pixels deleted,
    inserted or removed, ``target`` the class whose probability is read; ``noise`` (imputed rows
    only, zeros by default) which seeded noise field (:func:`.imputation.noise_fields`) the imputed
    pixels get."""

    item: np.ndarray
    image: np.ndarray
    kind: np.ndarray
    count: np.ndarray
    target: np.ndarray
    noise: np.ndarray | None = None

    FIELDS: ClassVar[tuple[str, ...]] = ("item", "image", "kind", "count", "target", "noise")

    def __post_init__(self) -> None:
        if self.noise is None:
            self.noise = np.zeros(len(self.item), np.int32)

    @staticmethod
    def concatenate(parts: list[Rows]) -> Rows:
        return Rows(*(np.concatenate([getattr(p, f) for p in parts]).astype(np.int32) for f in Rows.FIELDS))

    def select(self, chosen: np.ndarray) -> Rows:
        return Rows(*(getattr(self, f)[chosen] for f in Rows.FIELDS))

    def __len__(self) -> int:
        return len(self.item)


def affine_preprocess(preprocess, size: tuple[int, int], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(M, c)`` with ``preprocess(x) == x @ M + c`` at every pixel, read off ``preprocess`` itself.

    Raises :class:`EvaluationError` when the function is not of that form (a custom one that looks
    at neighbours or is not linear), since the perturbations could then not be built in the graph.
    """
    height, width = size

    def apply(batch: np.ndarray) -> np.ndarray:
        return np.asarray(preprocess(batch.astype(np.float32).copy()), dtype=np.float64)

    probes = np.zeros((channels + 1, height, width, channels), np.float32)
    for channel in range(channels):
        probes[channel + 1, ..., channel] = 100.0
    answers = apply(probes)
    offset = answers[0, 0, 0]
    matrix = (answers[1:, 0, 0] - offset) / 100.0
    check = np.random.default_rng(0).uniform(0, 255, (2, height, width, channels)).astype(np.float32)
    expected = apply(check)
    fitted = check.astype(np.float64) @ matrix + offset
    if expected.shape != fitted.shape or not np.allclose(expected, fitted, rtol=1e-4, atol=1e-3 * (1 + np.abs(expected).max())):
        raise EvaluationError("the model's preprocessing is not a per-pixel affine map (scale, mean, std), "
                              f"so perturbations cannot be built before it; pick {param('preprocess', 'none/scale01/tf/')}"
                              "caffe/torch or an application name.")
    return matrix.astype(np.float32), offset.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _tie_permutation(pixels: int) -> np.ndarray:
    return np.random.default_rng(TIE_SEED).permutation(pixels)


def pixel_ranks(saliency: np.ndarray) -> np.ndarray:
    """(N, H, W) maps -> (N, H, W) int32 ranks: 0 for the most salient pixel, H*W - 1 the least.

    Ties (the flat zero regions a ReLU leaves, or a constant map) are broken by a fixed seeded
    permutation of the pixel positions rather than raster order, so a tie never favours the top
    of the image; reruns give the same order.
    """
    count, height, width = saliency.shape
    permutation = _tie_permutation(height * width)
    flat = saliency.reshape(count, -1)[:, permutation]
    order = permutation[np.argsort(-flat, axis=1, kind="stable")]
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(height * width), order.shape), axis=1)
    return ranks.reshape(count, height, width).astype(np.int32)


@functools.lru_cache(maxsize=16)
def _blur_weights(size: int) -> np.ndarray:
    sigma = RISE_SIGMA * size
    radius = max(1, int(round(sigma)))
    positions = np.arange(size)
    distance = positions[:, None] - positions[None, :]
    weights = np.where(np.abs(distance) <= radius, np.exp(-(distance**2) / (2 * sigma**2)), 0.0)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def blurred(pixels: np.ndarray) -> np.ndarray:
    """RISE's insertion substrate: a Gaussian blur (sigma 5 px at 224, kernel radius sigma, scaled
    to the input side), separable, weights renormalised at the borders (RISE zero-pads instead,
    which darkens the border)."""
    rows = _blur_weights(pixels.shape[1])
    columns = _blur_weights(pixels.shape[2])
    return np.einsum("Hh,nhwc,Ww->nHWc", rows, pixels, columns, optimize=True).astype(np.float32)


class PerturbationRunner:
    """Scores perturbed copies with ``probe`` (the explainer's, shared by all methods of a run).

    ``images_per_batch``: the most images a batch holds (shapes are padded to it, so one graph
    serves every batch); ``copies_per_pass``: perturbed copies per model call (the memory bound).
    The first call fixes the pass size at the most even split of its rows into chunks of at most
    ``copies_per_pass`` (656 rows at 64 a pass -> 11 passes of 60, not 64 with 48 wasted); imputed
    rows (ROAD) get their own pass size the same way, from the first call that has some.
    ``copies_run`` counts the copies that went through the model, padding included, for the
    benchmark's passes-per-image figure.
    """

    def __init__(self, spec, probe, images_per_batch: int, copies_per_pass: int = 64, xla: bool = False):
        if not (probe.head.reports_probability or probe.head.perturbable):
            raise EvaluationError(f"the model's head is {probe.head.describe()}: deletion, insertion, drop, increase "
                                  f"and ROAD read class probabilities; score it with {param('metrics', 'pointing,energy')}.")
        self.probe = probe
        self.size = tuple(spec.input_size)
        self.channels = spec.channels
        self.matrix, self.offset = affine_preprocess(spec.preprocess, self.size, self.channels)
        self.images_per_batch = int(images_per_batch)
        self.copies_per_pass = int(copies_per_pass)
        self.xla = xla
        self.takes_boxes = probe.head.takes_boxes  # a detector: each row reads its item's kept box
        self.copies_run = 0
        self._pass_size: int | None = None
        self._imputed_pass_size: int | None = None
        self._compiled: dict[tuple, Any] = {}

    def _cached(self, key: tuple, build):
        if key not in self._compiled:
            self._compiled[key] = build()
        return self._compiled[key]

    def _even_pass(self, rows: int) -> int:
        chunks = max(1, -(-rows // self.copies_per_pass))
        return max(1, -(-rows // chunks))

    def _read(self, copies, target, kept=None):
        """The reported probability of each copy's ``target`` class: preprocessing as ``x @ M + c``,
        then the probe. A detector's copies (``kept``: each copy's box, (P, 6)) read that box's score
        on the copy instead (:meth:`gradcam_cli.heads.detection.DetectionHead.copy_scores`)."""
        from keras import ops

        model_ready = ops.tensordot(copies, ops.convert_to_tensor(self.matrix), axes=[[3], [0]])
        model_ready = model_ready + ops.convert_to_tensor(self.offset)
        raw = self.probe.logits(model_ready)
        if kept is not None:
            return self.probe.head.copy_scores(raw, kept)
        return ops.take_along_axis(self.probe.head.reported(raw), target[:, None], axis=1)[:, 0]

    def _build(self, items: int):
        from keras import ops

        def score(pixels, substrate, ranks, weights, item, image, kind, count, target, *boxes):
            originals = ops.take(pixels, image, axis=0)
            chosen = ops.take(ranks, item, axis=0)[..., None] < count[:, None, None, None]  # first `count` in order
            kind = kind[:, None, None, None]
            deleted = ops.where(chosen, ops.zeros_like(originals), originals)
            inserted = ops.where(chosen, originals, ops.take(substrate, image, axis=0))
            multiplied = originals * ops.take(weights, item, axis=0)[..., None]
            copies = ops.where(kind == DELETE, deleted, ops.where(kind == INSERT, inserted, multiplied))
            return self._read(copies, target, ops.take(boxes[0], item, axis=0) if boxes else None)

        height, width = self.size
        batch, copies = self.images_per_batch, self._pass_size
        specs = [((batch, height, width, self.channels), "float32"), ((batch, height, width, self.channels), "float32"),
                 ((items, height, width), "int32"), ((items, height, width), "float32"),
                 *(((copies,), "int32") for _ in range(5)), *([((items, 6), "float32")] if self.takes_boxes else [])]
        return backend.compile_step(score, specs, xla=self.xla)

    def _build_imputer(self, items: int, fields: int):
        """Imputed copies: each row's pixels with the first (REMOVE_MOST) or last (REMOVE_LEAST)
        ``count`` of its order removed by noisy linear imputation. Always XLA-compiled."""
        from keras import ops

        height, width = self.size

        def build(pixels, ranks, fields_bank, item, image, kind, count, noise):
            originals = ops.take(pixels, image, axis=0)
            order = ops.take(ranks, item, axis=0)
            count = count[:, None, None]
            removed = ops.where(kind[:, None, None] == REMOVE_MOST, order < count, order >= height * width - count)
            removed = ops.cast(removed[..., None], "float32")  # padded rows (count 0) remove nothing
            solved = imputation.impute(originals, removed)
            return solved + removed * imputation.NOISE_SIGMA * ops.take(fields_bank, noise, axis=0)

        batch, copies = self.images_per_batch, self._imputed_pass_size
        specs = [((batch, height, width, self.channels), "float32"), ((items, height, width), "int32"),
                 ((fields, height, width, self.channels), "float32"), *(((copies,), "int32") for _ in range(5))]
        return backend.compile_step(build, specs, xla=True)

    def _build_reader(self):
        height, width = self.size
        copies = self._imputed_pass_size
        return backend.compile_step(self._read, [((copies, height, width, self.channels), "float32"),
                                                 ((copies,), "int32"),
                                                 *([((copies, 6), "float32")] if self.takes_boxes else [])],
                                    xla=self.xla)

    def probabilities(self, pixels: np.ndarray, substrate: np.ndarray, ranks: np.ndarray, weights: np.ndarray,
                      rows: Rows, boxes: np.ndarray | None = None) -> np.ndarray:
        """(P,) probability of each row's target class on its perturbed copy.

        ``pixels``, ``substrate``: (n, H, W, C) images in [0, 255] and their blurred copies;
        ``ranks``, ``weights``: (m, H, W) pixel order and display map of each (image, target) item;
        ``boxes``: a detector's, (m, 6) each item's kept box (:meth:`gradcam_cli.boxes.Detection.target`),
        whose score on the copy is read in place of a class probability.
        """
        from keras import ops

        batch = self.images_per_batch
        if len(pixels) > batch:
            raise ValueError(f"{len(pixels)} images in one batch; the runner was built for {batch}")
        items = max(batch, int(np.ceil(len(ranks) / batch)) * batch)  # one graph per targets-per-image

        def padded(array: np.ndarray, length: int, dtype) -> Any:
            out = np.zeros((length, *array.shape[1:]), dtype)
            out[: len(array)] = array
            return ops.convert_to_tensor(out)

        def chunks(part: Rows, size: int, fields: tuple[str, ...]):
            for start in range(0, len(part), size):
                stop = min(start + size, len(part))
                self.copies_run += size
                yield start, stop, [padded(getattr(part, f)[start:stop], size, np.int32) for f in fields]

        results = np.empty(len(rows), np.float32)
        imputed = np.isin(rows.kind, IMPUTED)
        if not imputed.all():
            part = rows.select(~imputed)
            if self._pass_size is None:
                self._pass_size = self._even_pass(len(part))
            graph = self._cached(("perturbed", items, self._pass_size), lambda: self._build(items))
            fixed = (padded(pixels, batch, np.float32), padded(substrate, batch, np.float32),
                     padded(ranks, items, np.int32), padded(weights, items, np.float32))
            kept = [padded(boxes, items, np.float32)] if self.takes_boxes else []
            scored = np.empty(len(part), np.float32)
            for start, stop, columns in chunks(part, self._pass_size, Rows.FIELDS[:5]):
                scored[start:stop] = backend.to_numpy(graph(*fixed, *columns, *kept))[: stop - start]
            results[~imputed] = scored
        if imputed.any():
            part = rows.select(imputed)
            if self._imputed_pass_size is None:
                self._imputed_pass_size = self._even_pass(len(part))
            size = self._imputed_pass_size
            bank = imputation.noise_fields(int(part.noise.max()) + 1, self.size, self.channels)
            imputer = self._cached(("imputed", items, size, len(bank)), lambda: self._build_imputer(items, len(bank)))
            reader = self._cached(("read", size), self._build_reader)
            fixed = (padded(pixels, batch, np.float32), padded(ranks, items, np.int32), ops.convert_to_tensor(bank))
            scored = np.empty(len(part), np.float32)
            for start, stop, columns in chunks(part, size, ("item", "image", "kind", "count", "noise", "target")):
                copies = imputer(*fixed, *columns[:5])
                kept = [padded(boxes[part.item[start:stop]], size, np.float32)] if self.takes_boxes else []
                scored[start:stop] = backend.to_numpy(reader(copies, columns[5], *kept))[: stop - start]
            results[imputed] = scored
        return results
