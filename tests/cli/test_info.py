"""``gradcam models``, ``gradcam layers`` and ``gradcam methods``: what the tool knows."""

from __future__ import annotations

import pytest

from tests.helpers import run


@pytest.mark.slow
def test_models_and_layers_commands():
    listing = run("models")
    assert listing.exit_code == 0 and "Xception" in listing.output and "299" in listing.output
    layers = run("layers", "--model", "demo")
    assert layers.exit_code == 0
    assert "* block3_relu2" in layers.output


def test_methods_command_lists_every_method():
    from gradcam_cli.methods import METHODS

    listing = run("methods")
    assert all(name in listing.output for name in METHODS)


def test_methods_names_line_up_even_the_longest():
    result = run("methods")
    lines = result.output.splitlines()
    starts = {line.index(line.split()[1], len(line.split()[0])) for line in lines}
    assert len(starts) == 1 and any(line.startswith("guided-gradcam  ") for line in lines), result.output
