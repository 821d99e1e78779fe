"""``gradcam concepts`` end to end: the files it writes, usage errors and exit codes (the
factorisation itself: tests/test_concepts.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.cli import cli
from gradcam_cli.cli.concepts import concepts
from tests.helpers import PAIR, SHAPES, run

cli.add_command(concepts)  # what its line in COMMANDS does; harmless once it is there

SECOND = SHAPES / "06_pair_square_star.png"


@pytest.fixture(scope="module")
def demo_concepts(tmp_path_factory):
    output = tmp_path_factory.mktemp("concepts")
    return run("concepts", PAIR, SECOND, "--model", "demo", "-k", 3, "-o", output), output


@pytest.mark.slow
def test_concepts_writes_a_sheet_and_the_factors_per_image(demo_concepts):
    result, output = demo_concepts
    assert result.exit_code == 0, result.output
    for stem in ("05_pair_circle_triangle_png", "06_pair_square_star_png"):
        assert np.load(output / f"{stem}.concept_maps.npy").shape == (24, 24, 3)  # block3_relu2, K = 3
        assert np.load(output / f"{stem}.concept_directions.npy").shape == (3, 144)
        sheet = Image.open(output / f"{stem}.concepts.png")
        assert sheet.format == "PNG" and sheet.width == 5 * 224 + 6 * 4
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(PAIR)) and lines[0].count(" | ") == 2
    assert "3 concepts of layer block3_relu2 in 2 image(s), each image on its own" in result.output


@pytest.mark.slow
def test_the_demo_models_pair_images_split_into_their_two_shapes(demo_concepts):
    """Each of the two shapes of a pair is a concept of its own, named after it."""
    result, _ = demo_concepts
    first, second = result.stdout.strip().splitlines()
    assert "circle 100.0%" in first and "triangle 100.0%" in first
    assert "square 100.0%" in second and "star 100.0%" in second


@pytest.mark.slow
def test_concepts_per_batch_write_one_set_of_directions(tmp_path):
    result = run("concepts", PAIR, SECOND, "--model", "demo", "-k", 4, "--concepts-per", "batch", "-q", "-o", tmp_path)
    assert result.exit_code == 0 and result.stdout == "", result.output
    assert np.load(tmp_path / "concept_directions.npy").shape == (4, 144)
    assert not list(tmp_path.glob("*.concept_directions.npy"))
    maps = np.stack([np.load(path) for path in sorted(tmp_path.glob("*.concept_maps.npy"))])
    np.testing.assert_allclose(maps.max(axis=(0, 1, 2)), 1.0)  # one scale over the batch


@pytest.mark.slow
def test_an_unreadable_image_fails_alone_with_exit_1(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    result = run("concepts", PAIR, broken, "--model", "demo", "-k", 2, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert "broken.png: not an image Pillow can read" in result.output and "Traceback" not in result.output
    assert (tmp_path / "out" / "05_pair_circle_triangle_png.concepts.png").exists()
    assert not (tmp_path / "out" / "broken_png.concepts.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("arguments", "expected"), [
    (["-k", 145], "ask for at most 144"),
    (["--layer", "no_such_layer"], "no layer named 'no_such_layer'"),
])
def test_a_bad_concept_count_or_layer_is_one_line_and_exit_2(tmp_path, arguments, expected):
    result = run("concepts", PAIR, "--model", "demo", *arguments, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert expected in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not list((tmp_path / "out").glob("*.png"))


@pytest.mark.parametrize(("arguments", "expected"), [
    (["-k", 0], "Invalid value for '-k' / '--concepts'"),
    (["--concepts-per", "pixel"], "Invalid value for '--concepts-per'"),
])
def test_usage_errors_are_clicks_exit_2(tmp_path, arguments, expected):
    result = run("concepts", PAIR, *arguments, "-o", tmp_path / "out")
    assert result.exit_code == 2 and expected in result.output, result.output


def test_a_missing_input_is_exit_2_before_the_model_loads(tmp_path, monkeypatch):
    from gradcam_cli.cli import concepts as command

    monkeypatch.setattr(command, "load_spec", _refuse_to_load)
    result = run("concepts", tmp_path / "nothing.png", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "nothing.png" in result.output, result.output


def test_an_unwritable_output_is_exit_3_and_one_line_before_the_model_loads(monkeypatch):
    from gradcam_cli.cli import concepts as command

    monkeypatch.setattr(command, "load_spec", _refuse_to_load)
    result = run("concepts", PAIR, "-o", "/proc/gradcam_concepts")  # /proc takes no new folders, even as root
    assert result.exit_code == 3, result.output
    assert "/proc/gradcam_concepts: cannot write" in result.output and "-o/--output-dir" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_ctrl_c_exits_130_not_clicks_1(tmp_path, monkeypatch, capsys):
    import gradcam_cli.cli as cli_module
    from gradcam_cli.cli import concepts as command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "load_spec", interrupted)
    monkeypatch.setattr(sys, "argv", ["gradcam", "concepts", str(PAIR), "-o", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as stopped:
        cli_module.main()
    assert stopped.value.code == 130
    err = capsys.readouterr().err
    assert "gradcam: interrupted." in err and "Aborted!" not in err


def test_concepts_help_imports_no_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from gradcam_cli.cli import cli; "
            "from gradcam_cli.cli.concepts import concepts; cli.add_command(concepts); "
            "r = CliRunner().invoke(cli, ['concepts', '--help']); assert r.exit_code == 0, r.output; "
            "assert '--concepts-per' in r.output; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules, 'jax' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False False False"


def _refuse_to_load(*args, **kwargs):
    raise AssertionError("the model was loaded")
