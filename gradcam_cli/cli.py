"""The ``gradcam`` command: parsing, wiring and exit codes only.

TensorFlow is imported inside the commands, never at module level, so ``gradcam --help`` is quick.
Exit codes: 0 all good; 1 some inputs failed (listed at the end); 2 usage or model error;
3 the output could not be written; 4 an internal error (a bug); 5 a 'gradcam evaluate
--fail-under' threshold was missed; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import GradcamError
from .methods import METHODS  # names only: the methods package imports no TensorFlow
from .options import DEFAULT_MAX_MEGAPIXELS, DEFAULT_OVERLAY_SIZE


def _quiet_tensorflow() -> None:
    """Import TensorFlow with its start-up chatter (oneDNN, CUDA probing) kept off the terminal.

    TensorFlow 2.21 writes those lines from C++ before its log level applies, so standard error is
    pointed at /dev/null for the import only; Python exceptions still surface normally.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
                import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. retracing notes for compare's methods


def _fail(error: GradcamError) -> None:
    click.echo(f"gradcam: error: {error}", err=True)
    sys.exit(error.exit_code)


def _parse_size(value: str | None) -> tuple[int, int] | None:
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
        from .methods import canonical_name

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
         "'demo' (the bundled shapes classifier) or a .keras/.h5 file.")
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
                                 help="Input size H[,W] for models that accept any size (or weights=none).")
region_option = click.option(
    "--region", default=None,
    help="Segmentation models: explain a class over pred (pixels predicted as it; default), "
         "all (every pixel) or MASK.png (its nonzero pixels).")
unsafe_option = click.option("--unsafe-model-code", is_flag=True,
                             help="Allow Lambda layers in a trusted model file (turns Keras safe_mode off).")
layer_option = click.option("--layer", default=None,
                            help="Target layer name (nested: outer/inner). Default: automatic.")
class_option = click.option("--class", "classes", multiple=True,
                            help="Class to explain, as index or label; repeat for several. Default: the top-1 class.")
top_k_option = click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True,
                            help="Explain each of the K most probable classes (not with --class).")
