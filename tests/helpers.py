"""What many test files share: the bundled sample images and the ``gradcam`` command run in-process."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gradcam_cli.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ROOT / "sample_images" / "shapes"
PAIR = SHAPES / "05_pair_circle_triangle.png"
SHAPE = SHAPES / "02_single_square.png"  # flat background: JPEG noise stays small


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
