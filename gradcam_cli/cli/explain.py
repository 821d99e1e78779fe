"""``gradcam explain``: overlays, heatmaps and the manifest for images, on the local or the Ray runner."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import GradcamError
from ..methods import METHODS
from ..options import DEFAULT_OVERLAY_SIZE
from .common import (
    MethodType,
    OverlaySize,
    alpha_option,
    announce_report,
    check_detector_options,
    collect_or_fail,
    colormap_option,
    detect_options,
    exclude_option,
    fail,
    layer_value,
    load_spec,
    max_megapixels_option,
    model_arguments,
    model_options,
    model_output_option,
    recursive_option,
    region_option,
    target_options,
    tuning_options,
    warn_large_batch,
    xla_option,
)


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@model_options
@click.option("--method", type=MethodType(), default="gradcam", show_default=True,
              help=f"{', '.join(METHODS)} ('gradcam methods' describes them).")
@click.option("--smooth", type=click.Choice(["aug", "eigen"]), default=None,
              help="aug: average over flips and brightness changes (6x the work); eigen: first "
                   "principal component of the weighted activations.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="scorecam, ablationcam: channels per extra forward pass (default: as many as keep a pass within 64 model inputs, whatever the batch size); bounds memory.")
@click.option("--counterfactual", is_flag=True,
              help="Counterfactual maps (Selvaraju 2017, 3.3): the class score's gradients negated, so the map shows "
                   "what lowers the class (distractors). Gradient methods only.")
@click.option("--max-channels", type=click.IntRange(min=1), default=None,
              help="scorecam: keep only the N channels of highest variance (Faster Score-CAM).")
@tuning_options
@target_options
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default="gradcam_out", show_default=True)
@alpha_option
@colormap_option
@recursive_option
@exclude_option
@click.option("--overwrite", is_flag=True,
              help="Redo inputs already explained in OUTPUT_DIR (by default a rerun resumes, skipping them).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-image predictions.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest rows as JSON lines on stdout.")
@xla_option
@click.option("--report", is_flag=True, help="Also write OUTPUT_DIR/index.html, a gallery of the run.")
@model_output_option
@region_option
@detect_options
@click.option("--overlay-size", type=OverlaySize(), default=str(DEFAULT_OVERLAY_SIZE), show_default=True,
              help="Longest side of each overlay JPEG in pixels, or 'original' for the input's own size.")
@max_megapixels_option
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: a Ray cluster through Ray Data (the 'ray' extra).")
@click.option("--ray-address", default=None,
              help="--engine ray: join this cluster (HOST:PORT, ray://HOST:PORT, auto; default "
                   "RAY_ADDRESS). Without one an embedded local Ray runs for the job.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="--engine ray: model actors, one CPU each (default: the cluster's CPUs; the "
                   "embedded Ray gets this many CPUs). Local engine: decode and write threads.")
def explain(inputs, model, weights, method, smooth, chunk_size, counterfactual, max_channels, layers, combine, classes, top_k, batch_size, output_dir, alpha, colormap,
            recursive, excludes, overwrite, quiet, as_json, xla, report, model_output, region, overlay_size, max_megapixels,
            engine, ray_address, workers, preprocess, labels, input_size, unsafe_model_code, task=None, min_score=0.5,
            boxes=(), tuning=None):
    """Explain images: write overlay JPEGs, raw .npy heatmaps and manifest.jsonl to OUTPUT_DIR.

    INPUTS are image files, folders (with -r, their sub-folders too) and glob patterns (quote them;
    ** matches any number of folders). Each file is explained once, however it was reached.
    """
    from ..storage import is_uri

    output_dir, items = list_run_inputs(inputs, recursive, excludes, output_dir, report)
    try:
        check_engine(engine, ray_address)
        arguments = model_arguments(model, weights, preprocess, labels, input_size, unsafe_model_code, model_output,
                                    task)
        spec = load_spec(model, weights, preprocess, labels, input_size, unsafe_model_code, model_output, task)
        check_detector_options(spec, min_score, boxes)
        warn_large_batch(batch_size, spec.input_size, len(items))
        from ..options import RunOptions

        options = RunOptions(method=method, layer=layer_value(layers), combine=combine, classes=list(classes) or None,
                             top_k=top_k,
                             batch_size=batch_size, output_dir=output_dir if is_uri(output_dir) else Path(output_dir),
                             alpha=alpha,
                             colormap=colormap, overwrite=overwrite, xla=xla, smooth=smooth,
                             chunk_size=chunk_size, max_channels=max_channels, region=region,
                             counterfactual=counterfactual, tuning=tuning, overlay_size=overlay_size,
                             max_megapixels=max_megapixels)
        options.min_score, options.boxes = min_score, list(boxes) or None  # a detector's (--task detect)
        summary = run_on_engine(items, spec, options, engine, arguments, ray_address, workers, quiet, as_json)
    except GradcamError as error:
        fail(error)
    finish_run(summary, output_dir, quiet, report)


def list_run_inputs(inputs, recursive, excludes, output_dir, report):
    """(output folder, inputs) of a run that writes a folder (explain, similar): a --report needs a
    local one; inputs that name nothing fail here, before any model loads."""
    from ..storage import is_uri, local_path

    output_dir = output_dir if is_uri(output_dir) else local_path(output_dir)
    if report and is_uri(output_dir):
        fail(GradcamError(f"--report writes a local gallery: use a local -o/--output-dir, not {output_dir}."))
    return output_dir, collect_or_fail(inputs, recursive, excludes, output_dir)


def check_engine(engine: str, ray_address: str | None) -> None:
    """--engine ray: Ray Data installed and the cluster answering, before the model loads."""
    if engine == "ray":
        from ..runners.ray_session import cluster_address, require_ray

        require_ray()
        cluster_address(ray_address)


def run_on_engine(items, spec, options, engine, arguments, ray_address, workers, quiet, as_json):
    """The run on the local engine (``workers``: its threads) or on Ray (``workers``: its actors), with the
    progress bar and the per-image lines; its summary."""
    engine_run = None
    if engine == "ray":
        from functools import partial

        from ..runners.ray import run_explain_ray

        engine_run = partial(run_explain_ray, model_arguments=arguments, address=ray_address, workers=workers)
    elif workers:
        options.workers = workers
    return _run_with_progress(items, spec, options, quiet, as_json, engine_run)


def finish_run(summary, output_dir, quiet, report) -> None:
    """After a run: the gallery (--report), the closing lines, the exit code."""
    if report:
        try:
            announce_report(output_dir, quiet)
        except GradcamError as error:
            fail(error)
    _report(summary, output_dir, quiet)
    sys.exit(summary.exit_code)


def _run_with_progress(items, spec, options, quiet, as_json, engine_run=None):
    from tqdm import tqdm

    from ..heads import format_prediction
    from ..runners.local import run_explain

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
    note = summary.noise_note()
    if note:
        click.echo(f"gradcam: {note}", err=True)
    if summary.failures:
        click.echo(f"gradcam: {len(summary.failures)} input(s) failed:", err=True)
        for _, message in summary.failures:
            click.echo(f"  {message}", err=True)
    if summary.interrupted and (summary.rows or summary.images_skipped):
        click.echo(f"gradcam: interrupted after {summary.images_done} image(s); {output_dir}/manifest.jsonl "
                   "is up to date and a rerun resumes from there.", err=True)
    elif summary.interrupted:
        click.echo("gradcam: interrupted before the first image was written; nothing to resume.", err=True)
    elif not quiet:
        skipped = f", {summary.images_skipped} already done" if summary.images_skipped else ""
        click.echo(f"gradcam: {summary.images_done} image(s) explained{skipped} with {summary.method} on "
                   f"layer {summary.layer} in {summary.seconds:.1f} s -> {output_dir}", err=True)
