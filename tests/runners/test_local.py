"""The local runner (gradcam_cli/runners/local.py) never loses work: bad inputs fail one line each
while the rest are explained, a killed or interrupted run resumes, a full disk stops with one message."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from gradcam_cli import decode as decode_module
from gradcam_cli import outputs
from gradcam_cli.decode import load_image
from gradcam_cli.manifest import Manifest
from tests.corpus import BAD, GOOD
from tests.helpers import SHAPE, run


def manifest(folder: Path) -> list[dict]:
    """The rows with absolute paths (stored relative to the manifest's folder)."""
    return Manifest.read_rows(folder / "manifest.jsonl")


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
