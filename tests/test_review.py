"""Review of issues 11, 15, 16, 17 as a new user: each test is a defect found by trying the tool."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gradcam_cli.cli import cli

ROOT = Path(__file__).resolve().parent.parent
PAIR = ROOT / "sample_images" / "shapes" / "05_pair_circle_triangle.png"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_max_megapixels_is_a_usage_error(tmp_path, value):
    result = run("explain", PAIR, "-o", tmp_path / "out", "--max-megapixels", value)
    assert result.exit_code == 2, result.output
    assert "--max-megapixels" in result.output and "finite" in result.output
    assert not (tmp_path / "out").exists()
