"""``gradcam compare`` end to end: options, usage errors and exit codes (the sheet itself:
tests/test_compare.py)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gradcam_cli.cli import cli
from tests.helpers import PAIR, run
from tests.references import NEVER, region_gradcam


def test_compare_on_a_multi_output_model_names_its_own_option(tmp_path, two_output_model_file):
    result = run("compare", PAIR, "--model", two_output_model_file, "--methods", "gradcam", "-o", tmp_path / "s.png")
    assert result.exit_code == 2, result.output
    assert "--model-output" in result.output, result.output
    result = run("compare", PAIR, "--model", two_output_model_file, "--model-output", "age", "--methods", "gradcam",
                 "-o", tmp_path / "s.png")
    assert result.exit_code == 0 and (tmp_path / "s.png").exists(), result.output


def test_compare_without_methods_is_a_usage_error(tmp_path):
    result = run("compare", PAIR, "--methods", ",", "-o", tmp_path / "s.png")
    assert result.exit_code == 2 and "--methods" in result.output


@pytest.mark.slow
def test_compare_lists_unreadable_images_and_exits_1(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    result = run("compare", PAIR, broken, "--methods", "gradcam", "-o", tmp_path / "sheet.png")
    assert result.exit_code == 1 and "broken.png" in result.output and (tmp_path / "sheet.png").exists()


@pytest.mark.slow
def test_compare_and_the_callback_take_a_region(unet, unet_images, tmp_path):
    """Both lacked --region / region=: a class no pixel is predicted as could not be compared or
    watched in training; over 'all' it can, and the callback's map is the numpy reference's."""
    from gradcam_cli.callbacks import GradCAMCallback

    model_path = tmp_path / "unet.keras"
    unet.save(model_path)
    inputs = []
    for index, image in enumerate(unet_images):
        inputs.append(str(tmp_path / f"img{index}.png"))
        Image.fromarray(image.astype(np.uint8)).save(inputs[-1])
    runner = CliRunner()
    command = ["compare", *inputs, "--model", str(model_path), "--methods", "gradcam,gradcam++", "--class", str(NEVER)]
    empty = runner.invoke(cli, [*command, "-o", str(tmp_path / "pred.png")], catch_exceptions=False)
    assert empty.exit_code != 0 and "is empty" in empty.output and "Traceback" not in empty.output
    assert "--region" in empty.output  # the message names the fix
    result = runner.invoke(cli, [*command, "--region", "all", "-o", str(tmp_path / "all.png")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "all.png").size == (3 * 224, 2 * (224 + 22) + 22)

    callback = GradCAMCallback(unet_images, classes=[NEVER, NEVER], region="all", log_dir=None, png_dir=tmp_path / "cb")
    callback.set_model(unet)
    callback.explain(0)
    expected, _ = region_gradcam(unet, unet_images, NEVER, "all")
    watched = callback.last_results["gradcam"].heatmaps[:, 0]
    assert expected.max() > 0 and np.corrcoef(watched.ravel(), expected.ravel())[0, 1] > 0.999
    np.testing.assert_allclose(watched, expected, rtol=1e-2, atol=1e-3 * expected.max())


def test_an_unwritable_sheet_is_exit_3_and_one_line_before_any_work(tmp_path, monkeypatch):
    from gradcam_cli.cli import compare as compare_command

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(compare_command, "load_spec", no_model)
    result = run("compare", PAIR, "-o", "/proc/gradcam_sheet.png")  # /proc takes no new files, even as root
    assert result.exit_code == 3, result.output
    assert "/proc/gradcam_sheet.png: cannot write" in result.output and "-o/--output" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_sheet_that_cannot_be_written_at_the_end_is_exit_3(tmp_path, monkeypatch):
    import errno

    from gradcam_cli import outputs

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(outputs, "atomic_write_bytes", read_only)
    result = run("compare", PAIR, "--methods", "gradcam", "-o", tmp_path / "s.png")
    assert result.exit_code == 3, result.output
    assert "s.png: cannot write (Read-only file system)" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_compare_bounds_its_decodes_with_max_megapixels(tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (1600, 1000), "gray").save(big)
    result = run("compare", PAIR, big, "--methods", "gradcam", "--max-megapixels", 1, "-o", tmp_path / "s.png")
    assert result.exit_code == 1 and "big.png" in result.output and "--max-megapixels 1" in result.output
    assert (tmp_path / "s.png").exists()


@pytest.mark.slow
def test_a_missing_input_is_one_line_and_the_rest_are_compared(tmp_path):
    # compare refused the whole run (exit 2) for one missing file among good ones
    result = run("compare", PAIR, tmp_path / "gone.png", "--methods", "gradcam", "-o", tmp_path / "sheet.png")
    assert result.exit_code == 1, result.output
    assert result.output.count("gone.png: no such file or folder.") == 1 and (tmp_path / "sheet.png").exists()


def test_compare_on_a_folder_without_images_is_one_line_and_exit_2(tmp_path):
    # it exited 1, as if images had failed, after loading the model
    (tmp_path / "empty").mkdir()
    result = run("compare", tmp_path / "empty", "-o", tmp_path / "sheet.png")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "no image files found" in result.output and not (tmp_path / "sheet.png").exists()
