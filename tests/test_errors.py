"""Error messages name parameters in neutral words and are phrased for whoever reads them."""

from __future__ import annotations

import pytest

from gradcam_cli.errors import PARAMETERS, OptionConflict, command_line_names, param, phrase


def test_a_message_names_flags_on_the_command_line_and_keywords_in_python():
    error = OptionConflict(f"{param('top_k', 3)} and {param('classes')} cannot be combined")
    assert str(error) == "top_k=3 and classes cannot be combined"
    with command_line_names():
        assert str(error) == "--top-k 3 and --class cannot be combined"
    assert str(error) == "top_k=3 and classes cannot be combined"  # back to Python once the command ends


def test_a_flag_without_value_is_spelled_alone_on_the_command_line():
    text = f"pass {param('safe_mode', False)}"
    assert phrase(text, command_line=False) == "pass safe_mode=False"
    assert phrase(text, command_line=True) == "pass --unsafe-model-code"


def test_every_parameter_has_a_flag_and_an_unknown_one_is_a_bug():
    assert all(flag.startswith("-") for flag in PARAMETERS.values())
    with pytest.raises(KeyError, match="add it to PARAMETERS"):
        param("no_such_parameter")


def test_the_cli_prints_the_flag_for_an_error_raised_in_the_core(tmp_path):
    from click.testing import CliRunner

    from gradcam_cli.cli import cli

    result = CliRunner().invoke(cli, ["explain", "sample_images/shapes/01_single_cross.png", "--top-k", "2",
                                      "--class", "circle", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "--top-k 2 and --class cannot be combined" in result.output, result.output
