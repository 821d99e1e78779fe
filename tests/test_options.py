"""One options object for a run: one name and one default per option, whoever starts the run."""

from __future__ import annotations

import inspect
from dataclasses import fields

from gradcam_cli.options import DEFAULT_ALPHA, EXPLAINER_FIELDS, RunOptions


def test_every_surface_has_the_same_opacity_default():
    from gradcam_cli.api import explain
    from gradcam_cli.callbacks import GradCAMCallback
    from gradcam_cli.cli import cli

    assert RunOptions().alpha == DEFAULT_ALPHA
    assert inspect.signature(explain).parameters["alpha"].default == DEFAULT_ALPHA
    assert inspect.signature(GradCAMCallback).parameters["alpha"].default == DEFAULT_ALPHA
    for command in ("explain", "compare"):
        alpha = next(p for p in cli.commands[command].params if p.name == "alpha")
        assert alpha.default == DEFAULT_ALPHA, command


def test_the_model_output_and_the_classes_have_one_name_on_every_surface():
    from gradcam_cli.api import explain
    from gradcam_cli.callbacks import GradCAMCallback
    from gradcam_cli.cli import cli
    from gradcam_cli.models import resolve_model

    for function in (explain, GradCAMCallback, resolve_model):
        assert "model_output" in inspect.signature(function).parameters, function
    assert "classes" in inspect.signature(explain).parameters and "classes" in inspect.signature(GradCAMCallback).parameters
    for command in ("explain", "compare", "evaluate"):
        names = {name for p in cli.commands[command].params for name in p.opts}
        assert "--model-output" in names, command
        assert "--output" not in names or command == "compare", command  # compare's -o/--output is its sheet


def test_the_explainer_is_made_from_the_options(demo_spec):
    from gradcam_cli.explainer import Explainer

    options = RunOptions(method="gradcam++", layer="block3_relu1", batch_size=3, smooth="eigen")
    explainer = Explainer.from_options(demo_spec, options)
    assert (explainer.method.name, explainer.layer_name, explainer.batch_size, explainer.smooth) == \
        ("gradcam++", "block3_relu1", 3, "eigen")
    other = Explainer.from_options(demo_spec, options, batch_size=5, method="layercam")
    assert (other.method.name, other.batch_size) == ("layercam", 5)
    assert set(EXPLAINER_FIELDS) <= {field.name for field in fields(RunOptions)}


def test_evaluate_options_are_run_options_with_evaluate_s_own():
    from gradcam_cli.evaluate import EvaluateOptions

    options = EvaluateOptions(layer="x", top_k=2)
    assert isinstance(options, RunOptions) and options.alpha == DEFAULT_ALPHA and options.max_megapixels
    assert options.methods == ["gradcam", "gradcam++", "random", "center"]
    assert options.metrics == ["deletion", "insertion", "drop", "increase"] and options.output_dir is None
    from gradcam_cli.metrics.ground_truth import load_ground_truth
    from tests.helpers import SHAPES

    with_boxes = EvaluateOptions(ground_truth=load_ground_truth(SHAPES / "ground_truth.json"))
    assert with_boxes.metrics[-2:] == ["pointing", "energy"]  # the command line's default too
