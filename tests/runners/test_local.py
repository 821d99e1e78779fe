"""Bad input, interruptions, collisions and write failures never lose work (issue: robust batches)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from corpus import BAD, GOOD, make_corpus
from PIL import Image

from gradcam_cli import decode as decode_module
from gradcam_cli import outputs, render
from gradcam_cli.cli import cli
from gradcam_cli.decode import load_image
from gradcam_cli.manifest import Manifest

ROOT = Path(__file__).resolve().parent.parent
SHAPE = ROOT / "sample_images" / "shapes" / "02_single_square.png"  # flat background: JPEG noise stays small


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def manifest(folder: Path) -> list[dict]:
    """The rows with absolute paths (stored relative to the manifest's folder)."""
    return Manifest.read_rows(folder / "manifest.jsonl")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, make_corpus(folder)


def test_bad_files_fail_one_line_each_and_good_ones_all_get_outputs(corpus, tmp_path, monkeypatch):
    folder, expected = corpus
    unreadable = folder / "unreadable.png"
    Image.open(SHAPE).save(unreadable)
    unreadable.chmod(0)
    expected = {**expected, "unreadable.png": BAD}
    if os.geteuid() == 0:  # root reads anything: make the OS answer as it would for a user
        real_open = decode_module.Image.open

        def refusing_open(path, *args, **kwargs):
            if Path(path) == unreadable:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(decode_module.Image, "open", refusing_open)
    try:
        result = run("explain", folder, "-r", "-o", tmp_path / "out", "--model", "demo")
    finally:
        unreadable.chmod(0o644)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    rows = {Path(r["input"]).relative_to(folder).as_posix(): r for r in manifest(tmp_path / "out")}
    assert set(rows) == set(expected), set(rows) ^ set(expected)
    for name, verdict in expected.items():
        row = rows[name]
        if verdict == GOOD:
            assert row["status"] == "ok", (name, row["error"])
            assert Path(row["overlay"]).exists() and Path(row["heatmap"]).exists()
            height, width = load_image(folder / name).shape[:2]
            shrink = min(1.0, 1000 / max(width, height))  # the default --overlay-size, never enlarged
            expected_size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
            assert Image.open(row["overlay"]).size == expected_size, name
            assert row["image_size"] == [height, width]
        else:
            assert row["status"] == "error" and name.split(".")[0] in row["error"], row
            error_lines = [line for line in result.output.splitlines() if name in line]
            assert len(error_lines) == 1 and "\n" not in row["error"]
    assert "permission denied" in rows["unreadable.png"]["error"]
    assert "decompression bomb" in rows["bomb.png"]["error"]
    assert "empty file" in rows["zero_bytes.jpg"]["error"]


def test_conversions_follow_exif_and_colour_modes(corpus):
    folder, _ = corpus
    rotated = load_image(folder / "exif_rotated.jpg")
    assert rotated.shape == (80, 40, 3)  # stored 80 wide x 40 high, displayed rotated
    grey = load_image(folder / "grey16.png")
    assert grey.shape == (48, 64, 3) and grey.max() == 255 and grey.min() == 0
    transparent = load_image(folder / "transparent.png")
    assert transparent[:, 0].min() >= 250  # alpha 0 composited on white
    assert load_image(folder / "animated.gif").shape == (30, 40, 3)


def test_missing_inputs_are_reported_and_the_rest_processed(tmp_path):
    result = run("explain", SHAPE, tmp_path / "nope.jpg", str(tmp_path / "*.png"), "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "nope.jpg: no such file or folder" in result.output
    assert "no file matches this pattern" in result.output
    assert [r["status"] for r in manifest(tmp_path / "out")].count("ok") == 1


def _make_folder(folder: Path, count: int) -> None:
    folder.mkdir()
    picture = Image.open(SHAPE)
    for i in range(count):
        picture.rotate(i * 7).save(folder / f"img_{i:03d}.jpg")


def _start(folder: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gradcam_cli", "explain", str(folder), "-o", str(out), "-b", "2", "-q", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: a SIGINT ignored by whoever started pytest (a background job) is
        # inherited, and Python then never raises KeyboardInterrupt in the child
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_rows(out: Path, rows: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = out / "manifest.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= rows:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("the run produced no rows in time")


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("many") / "in"
    _make_folder(folder, 160)
    return folder


def test_killed_run_resumes_without_redoing_work(many_images, tmp_path):
    out = tmp_path / "out"
    process = _start(many_images, out)
    _wait_for_rows(out, 6, process)
    process.kill()
    process.wait()
    done_before = {r["input"] for r in manifest(out) if r["status"] == "ok"}
    assert 0 < len(done_before) < 160
    rerun = subprocess.run([sys.executable, "-m", "gradcam_cli", "explain", str(many_images), "-o", str(out), "-b", "8"],
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done_before)} already done" in rerun.stderr
    rows = manifest(out)
    assert sorted(r["input"] for r in rows) == sorted(str(p) for p in many_images.iterdir())
    assert all(Path(r["overlay"]).exists() and Path(r["heatmap"]).exists() for r in rows)
    assert not list(out.rglob("*.tmp")), "a half-written file was left behind"


def test_ctrl_c_stops_cleanly_with_summary_and_exit_130(many_images, tmp_path):
    out = tmp_path / "out"
    process = _start(many_images, out)
    _wait_for_rows(out, 4, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted after" in stderr and "Traceback" not in stderr
    rows = manifest(out)  # every line parses: flushed, nothing half-written
    assert rows and all(Path(r["overlay"]).exists() for r in rows if r["status"] == "ok")


def test_output_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("explain", SHAPE, "-o", blocker / "out")
    assert result.exit_code == 3 and "cannot write the output folder" in result.output


def test_full_disk_stops_with_one_message(tmp_path, monkeypatch):
    real_write = outputs.atomic_write_bytes
    calls = {"count": 0}

    def filling_write(path, data):
        calls["count"] += 1
        if calls["count"] > 3 and path.suffix in (".jpg", ".npy"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(outputs, "atomic_write_bytes", filling_write)
    folder = tmp_path / "in"
    _make_folder(folder, 12)
    result = run("explain", folder, "-o", tmp_path / "out", "-b", "2")
    assert result.exit_code == 3, result.output
    assert "No space left on device" in result.output and "rerun resumes" in result.output
    assert result.output.count("No space left") == 1 and "Traceback" not in result.output


def test_output_names_stay_inside_the_output_dir(tmp_path):
    for relative in ("../../etc/passwd.jpg", "a/../../b.png", "/abs/x.jpg", "..", "c\\..\\d.jpg"):
        stem = outputs.output_stem(relative)
        overlay, _ = outputs.output_paths(tmp_path, stem, "gradcam", 3)
        assert os.path.commonpath([tmp_path, overlay.resolve()]) == str(tmp_path.resolve()), relative
    assert outputs.unique_stems(["cat.jpg", "cat.png", "a/x.jpg", "b/x.jpg", "CAT.jpg"]) == [
        "cat_jpg", "cat_png", "a/x_jpg", "b/x_jpg", "CAT_jpg~2"]


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
    (row,) = manifest(tmp_path / "out")
    assert row["empty_heatmap"] is True
    heatmap = np.load(row["heatmap"], allow_pickle=False)
    assert np.isfinite(heatmap).all() and not heatmap.any()
    overlay = np.asarray(Image.open(row["overlay"])).astype(int)
    original = np.asarray(Image.open(SHAPE).convert("RGB")).astype(int)
    jet_zero = render.colormap_lut("jet")[0]
    expected = 0.4 * jet_zero + 0.6 * original
    assert np.abs(overlay - expected).mean() < 3  # uniform tint from jet(0), JPEG noise only


def test_bad_models_and_layers_exit_2_before_any_image(keras, tmp_path):
    inputs = keras.Input((16, 16, 3))
    flat = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    flat.save(tmp_path / "flat.keras")
    vector_in = keras.Input((12,))
    keras.Model(vector_in, keras.layers.Dense(2)(vector_in)).save(tmp_path / "vector.keras")
    cases = [
        (["--model", tmp_path / "flat.keras"], "no convolutional layer"),
        (["--model", tmp_path / "vector.keras"], "not an image batch"),
        (["--model", "demo", "--layer", "predictions"], "not a spatial map"),
        (["--model", "demo", "--layer", "gap"], "not a spatial map"),
    ]
    for extra, message in cases:
        result = run("explain", SHAPE, "-o", tmp_path / "out", *extra)
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
        assert not (tmp_path / "out" / "manifest.jsonl").exists()
