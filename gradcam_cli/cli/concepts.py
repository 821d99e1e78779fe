"""``gradcam concepts``: Deep Feature Factorization, a sheet and the factors per image."""

from __future__ import annotations

import sys

import click

from ..errors import GradcamError
from .common import (
    batch_size_option,
    collect_or_fail,
    exclude_option,
    fail,
    layer_option,
    load_spec,
    max_megapixels_option,
    model_options,
    model_output_option,
    recursive_option,
)

CLIPPED_NOTE = 0.01  # a share of negative activation worth a note


@click.command()
@click.argument("images", nargs=-1, required=True)
@model_options
@layer_option
@click.option("-k", "--concepts", type=click.IntRange(min=1), default=5, show_default=True,
              help="Concepts per factorisation (the K of A ~ W H).")
@click.option("--concepts-per", type=click.Choice(["image", "batch"]), default="image", show_default=True,
              help="image: each image factorised on its own; batch: all IMAGES together, so concept k is "
                   "the same in every sheet.")
@click.option("--top-k", type=click.IntRange(min=1), default=2, show_default=True,
              help="Classes named under each concept, highest first.")
@batch_size_option
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default="gradcam_concepts", show_default=True)
@recursive_option
@exclude_option
@model_output_option
@max_megapixels_option
@click.option("-q", "--quiet", is_flag=True, help="No per-image lines.")
def concepts(images, model, weights, preprocess, labels, input_size, unsafe_model_code, layer, concepts, concepts_per,
             top_k, batch_size, output_dir, recursive, excludes, model_output, max_megapixels, quiet):
    """Find the concepts a layer sees (Deep Feature Factorization, Collins et al. 2018): its activations
    factorised by non-negative matrix factorisation into K maps and K channel directions, each named by
    the classes it scores highest.

    Writes per image STEM.concepts.png (the sheet), STEM.concept_maps.npy (h, w, K) and
    STEM.concept_directions.npy (K, c); with --concepts-per batch the directions are one
    concept_directions.npy. IMAGES are files, folders and glob patterns, as for 'gradcam explain'.
    """
    from ..storage import is_uri, local_path

    if is_uri(output_dir):
        fail(GradcamError(f"{output_dir}: gradcam concepts writes a local folder; pass a local -o/--output-dir."))
    output_dir = local_path(output_dir)
    items = collect_or_fail(images, recursive, excludes, output_dir)
    try:
        from ..outputs import OutputFolder

        OutputFolder(output_dir).check_writable()  # before the model loads
        spec = load_spec(model, weights, preprocess, labels, input_size, unsafe_model_code, model_output)
        from ..concepts import describe_concept, write_concepts

        noted = []

        def show(path, found, index):
            if found.clipped > CLIPPED_NOTE and not noted:
                noted.append(path)
                click.echo(f"gradcam: note: {found.clipped:.0%} of layer {found.layer}'s activation is negative "
                           "and was clipped to 0 before the factorisation.", err=True)
            if not quiet:
                listed = " | ".join(f"{k + 1} {describe_concept(spec, found, index, k, 1)} ({found.shares[index, k]:.0%})"
                                    for k in range(found.maps.shape[-1]))
                click.echo(f"{path}: {listed}")

        run = write_concepts(spec, items, output_dir, concepts=concepts, concepts_per=concepts_per, layer=layer,
                             top_k=top_k, batch_size=batch_size, max_megapixels=max_megapixels, on_image=show)
    except GradcamError as error:
        fail(error)
    if run.failures:
        click.echo(f"gradcam: {len(run.failures)} input(s) failed:", err=True)
        for _, message in run.failures:
            click.echo(f"  {message}", err=True)
    if not quiet or not run.sheets:
        per = "each image on its own" if concepts_per == "image" else "all images together"
        click.echo(f"gradcam: {concepts} concepts of layer {run.layer} in {len(run.sheets)} image(s), {per}, in "
                   f"{run.seconds:.1f} s -> {output_dir}", err=True)
    sys.exit(1 if run.failures else 0)