batch_size_option = click.option("-b", "--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
recursive_option = click.option("-r", "--recursive", is_flag=True, help="Descend into sub-folders.")
exclude_option = click.option(
    "--exclude", "excludes", multiple=True, metavar="GLOB",
    help="Leave out files and folders whose name, path relative to the argument, or absolute "
         "path matches GLOB (repeatable). OUTPUT_DIR is always left out.")
xla_option = click.option(
    "--xla", is_flag=True,
    help="Compile with XLA (jit_compile). Measured slower on CPU (see the README); may help on a GPU.")


def _options(*decorators):
    """Several Click options as one decorator, so commands that share them declare them once."""
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


# what explain and evaluate share: the model, the layer and the targets
model_options = _options(model_option, weights_option, preprocess_option, labels_option, input_size_option,
                         unsafe_option)
target_options = _options(layer_option, class_option, top_k_option, batch_size_option)


output_option = click.option("--output", "output", default=None,
                             help="For models with several outputs: the output to explain, by name or index.")


def _model_arguments(model, weights, preprocess, labels, input_size, unsafe, output=None) -> dict:
    """The keywords of ``resolve_model`` (Ray actors load the model from them too)."""
    return {"model": model, "weights": weights, "preprocess": preprocess, "labels": labels,
            "input_size": _parse_size(input_size), "safe_mode": not unsafe, "output": output}


def _load_spec(model, weights, preprocess, labels, input_size, unsafe, output=None):
    _quiet_tensorflow()
    from .models import resolve_model

    return resolve_model(**_model_arguments(model, weights, preprocess, labels, input_size, unsafe, output))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradcam")
def cli() -> None:
    """Show where a Keras image classifier looks: CAM, Grad-CAM, Grad-CAM++ and seven more class
    activation methods, for one image or whole folders.

    \b
    Examples:
      gradcam explain sample_images/shapes --model demo
      gradcam explain img.jpg --model xception --method gradcam++
      gradcam explain photos/ --model resnet50 --top-k 3 -o out/
    """


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@model_options
@click.option("--method", type=MethodType(), default="gradcam", show_default=True,
              help=f"{', '.join(METHODS)} ('gradcam methods' describes them).")
@click.option("--smooth", type=click.Choice(["aug", "eigen"]), default=None,
              help="aug: average over flips and brightness changes (6x the work); eigen: first "
                   "principal component of the weighted activations.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="scorecam, ablationcam: channels per extra forward pass (default 32); bounds memory.")
@click.option("--max-channels", type=click.IntRange(min=1), default=None,
              help="scorecam: keep only the N channels of highest variance (Faster Score-CAM).")
@target_options
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default="gradcam_out", show_default=True)
@click.option("--alpha", type=FiniteFloatRange(0.0, 1.0), default=0.4, show_default=True,
              help="Heatmap opacity in the overlay.")
@click.option("--colormap", type=click.Choice(["jet", "turbo", "hot", "gray"]), default="jet", show_default=True)
@recursive_option
@exclude_option
@click.option("--overwrite", is_flag=True,
              help="Redo inputs already explained in OUTPUT_DIR (by default a rerun resumes, skipping them).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-image predictions.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest rows as JSON lines on stdout.")
@xla_option
@click.option("--report", is_flag=True, help="Also write OUTPUT_DIR/index.html, a gallery of the run.")
@output_option
@region_option
@click.option("--overlay-size", type=OverlaySize(), default=str(DEFAULT_OVERLAY_SIZE), show_default=True,
              help="Longest side of each overlay JPEG in pixels, or 'original' for the input's own size.")
@click.option("--max-megapixels", type=FiniteFloatRange(min=1), default=DEFAULT_MAX_MEGAPIXELS, show_default=True,
              help="Refuse inputs that would decode to more pixels than this (PNG, TIFF, progressive "
                   "JPEG and --overlay-size original are decoded at full size); bounds memory.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: a Ray cluster through Ray Data (the 'ray' extra).")
@click.option("--ray-address", default=None,
              help="--engine ray: join this cluster (HOST:PORT, ray://HOST:PORT, auto; default "
                   "RAY_ADDRESS). Without one an embedded local Ray runs for the job.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="--engine ray: model actors, one CPU each (default: the cluster's CPUs; the "
                   "embedded Ray gets this many CPUs). Local engine: decode and write threads.")
def explain(inputs, model, weights, method, smooth, chunk_size, max_channels, layer, classes, top_k, batch_size, output_dir, alpha, colormap,
            recursive, excludes, overwrite, quiet, as_json, xla, report, output, region, overlay_size, max_megapixels,
            engine, ray_address, workers, preprocess, labels, input_size, unsafe_model_code):
    """Explain images: write overlay JPEGs, raw .npy heatmaps and manifest.jsonl to OUTPUT_DIR.

    INPUTS are image files, folders (with -r, their sub-folders too) and glob patterns (quote them;
    ** matches any number of folders). Each file is explained once, however it was reached.
    """
    from .storage import is_uri, local_path

    output_dir = output_dir if is_uri(output_dir) else local_path(output_dir)
    if report and is_uri(output_dir):
        _fail(GradcamError(f"--report writes a local gallery: use a local -o/--output-dir, not {output_dir}."))
    items = _collect(inputs, recursive, excludes, output_dir)
    try:
        if engine == "ray":
            from .runners.ray import cluster_address, require_ray

            require_ray()
            cluster_address(ray_address)  # an unreachable cluster fails now, not after the model loads
        model_arguments = _model_arguments(model, weights, preprocess, labels, input_size, unsafe_model_code, output)
        spec = _load_spec(model, weights, preprocess, labels, input_size, unsafe_model_code, output)
        from .options import RunOptions

        options = RunOptions(method=method, layer=layer, classes=list(classes) or None, top_k=top_k,
                             batch_size=batch_size, output_dir=output_dir if is_uri(output_dir) else Path(output_dir),
                             alpha=alpha,
                             colormap=colormap, overwrite=overwrite, xla=xla, smooth=smooth,
                             chunk_size=chunk_size, max_channels=max_channels, region=region,
                             overlay_size=overlay_size, max_megapixels=max_megapixels)
        if workers and engine == "local":
            options.workers = workers
        engine_run = None
        if engine == "ray":
            from functools import partial

            from .runners.ray import run_explain_ray

            engine_run = partial(run_explain_ray, model_arguments=model_arguments, address=ray_address,
                                 workers=workers)
        summary = _run_with_progress(items, spec, options, quiet, as_json, engine_run)
        if report:
            _write_report(output_dir, quiet)
    except GradcamError as error:
        _fail(error)
    _report(summary, output_dir, quiet)
    sys.exit(summary.exit_code)


def _write_report(output_dir, quiet: bool) -> None:
    from .report import write_report

    page = write_report(output_dir)
    if not quiet:
        click.echo(f"gradcam: report written to {page}", err=True)


def _collect(inputs, recursive, excludes, output_dir):
    """List the inputs before any model loads: arguments that name nothing are reported at once,
    and a run with nothing left to explain stops here (exit 2, nothing written)."""
    from .inputs import IMAGE_EXTENSIONS, collect_inputs, collect_uri_inputs
    from .storage import is_uri, local_path

    try:
        items = collect_inputs([local_path(i) for i in inputs if not is_uri(i)], recursive=recursive,
                               exclude=excludes, output_dir=None if is_uri(output_dir) else output_dir)
        for uri in (i for i in inputs if is_uri(i)):
            items += collect_uri_inputs(uri, recursive=recursive)
    except GradcamError as error:
        _fail(error)
    arguments = {str(Path(argument)) for argument in inputs}
    bad_arguments = [item for item in items if item.error and item.path in arguments]
    for item in bad_arguments:
        click.echo(f"gradcam: {item.path}: {item.error}.", err=True)
    if not items:
        hint = "" if recursive else " (add -r to look in sub-folders)"
        _fail(GradcamError(f"{', '.join(inputs)}: no image files found{hint}; looked for "
                           f"{', '.join(sorted(IMAGE_EXTENSIONS))}."))
    if len(bad_arguments) == len(items):
        _fail(GradcamError("nothing to explain: every input above is missing or refused."))
    return items


def _run_with_progress(items, spec, options, quiet, as_json, engine_run=None):
    from tqdm import tqdm

    from .heads import format_prediction
    from .runners.local import run_explain

    engine_run = engine_run or run_explain
    shown = {item.real: item.path for item in items}  # rows name inputs by real path; show them as found
    show_bar = not quiet and sys.stderr.isatty()
    bar = tqdm(total=len(items), unit="img", disable=not show_bar, file=sys.stderr, dynamic_ncols=True)

    def on_row(row: dict) -> None:
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        elif not quiet and row["status"] == "ok" and row["rank"] == 0 and not row.get("resumed"):
            top = ", ".join(format_prediction(row["head"], label, value) for _, label, value in row["top"])
            tqdm.write(f"{shown.get(row['input'], row['input'])}: {top}", file=sys.stdout)

    try:
        return engine_run(items, spec, options=options, on_row=on_row, progress=bar.update)
    finally:
        bar.close()


def _report(summary, output_dir, quiet) -> None:
    if summary.failures:
        click.echo(f"gradcam: {len(summary.failures)} input(s) failed:", err=True)
        for _, message in summary.failures:
            click.echo(f"  {message}", err=True)
    if summary.interrupted:
        click.echo(f"gradcam: interrupted after {summary.images_done} image(s); {output_dir}/manifest.jsonl "
                   "is up to date and a rerun resumes from there.", err=True)
    elif not quiet:
        skipped = f", {summary.images_skipped} already done" if summary.images_skipped else ""
        click.echo(f"gradcam: {summary.images_done} image(s) explained{skipped} with {summary.method} on "
                   f"layer {summary.layer} in {summary.seconds:.1f} s -> {output_dir}", err=True)


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@model_options
@click.option("--methods", "method_list", default="gradcam,gradcam++,random,center", show_default=True,
              help="Comma-separated methods to score, baselines 'random' and 'center' included.")
@click.option("--metrics", "metric_list", default=None,
              help="Comma-separated: deletion, insertion, drop, increase, pointing, energy. "
                   "Default: all (pointing and energy only with --ground-truth).")
@click.option("--ground-truth", type=click.Path(exists=True), default=None,
              help="Boxes: the project's ground_truth.json, a COCO detection JSON, or a folder of Pascal VOC XML.")
@click.option("--steps", type=click.IntRange(min=2), default=20, show_default=True,
              help="Deletion/insertion steps (each a forward pass per image and map).")
@click.option("--fail-under", "gates", multiple=True, metavar="METRIC[:METHOD]=VALUE",
              help="CI gate, repeatable: exit 5 when a mean is worse than VALUE (deletion and drop: above it).")
@click.option("--sanity", is_flag=True,
              help="Also compare each method's maps with those of the model with its head and last block "
                   "re-initialised (Adebayo et al. 2018); flag methods whose maps barely change.")
@target_options
@click.option("--copies-per-pass", type=click.IntRange(min=1), default=64, show_default=True,
              help="Perturbed images per model call: bounds memory.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default="gradcam_eval", show_default=True)
@click.option("--overwrite", is_flag=True,
              help="Score every input again; by default inputs scored with the same settings in OUTPUT_DIR are reused.")
@recursive_option
@exclude_option
@xla_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no table.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json on stdout instead of the table.")
@click.option("--report", is_flag=True, help="Also write OUTPUT_DIR/index.html with the scores and curves.")
def evaluate(inputs, model, weights, preprocess, labels, input_size, unsafe_model_code, method_list, metric_list,
             ground_truth, steps, gates, sanity, layer, classes, top_k, batch_size, copies_per_pass, output_dir,
             overwrite, recursive, excludes, xla, quiet, as_json, report):
    """Score methods' maps: faithfulness (deletion, insertion, Average Drop, Increase in Confidence)
    and, with --ground-truth, placement (pointing game, energy). Read every score against the
    'random' and 'center' baselines.

    \b
    Writes OUTPUT_DIR/metrics.json (mean, 95% bootstrap interval, n), metrics.jsonl (per image,
    method and target) and curves.png; prints a table, best method first (by the first metric).
    Exit codes: 0 ok, 1 some inputs failed, 2 usage/model error, 3 output not writable,
    4 internal error, 5 a --fail-under threshold was missed (each listed; 5 wins over 1).
    """
    method_type = MethodType()
    methods = list(dict.fromkeys(method_type.convert(m.strip(), None, None) for m in method_list.split(",") if m.strip()))
    if not methods:
        _fail(GradcamError("--methods is empty: name at least one, e.g. gradcam,random,center."))
    items = _collect(inputs, recursive, excludes, output_dir)
    try:
        from .metrics import parse_metrics
        from .metrics.summary import parse_gate

        metrics = parse_metrics(metric_list, ground_truth is not None)
        parsed_gates = [parse_gate(text, lambda name: method_type.convert(name, None, None)) for text in gates]
        spec = _load_spec(model, weights, preprocess, labels, input_size, unsafe_model_code)
        from .evaluate import EvaluateOptions, format_table, write_outputs
        from .evaluate import evaluate as run_evaluation
        from .metrics.ground_truth import load_ground_truth

        options = EvaluateOptions(
            methods=methods, metrics=metrics, steps=steps, layer=layer, classes=list(classes) or None, top_k=top_k,
            batch_size=max(1, min(batch_size, len(items))), sanity=sanity, gates=parsed_gates, xla=xla,
            copies_per_pass=copies_per_pass,
            ground_truth=load_ground_truth(ground_truth) if ground_truth else None)
        evaluation = _evaluate_with_progress(run_evaluation, items, spec, options, quiet, output_dir, overwrite)
        write_outputs(evaluation, output_dir)
        if report:
            _write_report(output_dir, quiet)
    except GradcamError as error:
        _fail(error)
    if as_json:
        click.echo(json.dumps(evaluation.as_json(), ensure_ascii=False))
    elif not quiet:
        for line in format_table(evaluation):
            click.echo(line)
    if evaluation.failures:
        click.echo(f"gradcam: {len(evaluation.failures)} input(s) failed:", err=True)
        for _, message in evaluation.failures:
            click.echo(f"  {message}", err=True)
    for line in evaluation.missed:
        click.echo(f"gradcam: fail-under: {line}", err=True)
    if not quiet:
        click.echo(f"gradcam: {evaluation.images} image(s) x {len(methods)} method(s) scored on layer "
                   f"{evaluation.layer} in {evaluation.seconds:.1f} s -> {output_dir}", err=True)
    sys.exit(evaluation.exit_code)


def _evaluate_with_progress(run_evaluation, items, spec, options, quiet, output_dir, overwrite):
    from tqdm import tqdm

    bar = tqdm(total=len(items), unit="img", disable=quiet or not sys.stderr.isatty(), file=sys.stderr,
               dynamic_ncols=True)
    try:
        return run_evaluation(items, spec, options, progress=bar.update, output_dir=output_dir, overwrite=overwrite)
    finally:
        bar.close()


@cli.command()
@click.argument("output_dir", type=click.Path(exists=True, file_okay=False))
def report(output_dir):
    """Write OUTPUT_DIR/index.html for an earlier 'gradcam explain' run (from its manifest)."""
    from .report import write_report

    try:
        page = write_report(output_dir)
    except GradcamError as error:
        _fail(error)
    click.echo(f"gradcam: report written to {page}", err=True)


@cli.command()
@click.argument("images", nargs=-1, required=True)
@model_option
@weights_option
@click.option("--methods", "method_list", default="gradcam,gradcam++,layercam,eigencam", show_default=True,
              help="Comma-separated methods, one column each.")
@click.option("--layer", default=None, help="Target layer. Default: automatic.")
@click.option("--class", "classes", multiple=True,
              help="Class to explain (index or label); repeat for several, a row each. Default: top-1.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="gradcam_compare.png", show_default=True,
              help="The sheet: .png or .jpg.")
@click.option("--alpha", type=FiniteFloatRange(0.0, 1.0), default=0.5, show_default=True)
@click.option("--colormap", type=click.Choice(["jet", "turbo", "hot", "gray"]), default="jet", show_default=True)
@click.option("--model-output", "model_output", default=None,
              help="For models with several outputs: the output to explain, by name or index.")
@preprocess_option
@labels_option
@input_size_option
@unsafe_option
@region_option
def compare(images, model, weights, method_list, layer, classes, output, alpha, colormap, model_output, preprocess,
            labels, input_size, unsafe_model_code, region):
    """Compare methods side by side: one sheet (.png or .jpg), a row per image and class, a column
    per method."""
    method_type = MethodType()
    methods = [method_type.convert(m.strip(), None, None) for m in method_list.split(",") if m.strip()]
    if not methods:
        raise click.BadParameter("names no method; give one or more, comma-separated.", param_hint="--methods")
    for image in images:
        if not (os.path.exists(image) or glob.has_magic(image)):
            _fail(GradcamError(f"{image}: no such file or folder."))
    try:
        from .compare import compare_sheet, sheet_format

        sheet_format(output)
        spec = _load_spec(model, weights, preprocess, labels, input_size, unsafe_model_code, model_output)
        sheet, failures = compare_sheet(spec, list(images), methods, output, layer=layer,
                                        target=list(classes) or None, alpha=alpha, colormap=colormap,
                                        region=region)
    except GradcamError as error:
        _fail(error)
    for _, message in failures:
        click.echo(f"gradcam: {message}", err=True)
    click.echo(f"gradcam: comparison sheet written to {sheet}", err=True)
    sys.exit(1 if failures else 0)


@cli.command()
def methods():
    """Describe the class activation methods --method accepts."""
    from .methods import METHODS

    for name, cls in METHODS.items():
        aliases = f" (also {', '.join(cls.aliases)})" if cls.aliases else ""
        click.echo(f"{name:<12} {cls.description}{aliases}")


@cli.command()
@click.option("--params", is_flag=True, help="Also count parameters (builds every model; slow the first time).")
def models(params):
    """List the keras.applications architectures --model accepts."""
    _quiet_tensorflow()
    from .models.applications import application_registry

    registry = application_registry()
    click.echo(f"{'name':<20} {'--model key':<20} {'input':>7}" + ("  parameters" if params else ""))
    from .demo import demo_description

    click.echo(demo_description())
    for key, entry in registry.items():
        line = f"{entry.name:<20} {key:<20} {entry.native_size():>7}"
        if params:
            line += f"  {entry.parameter_count():>12,}"
        click.echo(line)


@cli.command()
@model_option
@weights_option
@preprocess_option
@labels_option
@input_size_option
@unsafe_option
@click.option("--all", "show_all", is_flag=True, help="List every layer, not only the spatial candidates.")
def layers(model, weights, preprocess, labels, input_size, unsafe_model_code, show_all):
    """List the candidate target layers of a model, marking the automatic pick."""
    try:
        spec = _load_spec(model, weights, preprocess, labels, input_size, unsafe_model_code)
        from .graph import iter_layers
        from .layers import auto_target_layer, candidate_layers

        pick = auto_target_layer(spec.model, head=spec.known_head)
    except GradcamError as error:
        _fail(error)
    listed = list(iter_layers(spec.model)) if show_all else candidate_layers(spec.model)
    for info in listed:
        marker = "*" if info.layer is pick.layer and info.tap == pick.tap else " "
        click.echo(f"{marker} {info.path:<50} {type(info.layer).__name__:<24} {info.shape_text()}")
    click.echo(f"* automatic pick: {pick.path}", err=True)


INTERNAL_ERROR = 4


def main() -> None:
    """The console script. Known errors exit from inside the commands; an unexpected exception is
    a bug, so its traceback is shown for the report, and it exits 4 rather than 1 (which means
    "some inputs failed")."""
    try:
        cli(prog_name="gradcam")
    except KeyboardInterrupt:
        click.echo("gradcam: interrupted.", err=True)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 (the last line of defence)
        import traceback

        traceback.print_exc()
        click.echo(f"gradcam: internal error ({type(error).__name__}: {error}); this is a bug, please report "
                   "it with the command and the traceback above.", err=True)
        sys.exit(INTERNAL_ERROR)
