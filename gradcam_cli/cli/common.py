"""What the commands share: option declarations, parameter types, loading the model, listing inputs, failing with one line."""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
from pathlib import Path

import click

from ..errors import GradcamError
from ..options import (
    COLORMAP_NAMES,
    DEFAULT_ALPHA,
    DEFAULT_MAX_MEGAPIXELS,
    DEFAULT_MIN_SCORE,
    TUNING_FIELDS,
)


def quiet_tensorflow() -> None:
    """Import TensorFlow with its start-up chatter (oneDNN, CUDA probing) kept off the terminal.

    TensorFlow 2.21 writes those lines from C++ before its log level applies, so standard error is
    pointed at /dev/null for the import only (:func:`gradcam_cli.quiet.import_tensorflow_quietly`);
    Python exceptions still surface normally. The command owns its process, so TensorFlow's own
    log levels are raised too (the API leaves them to the user).
    """
    from ..quiet import import_tensorflow_quietly

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import_tensorflow_quietly()
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. retracing notes for compare's methods


INTERRUPTED = 130  # 128 + SIGINT, as shells report a process ended by Ctrl-C


def fail(error: GradcamError) -> None:
    click.echo(f"gradcam: error: {error}", err=True)
    sys.exit(error.exit_code)


def parse_size(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    parts = value.lower().replace("x", ",").split(",")
    try:
        numbers = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a size: use 224 or 224,224.", param_hint="'--input-size'") from None
    if len(numbers) == 1:
        numbers *= 2
    if len(numbers) != 2 or min(numbers) < 8:
        raise click.BadParameter(f"'{value}' is not a size of at least 8: use 224 or 224,224.",
                                 param_hint="'--input-size'")
    return numbers[0], numbers[1]


class FiniteFloatRange(click.FloatRange):
    """A float range that also refuses nan and inf (which ``click.FloatRange`` lets through)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class MethodType(click.ParamType):
    """Method names and aliases (gradcampp, Grad-CAM, score_cam ...), resolved without TensorFlow."""

    name = "method"

    def convert(self, value, param, ctx):
        from ..methods import canonical_name

        try:
            return canonical_name(value)
        except GradcamError as error:
            self.fail(str(error), param, ctx)


class OverlaySize(click.ParamType):
    """A longest side in pixels (at least 16), or 'original' (None)."""

    name = "N|original"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "original":
            return None
        try:
            size = int(value)
        except ValueError:
            self.fail(f"'{value}' is neither a size in pixels nor 'original': use e.g. 1000 or original.", param, ctx)
        if size < 16:
            self.fail(f"{size} is too small for an overlay: use at least 16, or 'original'.", param, ctx)
        return size


model_option = click.option(
    "-m", "--model", default="demo", show_default=True,
    help="A keras.applications name (xception, resnet50, ...; 'gradcam models' lists them), "
         "'demo' (the bundled shapes classifier), a .keras/.h5 file, hub:PRESET, or FILE.py:FACTORY / "
         "package.module:FACTORY, which imports that code and RUNS it to build the model.")


weights_option = click.option(
    "--weights", default=None,
    help="For keras.applications models only: imagenet (default), none (random), or a .h5/.weights.h5 "
         "path. A model file carries its own weights.")


preprocess_option = click.option(
    "--preprocess", default=None,
    help="For model files: none, scale01 ([0,1]), tf ([-1,1]), caffe, torch, or an application name "
         "whose preprocess_input to use. Default: the model's sidecar file, else none.")


labels_option = click.option("--labels", type=click.Path(dir_okay=False), default=None,
                             help="Text file with one class name per line.")


input_size_option = click.option("--input-size", default=None,
                                 help="Input size H[,W] for models that accept any size (or --weights none).")


region_option = click.option(
    "--region", default=None,
    help="Segmentation models: explain a class over pred (pixels predicted as it; default), "
         "all (every pixel) or MASK.png (its nonzero pixels).")


unsafe_option = click.option("--unsafe-model-code", is_flag=True,
                             help="Allow Lambda layers in a trusted model file (turns Keras safe_mode off).")


layer_option = click.option("--layer", default=None,
                            help="Target layer name (nested: outer/inner). Default: automatic.")


layers_option = click.option(
    "--layer", "layers", multiple=True,
    help="Target layer name (nested: outer/inner). Default: automatic. Repeat for several: each layer's map, "
         "from the same forward pass, upsampled to the finest and scaled to [0, 1], then combined (--combine).")


combine_option = click.option(
    "--combine", type=click.Choice(["mean", "product"]), default=None,
    help="With several --layer: average their maps (mean, the default, as pytorch-grad-cam) or multiply them "
         "(product, RefineCAM: only what every layer shows).")


def layer_value(layers: tuple[str, ...]) -> str | list[str] | None:
    """Repeated ``--layer`` values as the ``layer`` parameter: None, one name, or a list."""
    return None if not layers else layers[0] if len(layers) == 1 else list(layers)


class_option = click.option("--class", "classes", multiple=True,
                            help="Class to explain, as index or label; repeat for several. Default: the top-1 class.")


top_k_option = click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
                            help="Explain each of the K most probable classes (not with --class).")


LARGE_BATCH_PIXELS = 256 * 224 * 224
"""A batch holding more input pixels than 256 images at 224x224 is warned about: the compiled step keeps
every layer's activations of the whole batch for the backward pass, so memory grows with batch x pixels."""


batch_size_option = click.option(
    "-b", "--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
    help="Images per compiled step. Memory grows with batch x input pixels: a batch holding more pixels "
         "than 256 images at 224x224 (12.8 M) gets a warning.")


def warn_large_batch(batch_size: int, input_size: tuple[int, int], count: int) -> None:
    """One line on stderr when the batch a run will use (``batch_size``, at most ``count`` inputs)
    holds more pixels than :data:`LARGE_BATCH_PIXELS`; the run goes on."""
    batch = min(batch_size, count)
    height, width = input_size
    pixels = batch * height * width
    if pixels > LARGE_BATCH_PIXELS:
        click.echo(f"gradcam: warning: -b/--batch-size {batch_size} puts {batch} inputs of {height}x{width} px "
                   f"({pixels / 1e6:.1f} M pixels) through the model at once, more than a batch of 256 at "
                   "224x224 (12.8 M); every layer's activations are kept for the batch, so memory may run out: "
                   "lower -b/--batch-size if the run is killed.", err=True)


recursive_option = click.option("-r", "--recursive", is_flag=True, help="Descend into sub-folders.")


exclude_option = click.option(
    "--exclude", "excludes", multiple=True, metavar="GLOB",
    help="Leave out files and folders whose name, path relative to the argument, or absolute "
         "path matches GLOB (repeatable). OUTPUT_DIR is always left out.")


xla_option = click.option(
    "--xla", is_flag=True,
    help="Compile with XLA (jit_compile). Measured slower on CPU (docs/performance.md); may help "
         "on a GPU.")


def combine_options(*decorators):
    """Several Click options as one decorator, so commands that share them declare them once."""
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


def tuning_options(function):
    """``--finer-comparisons``, ``--finer-alpha``, ``--kpca-kernel``, ``--kpca-gamma`` and ``--fem-sigmas``
    (:data:`~gradcam_cli.options.TUNING_FIELDS`), handed to the command as one ``tuning`` dict of the
    ones given; the explainer refuses one that tunes none of the run's methods."""
    names = list(TUNING_FIELDS)

    @functools.wraps(function)
    def command(*args, **kwargs):
        given = {name: kwargs.pop(name) for name in names}
        return function(*args, tuning={k: v for k, v in given.items() if v is not None} or None, **kwargs)

    types = {"finer_comparisons": click.IntRange(min=1), "finer_alpha": FiniteFloatRange(0.0, 1.0),
             "kpca_kernel": click.Choice(["sigmoid", "rbf", "linear"]), "kpca_gamma": FiniteFloatRange(0.0, None, min_open=True),
             "fem_sigmas": FiniteFloatRange(0.0, None)}
    for name in reversed(names):
        command = click.option(f"--{name.replace('_', '-')}", name, type=types[name], default=None,
                               help=TUNING_FIELDS[name] + ".")(command)
    return command


# what explain and evaluate share: the model, the layer and the targets
model_options = combine_options(model_option, weights_option, preprocess_option, labels_option, input_size_option,
                         unsafe_option)


target_options = combine_options(layers_option, combine_option, class_option, top_k_option, batch_size_option)


max_megapixels_option = click.option(
    "--max-megapixels", type=FiniteFloatRange(min=1), default=DEFAULT_MAX_MEGAPIXELS, show_default=True,
    help="Refuse inputs that would decode to more pixels than this (PNG, TIFF and progressive "
         "JPEG are decoded at full size); bounds memory.")
model_output_option = click.option(
    "--model-output", "model_output", default=None,
    help="For models with several outputs: the output to explain, by name or index.")
task_option = click.option(
    "--task", type=click.Choice(["classify", "detect"]), default=None,
    help="detect: read the model as an object detector (per-anchor boxes and class scores; a keras-hub "
         "ObjectDetector is one without it) and explain each box it keeps (docs/detection.md).")
min_score_option = click.option(
    "--min-score", type=FiniteFloatRange(0.0, 1.0), default=DEFAULT_MIN_SCORE, show_default=True,
    help="--task detect: explain the boxes the detector keeps that score at least this.")
box_option = click.option(
    "--box", "boxes", type=click.IntRange(min=0), multiple=True, metavar="N",
    help="--task detect: explain only box N of each image (0: its best above --min-score); repeatable.")
detect_options = combine_options(task_option, min_score_option, box_option)


def given(context: click.Context, name: str) -> bool:
    """Whether the option ``name`` (its parameter name) was given, not left at its default."""
    return context.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def check_detector_options(spec, min_score: float, boxes) -> None:
    """--min-score (when given) and --box on a model that is no detector: one line, exit 2, rather than
    ignored (:func:`gradcam_cli.boxes.refuse_box_options`)."""
    from ..boxes import refuse_box_options

    min_given = given(click.get_current_context(), "min_score")
    if min_given or boxes:
        refuse_box_options(spec.head, min_score if min_given else None, list(boxes))


def reference_option(required: bool = False):
    """``--reference IMAGE|FOLDER``, repeatable, as ``references``: what ``gradcam similar`` explains
    (required there), and what ``compare`` and ``evaluate`` explain in place of classes."""
    return click.option(
        "--reference", "references", multiple=True, required=required, metavar="IMAGE|FOLDER",
        help="An embedding model: explain the cosine similarity of each image's embedding (--model-output: an "
             "output or an inner layer; default the model's output) to this reference, an image or a folder whose "
             "images make a concept (the mean of their unit embeddings). Repeat for several, one target each "
             "(docs/similarity.md).")


def check_references(references) -> None:
    """A mistyped ``--reference`` fails before the model loads (one line, exit 2)."""
    from ..reference import reference_items

    for source in references:
        reference_items(source)


colormap_option = click.option("--colormap", type=click.Choice(list(COLORMAP_NAMES)), default="jet", show_default=True,
                                help="Colour map of the heatmap in overlays.")
alpha_option = click.option("--alpha", type=FiniteFloatRange(0.0, 1.0), default=DEFAULT_ALPHA, show_default=True,
                            help="Heatmap opacity in the overlay.")


def model_arguments(model, weights, preprocess, labels, input_size, unsafe, model_output=None, task=None) -> dict:
    """The keywords of ``resolve_model`` (Ray actors load the model from them too)."""
    return {"model": model, "weights": weights, "preprocess": preprocess, "labels": labels,
            "input_size": parse_size(input_size), "safe_mode": not unsafe, "model_output": model_output,
            "task": task}


def load_spec(model, weights, preprocess, labels, input_size, unsafe, model_output=None, task=None):
    quiet_tensorflow()
    from ..models import resolve_model

    return resolve_model(**model_arguments(model, weights, preprocess, labels, input_size, unsafe, model_output, task))


def announce_report(output_dir, quiet: bool) -> None:
    from ..report import write_report

    page = write_report(output_dir)
    if not quiet:
        click.echo(f"gradcam: report written to {page}", err=True)


def collect_or_fail(inputs, recursive, excludes, output_dir):
    """List the inputs before any model loads: arguments that name nothing are reported at once,
    and a run with nothing left to explain stops here (exit 2, nothing written)."""
    from ..inputs import IMAGE_EXTENSIONS, collect_inputs, collect_uri_inputs
    from ..storage import is_uri, local_path

    try:
        items = collect_inputs([local_path(i) for i in inputs if not is_uri(i)], recursive=recursive,
                               exclude=excludes, output_dir=None if is_uri(output_dir) else output_dir)
        for uri in (i for i in inputs if is_uri(i)):
            items += collect_uri_inputs(uri, recursive=recursive)
    except GradcamError as error:
        fail(error)
    arguments = {str(Path(argument)) for argument in inputs}
    bad_arguments = [item for item in items if item.error and item.path in arguments]
    if len(items) == len(bad_arguments) == 1:  # the one input named is missing: one line says it all
        fail(GradcamError(f"{items[0].path}: {items[0].error}."))
    for item in bad_arguments:
        click.echo(f"gradcam: {item.path}: {item.error}.", err=True)
    if not items:
        hint = "" if recursive else " (add -r to look in sub-folders)"
        fail(GradcamError(f"{', '.join(inputs)}: no image files found{hint}; looked for "
                           f"{', '.join(sorted(IMAGE_EXTENSIONS))}."))
    if len(bad_arguments) == len(items):
        fail(GradcamError("nothing to explain: every input above is missing or refused."))
    return items
