"""What every command shares: the ``gradcam`` group and its entry points, help that imports no
TensorFlow, the exit code of a bug, and the options declared once in gradcam_cli/cli/common.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import PAIR, ROOT, run


def test_help_imports_no_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from gradcam_cli.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); r2 = CliRunner().invoke(cli, ['explain', '--help']); "
            "assert r.exit_code == 0 and r2.exit_code == 0, r.output; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False False"


def test_console_script_and_module_entry_points():
    script = shutil.which("gradcam", path=os.path.dirname(sys.executable)) or shutil.which("gradcam")
    assert script, "the gradcam console script is not installed"
    version = subprocess.run([script, "--version"], capture_output=True, text=True, check=True).stdout
    assert "0.1.0" in version
    as_module = subprocess.run([sys.executable, "-m", "gradcam_cli", "--help"], capture_output=True, text=True)
    assert as_module.returncode == 0 and "explain" in as_module.stdout


def test_top_level_help_counts_the_methods_right():
    from gradcam_cli.methods import METHODS

    words = {7: "seven", 15: "fifteen"}
    result = run("--help")
    assert f"Grad-CAM++ and {words[len(METHODS) - 3]} more" in " ".join(result.output.split()), result.output


def test_an_unexpected_exception_exits_4_not_1(monkeypatch, capsys):
    import gradcam_cli.cli as cli_module

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_module, "cli", broken)
    with pytest.raises(SystemExit) as stopped:
        cli_module.main()
    assert stopped.value.code == cli_module.INTERNAL_ERROR == 4
    assert "internal error (RuntimeError: boom)" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "10,abc"])
def test_a_bad_input_size_names_the_option(tmp_path, value):
    result = run("explain", PAIR, "--input-size", value, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "--input-size" in result.output.splitlines()[-1], result.output


def test_weights_with_a_model_file_and_nan_alpha_in_compare_are_refused(tmp_path):
    model = ROOT / "gradcam_cli" / "demo" / "shapes_cnn.keras"
    result = run("explain", PAIR, "--model", model, "--weights", tmp_path / "w.weights.h5", "-o", tmp_path / "o")
    assert result.exit_code == 2 and "carries its own weights" in result.output
    result = run("compare", PAIR, "--alpha", "nan", "-o", tmp_path / "s.png")
    assert result.exit_code == 2 and "finite" in result.output


def _main(monkeypatch, *arguments):
    import gradcam_cli.cli as cli_module

    monkeypatch.setattr(sys, "argv", ["gradcam", *map(str, arguments)])
    with pytest.raises(SystemExit) as stopped:
        cli_module.main()
    return stopped.value.code


@pytest.mark.parametrize("command", ["explain", "compare", "layers"])
def test_ctrl_c_while_the_model_loads_exits_130_not_clicks_1(command, tmp_path, monkeypatch, capsys):
    """Click's own handler prints 'Aborted!' and exits 1, which a CI script reads as 'some inputs failed'."""
    from gradcam_cli.cli import common, compare, explain, info

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    for module in (common, compare, explain, info):
        monkeypatch.setattr(module, "load_spec", interrupted)
    arguments = {"explain": [PAIR, "-o", tmp_path / "out"], "compare": [PAIR, "-o", tmp_path / "s.png"],
                 "layers": []}[command]
    assert _main(monkeypatch, command, *arguments, "--model", "demo") == 130
    err = capsys.readouterr().err
    assert "gradcam: interrupted." in err and "Aborted!" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "s.png").exists()


def test_the_console_script_keeps_clicks_usage_errors_and_help(monkeypatch, capsys):
    assert _main(monkeypatch, "explain", PAIR, "--top-k", "zero") == 2
    assert "Invalid value for '--top-k'" in capsys.readouterr().err
    assert _main(monkeypatch, "--help") == 0 and "explain" in capsys.readouterr().out
    assert _main(monkeypatch, "--version") == 0


def test_an_interrupt_before_the_first_image_does_not_promise_a_manifest(tmp_path, monkeypatch, capsys):
    from gradcam_cli.cli import explain
    from gradcam_cli.runners.summary import RunSummary

    monkeypatch.setattr(explain, "_run_with_progress",
                        lambda items, spec, options, quiet, as_json, engine_run=None: RunSummary(interrupted=True))
    assert _main(monkeypatch, "explain", PAIR, "--model", "demo", "-o", tmp_path / "out") == 130
    err = capsys.readouterr().err
    assert "before the first image was written; nothing to resume" in err and "up to date" not in err


def test_a_batch_above_the_documented_pixels_warns_in_one_line(capsys):
    from gradcam_cli.cli.common import LARGE_BATCH_PIXELS, warn_large_batch

    assert LARGE_BATCH_PIXELS == 256 * 224 * 224  # the rule --help and docs/cli.md state
    warn_large_batch(256, (224, 224), 1000)  # at the line: quiet
    warn_large_batch(512, (224, 224), 3)  # only 3 inputs: the run's batch is 3
    assert capsys.readouterr().err == ""
    warn_large_batch(512, (224, 224), 1000)
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and warning.startswith("gradcam: warning: -b/--batch-size 512 puts 512 inputs")
    assert "25.7 M pixels" in warning


@pytest.mark.slow
@pytest.mark.parametrize("command", ["explain", "evaluate"])
def test_a_huge_batch_is_a_warning_not_an_error_and_zero_is_refused(command, tmp_path, monkeypatch):
    from gradcam_cli.cli import common

    monkeypatch.setattr(common, "LARGE_BATCH_PIXELS", 96 * 96)  # the demo's input: a batch of 2 is over
    extra = ["--methods", "gradcam", "--metrics", "drop"] if command == "evaluate" else []
    result = run(command, PAIR, PAIR.parent / "01_single_cross.png", "-o", tmp_path / "out", "-b", "64", *extra)
    assert result.exit_code == 0, result.output
    assert result.output.count("gradcam: warning: -b/--batch-size 64 puts 2 inputs of 96x96 px") == 1
    refused = run(command, PAIR, "-o", tmp_path / "zero", "-b", "0")
    assert refused.exit_code == 2 and "'-b' / '--batch-size': 0 is not in the range x>=1" in refused.output


@pytest.mark.parametrize("command", ["explain", "evaluate", "compare"])
def test_a_single_missing_input_is_one_line_and_exit_2(command, tmp_path):
    # it took two lines: the file, then "nothing to explain: every input above is missing or refused"
    result = run(command, tmp_path / "nope.png", "-o", tmp_path / ("out.png" if command == "compare" else "out"))
    assert result.exit_code == 2 and result.output == f"gradcam: error: {tmp_path / 'nope.png'}: no such file or folder.\n"
