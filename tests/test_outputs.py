"""Where a run writes (gradcam_cli/outputs.py): names that never escape the output folder, atomic
writes with ordinary permissions, and a folder that cannot be created."""

from __future__ import annotations

import os

from gradcam_cli import outputs
from tests.helpers import SHAPE, run


def test_output_names_stay_inside_the_output_dir(tmp_path):
    for relative in ("../../etc/passwd.jpg", "a/../../b.png", "/abs/x.jpg", "..", "c\\..\\d.jpg"):
        stem = outputs.output_stem(relative)
        overlay, _ = outputs.output_paths(tmp_path, stem, "gradcam", 3)
        assert os.path.commonpath([tmp_path, overlay.resolve()]) == str(tmp_path.resolve()), relative
    assert outputs.unique_stems(["cat.jpg", "cat.png", "a/x.jpg", "b/x.jpg", "CAT.jpg"]) == [
        "cat_jpg", "cat_png", "a/x_jpg", "b/x_jpg", "CAT_jpg~2"]


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    target = tmp_path / "sub" / "out.bin"
    outputs.atomic_write_bytes(target, b"data")
    mask = os.umask(0)
    os.umask(mask)
    assert target.read_bytes() == b"data" and (target.stat().st_mode & 0o777) == (0o666 & ~mask)
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_output_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("explain", SHAPE, "-o", blocker / "out")
    assert result.exit_code == 3 and "cannot write the output folder" in result.output
