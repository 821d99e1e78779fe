"""``gradcam evaluate``: score methods' maps against the baselines, optionally gate a CI job on them."""

from __future__ import annotations

import json
import sys

import click

from ..errors import GradcamError
from .common import (
    INTERRUPTED,
    MethodType,
    announce_report,
    check_detector_options,
    check_references,
    collect_or_fail,
    detect_options,
    exclude_option,
    fail,
    layer_value,
    load_spec,
    max_megapixels_option,
    model_options,
    model_output_option,
    recursive_option,
    reference_option,
    target_options,
    tuning_options,
    warn_large_batch,
    xla_option,
)


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@model_options
@click.option("--methods", "method_list", default="gradcam,gradcam++,random,center", show_default=True,
              help="Comma-separated methods to score, baselines 'random' and 'center' included.")
@click.option("--metrics", "metric_list", default=None,
              help="Comma-separated: deletion, insertion, drop, increase, pointing, energy, road (ROAD: "
                   "road, road_morf, road_lerf), arcc (arcc, coherency, complexity, road). Default: the first "
                   "six (pointing and energy only with --ground-truth); road and arcc cost more, asked by name.")
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
@model_output_option
@max_megapixels_option
@detect_options
@reference_option()
@tuning_options
def evaluate(inputs, model, weights, preprocess, labels, input_size, unsafe_model_code, method_list, metric_list,
             ground_truth, steps, gates, sanity, layers, combine, classes, top_k, batch_size, copies_per_pass, output_dir,
             overwrite, recursive, excludes, xla, quiet, as_json, report, model_output, max_megapixels, task, min_score,
             boxes, references, tuning=None):
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
        fail(GradcamError("--methods is empty: name at least one, e.g. gradcam,random,center."))
    items = collect_or_fail(inputs, recursive, excludes, output_dir)
    try:
        from ..metrics import parse_metrics
        from ..metrics.summary import parse_gate

        metrics = parse_metrics(metric_list, ground_truth is not None)
        parsed_gates = [parse_gate(text, lambda name: method_type.convert(name, None, None)) for text in gates]
        check_references(references)
        spec = load_spec(model, weights, preprocess, labels, input_size, unsafe_model_code,
                         None if references else model_output, task)  # with references it names the embedding
        check_detector_options(spec, min_score, boxes)
        warn_large_batch(batch_size, spec.input_size, len(items))
        from ..evaluate import EvaluateOptions, format_table, write_outputs
        from ..evaluate import evaluate as run_evaluation
        from ..metrics.ground_truth import load_ground_truth
        from ..reference import Reference

        options = EvaluateOptions(
            reference=Reference.compute(spec, list(references), model_output, max_megapixels=max_megapixels)
            if references else None, min_score=min_score, boxes=list(boxes) or None,
            methods=methods, metrics=None if metric_list is None else metrics, steps=steps, layer=layer_value(layers), combine=combine,
            classes=list(classes) or None, top_k=top_k,
            batch_size=max(1, min(batch_size, len(items))), sanity=sanity, gates=parsed_gates, xla=xla,
            copies_per_pass=copies_per_pass, max_megapixels=max_megapixels, output_dir=output_dir, overwrite=overwrite,
            tuning=tuning,
            ground_truth=load_ground_truth(ground_truth) if ground_truth else None)
        evaluation = _evaluate_with_progress(run_evaluation, items, spec, options, quiet)
        write_outputs(evaluation, output_dir)
        if report:
            announce_report(output_dir, quiet)
    except GradcamError as error:
        fail(error)
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


def _evaluate_with_progress(run_evaluation, items, spec, options, quiet):
    from tqdm import tqdm

    bar = tqdm(total=len(items), unit="img", disable=quiet or not sys.stderr.isatty(), file=sys.stderr,
               dynamic_ncols=True)
    done = [0]

    def progress(count: int) -> None:
        done[0] += count
        bar.update(count)

    try:
        return run_evaluation(items, spec, options, progress=progress)
    except KeyboardInterrupt:
        bar.close()
        if done[0]:
            click.echo(f"gradcam: interrupted after {done[0]} image(s); {options.output_dir}/metrics.jsonl holds the rows "
                       "scored so far and a rerun resumes from them.", err=True)
        else:
            click.echo("gradcam: interrupted before the first image was scored; nothing to resume.", err=True)
        sys.exit(INTERRUPTED)
    finally:
        bar.close()
