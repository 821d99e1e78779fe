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


def test_a_report_page_that_cannot_be_written_is_exit_3(report_dir, monkeypatch):
    import errno

    from gradcam_cli import outputs

    real_write = outputs.atomic_write_bytes

    def full_disk(path, data):
        if path.name == "index.html":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(outputs, "atomic_write_bytes", full_disk)
    result = run("report", report_dir)
    assert result.exit_code == 3, result.output
    assert "index.html: cannot write (No space left on device)" in result.output
