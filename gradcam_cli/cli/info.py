"""``gradcam methods``, ``gradcam models`` and ``gradcam layers``: what the tool and a model offer."""

from __future__ import annotations

import click

from ..errors import GradcamError, phrase
from .common import (
    fail,
    input_size_option,
    labels_option,
    load_spec,
    model_option,
    model_output_option,
    preprocess_option,
    quiet_tensorflow,
    unsafe_option,
    weights_option,
)


@click.command()
def methods():
    """Describe the class activation methods --method accepts."""
    from ..methods import METHODS

    width = max(map(len, METHODS))
    for name, cls in METHODS.items():
        aliases = f" (also {', '.join(cls.aliases)})" if cls.aliases else ""
        click.echo(f"{name:<{width}}  {phrase(cls.description)}{aliases}")


@click.command()
@click.option("--params", is_flag=True, help="Also count parameters (builds every model; slow the first time).")
def models(params):
    """List the keras.applications architectures --model accepts."""
    quiet_tensorflow()
    from ..models.applications import application_registry

    registry = application_registry()
    click.echo(f"{'name':<20} {'--model key':<20} {'input':>7}" + ("  parameters" if params else ""))
    from ..demo import demo_description

    click.echo(demo_description())
    for key, entry in registry.items():
        line = f"{entry.name:<20} {key:<20} {entry.native_size():>7}"
        if params:
            line += f"  {entry.parameter_count():>12,}"
        click.echo(line)


@click.command()
@model_option
@weights_option
@preprocess_option
@labels_option
@input_size_option
@unsafe_option
@model_output_option
@click.option("--all", "show_all", is_flag=True, help="List every layer, not only the spatial candidates.")
def layers(model, weights, preprocess, labels, input_size, unsafe_model_code, model_output, show_all):
    """List the candidate target layers of a model, marking the automatic pick."""
    try:
        spec = load_spec(model, weights, preprocess, labels, input_size, unsafe_model_code, model_output)
        from ..graph import iter_layers
        from ..layers import auto_target_layer, candidate_layers

        pick = auto_target_layer(spec.model, head=spec.known_head)
    except GradcamError as error:
        fail(error)
    listed = list(iter_layers(spec.model)) if show_all else candidate_layers(spec.model)
    for info in listed:
        marker = "*" if info.layer is pick.layer and info.tap == pick.tap else " "
        click.echo(f"{marker} {info.path:<50} {type(info.layer).__name__:<24} {info.shape_text()}")
    click.echo(f"* automatic pick: {pick.path}", err=True)
