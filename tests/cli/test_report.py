"""``gradcam report``: the page rebuilt from a manifest (the page itself: tests/test_report.py)."""

from __future__ import annotations

from PIL import Image

from tests.helpers import run


def test_report_command_rebuilds_from_the_manifest(report_dir):
    (report_dir / "index.html").unlink()
    result = run("report", report_dir)
    assert result.exit_code == 0 and (report_dir / "index.html").exists()
    thumbs = list((report_dir / "thumbs").glob("*.jpg"))
    assert thumbs and all(max(Image.open(t).size) <= 256 for t in thumbs)


def test_report_without_manifest_fails_cleanly(tmp_path):
    result = run("report", tmp_path)
    assert result.exit_code == 2 and "manifest.jsonl" in result.output
