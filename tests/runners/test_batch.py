"""The batch function and what both runners share (gradcam_cli/runners/batch.py): the rows it
records (empty maps flagged), the resume fingerprint, and the rows of inputs a rerun skips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam_cli import render
from gradcam_cli.manifest import Manifest
from tests.helpers import PAIR, ROOT, SHAPE, run


def manifest(folder: Path) -> list[dict]:
    """The rows with absolute paths (stored relative to the manifest's folder)."""
    return Manifest.read_rows(folder / "manifest.jsonl")


@pytest.fixture
def dead_model(keras, tmp_path):
    """A conv layer whose ReLU output is all zero: every map is empty."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer="zeros",
                            bias_initializer=keras.initializers.Constant(-1.0), name="dead")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    path = tmp_path / "dead.keras"
    model.save(path)
    return path


def test_all_zero_maps_are_zeros_not_nan_and_flagged(dead_model, tmp_path):
    result = run("explain", SHAPE, "--model", dead_model, "-o", tmp_path / "out", "--method", "gradcam++")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "are empty" in line]  # one line, naming what to try
    assert len(notes) == 1 and "all 1 map(s) of gradcam++ at layer dead" in notes[0] and "--layer" in notes[0]
    (row,) = manifest(tmp_path / "out")
    assert row["empty_heatmap"] is True
    heatmap = np.load(row["heatmap"], allow_pickle=False)
    assert np.isfinite(heatmap).all() and not heatmap.any()
    overlay = np.asarray(Image.open(row["overlay"])).astype(int)
    original = np.asarray(Image.open(SHAPE).convert("RGB")).astype(int)
    jet_zero = render.colormap_lut("jet")[0]
    expected = 0.4 * jet_zero + 0.6 * original
    assert np.abs(overlay - expected).mean() < 3  # uniform tint from jet(0), JPEG noise only


@pytest.mark.slow
def test_a_model_file_is_one_model_however_its_path_is_typed(tmp_path, monkeypatch):
    """The resume fingerprint held the model path as typed, so `--model m.keras` then
    `--model ./m.keras` redid everything, and the Ray engine (whose actors load the absolute path)
    refused every relative model path as 'a different model'."""
    import shutil

    shutil.copy(ROOT / "gradcam_cli" / "demo" / "shapes_cnn.keras", tmp_path / "m.keras")
    monkeypatch.chdir(tmp_path)
    first = run("explain", PAIR, "--model", "m.keras", "-o", "out")
    assert first.exit_code == 0, first.output
    again = run("explain", PAIR, "--model", tmp_path / "." / "m.keras", "-o", "out")
    assert again.exit_code == 0 and "0 image(s) explained, 1 already done" in again.output, again.output


@pytest.mark.slow
def test_json_lists_the_inputs_a_resumed_run_skips(tmp_path):
    # '--json' used to print nothing for inputs already done, so a script reading stdout lost them.
    import json

    shapes = ROOT / "sample_images" / "shapes"
    first_two = [shapes / "01_single_cross.png", shapes / "02_single_square.png"]
    out = tmp_path / "out"
    first = run("explain", *first_two, "--model", "demo", "-o", out, "--json")
    assert first.exit_code == 0
    again = run("explain", *first_two, shapes / "03_single_triangle.png", "--model", "demo", "-o", out, "--json")
    rows = [json.loads(line) for line in again.stdout.splitlines()]
    assert again.exit_code == 0 and len(rows) == 3
    by_name = {Path(row["input"]).name: row for row in rows}
    assert by_name["01_single_cross.png"]["resumed"] and by_name["02_single_square.png"]["resumed"]
    assert "resumed" not in by_name["03_single_triangle.png"]
    before = {Path(json.loads(line)["input"]).name: json.loads(line) for line in first.stdout.splitlines()}
    assert by_name["01_single_cross.png"]["overlay"] == before["01_single_cross.png"]["overlay"]
    manifest = (out / "manifest.jsonl").read_text().splitlines()
    assert len(manifest) == 3 and not any("resumed" in line for line in manifest)  # not written again
    human = run("explain", *first_two, "--model", "demo", "-o", out)
    assert "01_single_cross.png:" not in human.stdout  # predictions are printed only for new work


def _saved_demo(keras, path: Path, nudge: float = 0.0) -> Path:
    """The demo model saved at ``path``, its last weight nudged (another model, the same architecture)."""
    model = keras.models.load_model(ROOT / "gradcam_cli" / "demo" / "shapes_cnn.keras", compile=False)
    model.weights[-1].assign(model.weights[-1] + nudge)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


@pytest.mark.slow
def test_a_model_is_its_bytes_a_moved_copy_resumes_and_a_replaced_file_redoes(keras, tmp_path):
    """Resume keys the model by its content (ModelSpec.identity), not its path."""
    import shutil

    first = _saved_demo(keras, tmp_path / "a" / "m.keras")
    assert run("explain", PAIR, "--model", first, "-o", tmp_path / "out").exit_code == 0
    moved = tmp_path / "b" / "m.keras"
    moved.parent.mkdir()
    shutil.copy(first, moved)
    again = run("explain", PAIR, "--model", moved, "-o", tmp_path / "out")
    assert "0 image(s) explained, 1 already done" in again.output, again.output
    _saved_demo(keras, first, nudge=0.5)  # another model at the first path
    replaced = run("explain", PAIR, "--model", first, "-o", tmp_path / "out")
    assert "1 image(s) explained" in replaced.output, replaced.output


@pytest.mark.slow
def test_a_manifest_written_before_content_identities_keeps_resuming(keras, tmp_path):
    """Rows of that time carry a config computed from the model file's real path; they still count
    as done while the model stays where it was, and rows redone carry the new config."""
    import json

    from gradcam_cli.models import resolve_model
    from gradcam_cli.options import RunOptions
    from gradcam_cli.runners.batch import BatchJob

    model = _saved_demo(keras, tmp_path / "m.keras")
    out = tmp_path / "out"
    assert run("explain", PAIR, SHAPE, "--model", model, "-o", out).exit_code == 0
    job = BatchJob.create(resolve_model(str(model)), RunOptions(output_dir=out))
    assert job.legacy_config != job.config
    lines = (out / "manifest.jsonl").read_text().splitlines()
    rows = [{**json.loads(line), "config": job.legacy_config} for line in lines]
    (out / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    again = run("explain", PAIR, SHAPE, "--model", model, "-o", out)
    assert "0 image(s) explained, 2 already done" in again.output, again.output
    redone = run("explain", PAIR, "--model", model, "-o", out, "--overwrite")
    assert redone.exit_code == 0
    configs = {Path(row["input"]).name: row["config"] for row in manifest(out)}
    assert configs == {PAIR.name: job.config, SHAPE.name: job.legacy_config}


@pytest.mark.slow
def test_rounding_noise_is_flagged_in_rows_overlays_report_and_one_line(vit, tmp_path):
    """HiResCAM on the tokens entering a pre-norm ViT block is rounding noise (issue 26): the rows say
    so, the overlay carries a caption, the report marks it, and the run ends with one line naming
    the method, the layer and what works; at the automatic tap (the block's norm) nothing is flagged."""
    import json

    path = tmp_path / "vit.keras"
    vit.save(path)
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    noisy = run("explain", tmp_path / "a.png", "--model", path, "--method", "hirescam", "--layer", "transformer_block_2",
                "-o", tmp_path / "noise", "--report")
    assert noisy.exit_code == 0, noisy.output
    (row,) = manifest(tmp_path / "noise")
    assert row["rounding_noise"] is True and row["empty_heatmap"] is False
    lines = [line for line in noisy.output.splitlines() if "rounding noise" in line]
    assert len(lines) == 1 and "hirescam" in lines[0] and "transformer_block_2" in lines[0] and "--method gradcam" in lines[0]
    plain = render.overlay_image(Image.open(tmp_path / "a.png").convert("RGB"), np.load(row["heatmap"]), 0.4,
                                 render.colormap_lut("jet"))
    written = np.asarray(Image.open(row["overlay"]).convert("RGB"), np.float32)
    top = slice(0, 8)
    assert np.abs(written[top] - np.asarray(plain, np.float32)[top]).mean() > 20  # the caption's strip
    assert "rounding noise, not a finding" in (tmp_path / "noise" / "index.html").read_text()
    clean = run("explain", tmp_path / "a.png", "--model", path, "--method", "hirescam", "-o", tmp_path / "clean", "--json")
    rows = [json.loads(line) for line in clean.output.splitlines() if line.startswith("{")]
    assert clean.exit_code == 0 and rows[0]["rounding_noise"] is False and rows[0]["layer"].endswith("ln_1")
    assert "rounding noise" not in clean.output


@pytest.mark.slow
def test_counterfactual_rows_say_so_and_resume_apart(tmp_path):
    first = run("explain", SHAPE, "--model", "demo", "-o", tmp_path / "out")
    second = run("explain", SHAPE, "--model", "demo", "-o", tmp_path / "out", "--counterfactual")
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    assert "already done" not in second.output  # another map: not resumed from the plain run's rows
    plain, counterfactual = sorted(manifest(tmp_path / "out"), key=lambda row: bool(row.get("counterfactual")))
    assert counterfactual["counterfactual"] is True and counterfactual["method"] == "gradcam"
    assert "counterfactual" not in plain and plain["heatmap"] != counterfactual["heatmap"]  # both kept, apart
    assert counterfactual["heatmap"].endswith(".gradcam.counterfactual.c1.npy")
    assert not np.allclose(np.load(plain["heatmap"]), np.load(counterfactual["heatmap"]))
