"""``gradcam similar``: what in each query makes an embedding model find it close to a reference."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import GradcamError
from ..methods import METHODS
from ..options import DEFAULT_OVERLAY_SIZE
from .common import (
    MethodType,
    OverlaySize,
    alpha_option,
    batch_size_option,
    check_references,
    colormap_option,
    exclude_option,
    fail,
    layer_option,
    load_spec,
    max_megapixels_option,
    model_arguments,
    model_options,
    recursive_option,
    reference_option,
    warn_large_batch,
    xla_option,
)


@click.command()
@click.argument("queries", nargs=-1, required=True)
@reference_option(required=True)
@model_options
@click.option("--model-output", "model_output", default=None,
              help="The embedding: an output's name or index, or an inner layer's name (e.g. a classifier's "
                   "penultimate layer). Default: the model's output. A rank-4 map is mean-pooled.")
@click.option("--method", type=MethodType(), default="gradcam", show_default=True,
              help=f"A method that differentiates the similarity: {', '.join(METHODS)} (class-agnostic ones are "
                   "refused: their map ignores the reference; so is cam: a cosine has no class weights).")
@click.option("--smooth", type=click.Choice(["aug", "eigen"]), default=None,
              help="aug: average over flips and brightness changes; eigen: first principal component.")
@click.option("--counterfactual", is_flag=True,
              help="Show what lowers the similarity instead (the score's gradients negated).")
@layer_option
@batch_size_option
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default="gradcam_out", show_default=True)
@alpha_option
@colormap_option
@recursive_option
@exclude_option
@click.option("--overwrite", is_flag=True, help="Redo inputs already explained in OUTPUT_DIR (default: resume).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-image similarities.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest rows as JSON lines on stdout.")
@xla_option
@click.option("--report", is_flag=True, help="Also write OUTPUT_DIR/index.html, a gallery of the run.")
@click.option("--overlay-size", type=OverlaySize(), default=str(DEFAULT_OVERLAY_SIZE), show_default=True,
              help="Longest side of each overlay JPEG in pixels, or 'original'.")
@max_megapixels_option
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: a Ray cluster (the reference vectors travel to its actors).")
@click.option("--ray-address", default=None, help="--engine ray: join this cluster (default RAY_ADDRESS, else "
                                                   "an embedded local Ray).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="--engine ray: model actors; local engine: decode and write threads.")
def similar(queries, references, model, weights, preprocess, labels, input_size, unsafe_model_code, model_output,
            method, smooth, counterfactual, layer, batch_size, output_dir, alpha, colormap, recursive, excludes,
            overwrite, quiet, as_json, xla, report, overlay_size, max_megapixels, engine, ray_address, workers):
    """Explain why each QUERY image looks like a reference to an embedding model: the map shows what
    in the query raises the cosine similarity between its embedding and the reference's.

    QUERIES are image files, folders (-r: sub-folders too) and quoted glob patterns. Writes overlay
    JPEGs, raw .npy maps and manifest.jsonl (each row's similarity and reference) to OUTPUT_DIR.

    \b
    Example:
      gradcam similar sample_images/shapes --reference sample_images/shapes/03_single_triangle.png \\
          --model demo --model-output gap
    """
    from ..storage import is_uri
    from .explain import check_engine, finish_run, list_run_inputs, run_on_engine

    output_dir, items = list_run_inputs(queries, recursive, excludes, output_dir, report)
    try:
        check_engine(engine, ray_address)
        from ..reference import Reference

        check_references(references)
        arguments = model_arguments(model, weights, preprocess, labels, input_size, unsafe_model_code, model_output)
        spec = load_spec(model, weights, preprocess, labels, input_size, unsafe_model_code)
        from ..options import RunOptions

        reference = Reference.compute(spec, list(references), model_output, overlay_size, max_megapixels)
        spec = reference.apply(spec)
        if not quiet:
            click.echo(f"gradcam: {spec.head.describe()}: {reference.describe()}", err=True)
        warn_large_batch(batch_size, spec.input_size, len(items))
        options = RunOptions(method=method, layer=layer, classes=list(range(len(reference.names))), top_k=1,
                             batch_size=batch_size, output_dir=output_dir if is_uri(output_dir) else Path(output_dir),
                             alpha=alpha, colormap=colormap, overwrite=overwrite, xla=xla, smooth=smooth,
                             counterfactual=counterfactual, overlay_size=overlay_size, max_megapixels=max_megapixels,
                             reference=reference)
        summary = run_on_engine(items, spec, options, engine, arguments, ray_address, workers, quiet, as_json)
    except GradcamError as error:
        fail(error)
    finish_run(summary, output_dir, quiet, report)
