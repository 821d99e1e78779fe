"""Watch where a model looks while it trains: a Keras callback writing class activation maps.

At the end of every ``every``-th epoch, :class:`GradCAMCallback` explains a fixed set of images
with the model being trained and writes, for each method, one grid of overlays to TensorBoard
(``tf.summary.image``, step = the epoch index Keras reports, counted from 0 like Keras' own
``TensorBoard`` callback) and, optionally, to PNG files. tf-explain's callbacks did this for
Keras 2; this one runs on Keras 3.

It uses the CLI's explainer (:class:`gradcam_cli.explainer.Explainer`) on the model itself, not a copy:
the compiled step is built at the first epoch end and reads the model's variables when it runs,
so later epochs see the new weights without retracing. ``tracing_count`` lets a test verify it.

>>> import keras                                                       # doctest: +SKIP
>>> from gradcam_cli.callbacks import GradCAMCallback                      # doctest: +SKIP
>>> callback = GradCAMCallback(x_val[:16], classes=y_val[:16], log_dir="logs/gradcam")  # doctest: +SKIP
>>> model.fit(x, y, epochs=10, callbacks=[callback])                   # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from . import outputs, render
from .decode import model_input
from .errors import (
    GradcamError,
    ImageError,
    MethodError,
    OptionConflict,
    OutputError,
    TargetError,
    param,
)
from .explainer import BatchResult, Explainer
from .graph import model_input_size
from .keywords import check_alpha, check_colormap, check_text, check_whole_number
from .layers import layer_names
from .methods import canonical_name, check_tuning
from .models.in_memory import spec_for_model
from .models.spec import ModelSpec
from .options import DEFAULT_ALPHA, RunOptions
from .pictures import as_images, listed_images
from .quiet import quiet_own_retracing
from .targets import resolve_classes

DATASET_BATCH = 16  # images taken from an unbatched tf.data.Dataset


class GradCAMCallback(keras.callbacks.Callback):
    """Explain ``images`` with the model under training every ``every`` epochs.

    ``images``: what to watch, one of
      - paths (files, folders, globs) or PIL images: decoded to RGB in [0, 255], resized to the
        model's input size, then ``preprocess`` is applied (as the CLI does);
      - an array or tensor (N, H, W, C) at the model's input size, or a list of (H, W, C) arrays,
        or an ``(x, y)`` tuple: given as the model consumes them in ``fit`` (``preprocess`` is
        still applied; it defaults to none); ``y`` supplies the true labels;
      - a ``tf.data.Dataset`` of ``x`` or ``(x, y)``: its first batch (16 elements if unbatched).
    ``method``: one method name or a list; each gets its own grid, tagged ``gradcam/METHOD``.
    ``classes``: the images' true labels, explained so the map shows the evidence for the right
    class even while the model is wrong: class indices (N,), one-hot rows (N, C), or label names
    (with ``labels``). Without them (and without a ``y``), each image's current top-1 class.
    ``log_dir``: TensorBoard folder (None: no summaries); ``png_dir``: also write
    ``METHOD.epochEEE.png`` there (E counted from 1, like Keras' ``ModelCheckpoint``).
    ``preprocess``: a CLI preprocessing name (``scale01``, ``tf``, ``caffe``, ...) or a function.
    ``columns``: grid columns (default: square-ish); tiles are at the model's input size, in the
    order of ``images``. Float inputs are shown stretched to their own minimum and maximum, which
    is exact for [0, 1] and [-1, 1] scalings.
    ``smooth``, ``chunk_size``, ``max_channels``, ``layer`` (a name or a list, whose maps are combined
    by ``combine``): as in :func:`gradcam_cli.explain`.
    ``model_output``: for a model with several outputs, the one to explain (name or index).
    ``region``: for a segmentation model, the pixels a class is explained over: 'pred' (default),
    'all' or a mask image path, as the CLI's ``--region``.
    """

    def __init__(
        self,
        images: Any,
        method: str | Sequence[str] = "gradcam",
        classes: Any = None,
        log_dir: str | os.PathLike | None = "logs/gradcam",
        every: int = 1,
        layer: str | Sequence[str] | None = None,
        png_dir: str | os.PathLike | None = None,
        preprocess: str | Any = "none",
        labels: list[str] | str | None = None,
        alpha: float = DEFAULT_ALPHA,
        colormap: str = "jet",
        columns: int | None = None,
        smooth: str | None = None,
        chunk_size: int | None = None,
        max_channels: int | None = None,
        model_output: str | int | None = None,
        region: str | None = None,
        combine: str | None = None,
    ):
        super().__init__()
        # a wrong argument is one line now (a GradcamError), not a traceback after the first epoch
        self.every = check_whole_number("every", every, 1)
        if log_dir is None and png_dir is None:
            raise OptionConflict("GradCAMCallback: give log_dir (TensorBoard), png_dir (PNG files) or both.")
        if log_dir is not None:
            _require_tensorboard()
        check_colormap(colormap)
        names = [method] if isinstance(method, str) or not hasattr(method, "__iter__") else list(method)
        for name in names:
            if not isinstance(name, str):
                raise MethodError(f"{param('method', repr(name))}: give a method name such as 'gradcam', or a list "
                                  "of them.")
        self.methods = [canonical_name(name) for name in names]
        layer_names(layer)  # a name, a list of names, or None
        check_text("combine", combine, "'mean' or 'product' (with several layers), or None")
        check_text("smooth", smooth, "'aug', 'eigen' or None", error=MethodError)
        for name, value in (("chunk_size", chunk_size), ("max_channels", max_channels)):
            check_whole_number(name, value, 1, optional=True)
        check_whole_number("columns", columns, 1, optional=True)
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.png_dir = None if png_dir is None else Path(png_dir)
        self.preprocess = preprocess
        self.labels = labels
        self.columns = columns
        self.model_output = model_output
        # the run's options, one per method (the batch is every watched image)
        self.options = RunOptions(layer=layer, alpha=check_alpha(alpha), colormap=colormap, smooth=smooth,
                                  chunk_size=chunk_size, max_channels=max_channels, region=region, combine=combine)
        self._decoded, self._arrays, dataset_labels = _collect(images)
        self._true_labels = classes if classes is not None else dataset_labels
        self.count = len(self._decoded if self._decoded is not None else self._arrays)
        if self.count == 0:
            raise ImageError("GradCAMCallback: no images to explain.")
        self.explainers: dict[str, Explainer] = {}
        self.targets: np.ndarray | None = None  # (N,) true labels, or None for top-1
        self.last_results: dict[str, BatchResult] = {}
        self.seconds: list[float] = []  # time spent by each explaining epoch end
        self._built_for: Any = None  # the model the explainers were built on
        self._writer = None

    # -- Keras hooks --------------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        for name, folder in (("log_dir", self.log_dir), ("png_dir", self.png_dir)):
            _check_writable(name, folder)
        self._build()  # a wrong shape, label, layer or method fails now, not after the first epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every == 0:
            self.explain(epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- work ---------------------------------------------------------------------------------
    @property
    def tracing_count(self) -> dict[str, int]:
        """Per method, how many times its compiled step has been traced (1 once it has run)."""
        return {name: explainer.tracing_count for name, explainer in self.explainers.items()}

    def explain(self, step: int) -> dict[str, np.ndarray]:
        """Explain the images with the model as it is now; write and return a grid per method."""
        with quiet_own_retracing():
            return self._explain(step)

    def _explain(self, step: int) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        self._build()
        grids: dict[str, np.ndarray] = {}
        for name, explainer in self.explainers.items():
            if self.targets is not None:
                result = explainer.run(self._pixels, classes=self.targets[:, None])
            else:
                result = explainer.run(self._pixels, top_k=1)
            self.last_results[name] = result
            tiles = [render.overlay(self._display[i], result.heatmaps[i, 0], self.options.alpha,
                                    self.options.colormap)
                     for i in range(self.count)]
            grids[name] = render.tile_grid(tiles, self.columns)
        self._write(grids, step)
        self.seconds.append(time.perf_counter() - started)
        return grids

    def _build(self) -> None:
        """Once per model: the spec, the model-ready pixels, the targets and one Explainer per
        method, each compiling its step on first use and keeping it for every later epoch."""
        model = self.model
        if self._built_for is model:
            return
        flexible = None in model_input_size(model)
        array_size = tuple(self._arrays.shape[1:3]) if flexible and self._arrays is not None else None
        spec = spec_for_model(model, preprocess=self.preprocess, labels=self.labels, input_size=array_size)
        spec.model_output = self.model_output
        self._pixels, self._display = self._model_pixels(spec)
        self.targets = self._resolve_targets(spec)
        check_tuning(list(self.methods), self.options.tuning)
        self.explainers = {
            name: Explainer.from_options(spec, self.options, batch_size=self.count, method=name)
            for name in self.methods
        }
        self._built_for = model

    def _model_pixels(self, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
        """(model pixels before ``preprocess``, float32) and (display tiles, uint8 RGB)."""
        channels = spec.channels
        if self._decoded is not None:
            pixels = np.stack([model_input(image, spec.input_size, channels) for image in self._decoded])
            display = np.stack([model_input(image, spec.input_size, 3) for image in self._decoded]).astype(np.uint8)
            return pixels, display
        arrays = self._arrays
        if tuple(arrays.shape[1:3]) != tuple(spec.input_size) or arrays.shape[-1] != channels:
            raise ImageError(
                f"GradCAMCallback: images of shape {arrays.shape[1:]} do not fit the model's input "
                f"{(*spec.input_size, channels)}; pass them as the model consumes them, or as paths."
            )
        if arrays.dtype == np.uint8:
            display = arrays
        else:
            display = np.stack([render.to_levels(render.normalize(image)) for image in arrays])
        if display.shape[-1] == 1:
            display = np.repeat(display, 3, axis=-1)
        return arrays.astype(np.float32), display

    def _resolve_targets(self, spec: ModelSpec) -> np.ndarray | None:
        """The true labels as (N,) class indices, checked against the model, or None."""
        given = self._true_labels
        if given is None:
            return None
        num_classes = spec.num_classes  # the head's classes: two for one sigmoid unit
        values = np.asarray(given)
        if values.dtype.kind in "US":
            indices = np.asarray(resolve_classes(spec, values.ravel().tolist(), num_classes))
        elif values.ndim == 2 and values.shape[1] == num_classes and num_classes > 1:
            indices = values.argmax(axis=1)  # one-hot or soft labels
        else:
            indices = values.reshape(len(values), -1)[:, 0] if values.ndim else values.ravel()
        indices = np.asarray(indices).astype(np.int64).ravel()
        if len(indices) != self.count:
            raise TargetError(f"GradCAMCallback: {len(indices)} labels for {self.count} images.")
        if indices.min() < 0 or indices.max() >= num_classes:
            raise TargetError(f"GradCAMCallback: labels must lie in 0..{num_classes - 1}.")
        return indices.astype(np.int32)

    def _write(self, grids: dict[str, np.ndarray], step: int) -> None:
        if self.log_dir is not None:
            import tensorflow as tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(str(self.log_dir))
            with self._writer.as_default():
                for name, grid in grids.items():
                    layer = self.explainers[name].layer_name
                    tf.summary.image(f"gradcam/{name}", grid[None], step=step,
                                     description=f"{name} on layer {layer}, {self.count} images")
            self._writer.flush()
        if self.png_dir is not None:
            for name, grid in grids.items():
                outputs.atomic_write_bytes(self.png_dir / f"{name}.epoch{step + 1:03d}.png", render.png_bytes(grid))


def _check_writable(name: str, folder: Path | None) -> None:
    """Create ``folder`` and write a probe file there, so that an unwritable one fails before training."""
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OutputError(f"GradCAMCallback: {name}={str(folder)!r} cannot be written "
                          f"({error.strerror or error}); pass another folder.") from None


def _require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401  (tf.summary.image is implemented there)
    except ImportError:
        raise GradcamError(
            "GradCAMCallback writes TensorBoard summaries, which need the tensorboard package: "
            "pip install tensorboard (or pass log_dir=None and png_dir=FOLDER)."
        ) from None


def _collect(images: Any) -> tuple[list[np.ndarray] | None, np.ndarray | None, Any]:
    """(decoded uint8 images from paths or PIL, or None), (model-ready array, or None), labels."""
    import tensorflow as tf

    labels = None
    if isinstance(images, tf.data.Dataset):
        if _rank(images.element_spec) == 3:
            images = images.batch(DATASET_BATCH)
        images = next(iter(images.take(1)))
    if isinstance(images, dict):
        raise ImageError("GradCAMCallback: pass the image tensor itself, not a dict of inputs.")
    if isinstance(images, tuple) and images and _is_array_like(images[0]) and np.ndim(images[0]) == 4:
        images, labels = images[0], (images[1] if len(images) > 1 else None)
    if labels is not None:
        labels = np.asarray(labels)
    if _is_array_like(images):
        array = np.asarray(images)
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise ImageError(f"GradCAMCallback: an image batch has shape (N, H, W, C), not {array.shape}.")
        return None, array, labels
    items = listed_images(images)
    if items and all(_is_array_like(item) for item in items):
        shapes = {np.shape(item) for item in items}
        if len(shapes) != 1:
            raise ImageError(f"GradCAMCallback: arrays of different shapes {sorted(shapes)}; give them at the model's input size.")
        return None, np.stack([np.asarray(item) for item in items]), labels
    decoded, _, failures = as_images(items, overlay_size=None)  # tiles at the model's size: keep every pixel
    if failures:  # a training callback's images are few and chosen: a bad one is an error, not a skip
        raise ImageError(f"GradCAMCallback: {failures[0][1]}")
    return decoded, None, labels


def _is_array_like(value: Any) -> bool:
    return isinstance(value, np.ndarray) or (hasattr(value, "shape") and hasattr(value, "dtype")
                                            and not isinstance(value, (str, bytes)))


def _rank(element_spec: Any) -> int | None:
    spec = element_spec[0] if isinstance(element_spec, tuple) else element_spec
    shape = getattr(spec, "shape", None)
    return None if shape is None else shape.rank


__all__ = ["GradCAMCallback"]
