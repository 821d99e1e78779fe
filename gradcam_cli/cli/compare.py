"""``gradcam compare``: one sheet, a row per image and class, a column per method."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import GradcamError
from .common import (
    MethodType,
    alpha_option,
    check_detector_options,
    check_references,
    collect_or_fail,
    colormap_option,
    combine_option,
    detect_options,
    fail,
    input_size_option,
    labels_option,
    layer_value,
    layers_option,
    load_spec,
    max_megapixels_option,
    model_option,
    model_output_option,
    preprocess_option,
    reference_option,
    region_option,
    tuning_options,
    unsafe_option,
    weights_option,
)


@click.command()
@click.argument("images", nargs=-1, required=True)
@model_option
@weights_option
@click.option("--methods", "method_list", default="gradcam,gradcam++,layercam,eigencam", show_default=True,
              help="Comma-separated methods, one column each.")
@layers_option
@combine_option
@click.option("--class", "classes", multiple=True,
              help="Class to explain (index or label); repeat for several, a row each. Default: top-1.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="gradcam_compare.png", show_default=True,
              help="The sheet: .png or .jpg.")
@alpha_option
@colormap_option
@model_output_option
@max_megapixels_option
@preprocess_option
@labels_option
@input_size_option
@unsafe_option
@region_option
@detect_options
@reference_option()
@tuning_options
def compare(images, model, weights, method_list, layers, combine, classes, output, alpha, colormap, model_output, max_megapixels,
            preprocess, labels, input_size, unsafe_model_code, region, task, min_score, boxes, references, tuning=None):
    """Compare methods side by side: one sheet (.png or .jpg), a row per image and class (a detector:
    per box; --reference: per reference), a column per method."""
    method_type = MethodType()
    methods = [method_type.convert(m.strip(), None, None) for m in method_list.split(",") if m.strip()]
    if not methods:
        raise click.BadParameter("names no method; give one or more, comma-separated.", param_hint="--methods")
    from ..storage import is_uri

    remote = [image for image in images if is_uri(image)]
    if remote:
        fail(GradcamError(f"{remote[0]}: gradcam compare reads local files; copy it here first, or use "
                          "'gradcam explain', which reads object stores."))
    items = collect_or_fail(images, False, (), None)  # a missing input is said once, the rest are compared
    arguments = {str(Path(image)) for image in images}
    missing = [item for item in items if item.error and item.path in arguments]
    readable = [item.path for item in items if item not in missing]
    try:
        from ..compare import compare_sheet, sheet_format
        from ..outputs import check_file_writable

        sheet_format(output)
        check_file_writable(output, "sheet_path")  # before the model loads and every method runs
        check_references(references)
        spec = load_spec(model, weights, preprocess, labels, input_size, unsafe_model_code,
                         None if references else model_output, task)  # with references it names the embedding
        check_detector_options(spec, min_score, boxes)
        from ..options import RunOptions
        from ..reference import Reference

        reference = (Reference.compute(spec, list(references), model_output, max_megapixels=max_megapixels)
                     if references else None)
        options = RunOptions(layer=layer_value(layers), combine=combine, classes=list(classes) or None,
                             alpha=alpha, colormap=colormap, region=region, max_megapixels=max_megapixels,
                             tuning=tuning, min_score=min_score, boxes=list(boxes) or None, reference=reference)
        sheet, failures = compare_sheet(spec, readable, methods, output, options)
    except GradcamError as error:
        fail(error)
    for _, message in failures:
        click.echo(f"gradcam: {message}", err=True)
    click.echo(f"gradcam: comparison sheet written to {sheet}", err=True)
    sys.exit(1 if failures or missing else 0)
