"""What many test files share: the bundled sample images and the ``gradcam`` command run in-process."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from click.testing import CliRunner

from gradcam_cli.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ROOT / "sample_images" / "shapes"
PAIR = SHAPES / "05_pair_circle_triangle.png"
SHAPE = SHAPES / "02_single_square.png"  # flat background: JPEG noise stays small


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@contextlib.contextmanager
def tensorflow_warnings(monkeypatch) -> Iterator[list[logging.LogRecord]]:
    """The records TensorFlow's logger emits meanwhile, at WARNING as in a user's process (the CLI's
    tests raise it), with a fresh count of retracings, so that TensorFlow warns whatever earlier tests
    traced."""
    from tensorflow.python.eager.polymorphic_function import polymorphic_function

    monkeypatch.setattr(polymorphic_function, "_frequent_tracing_detector_manager",
                        polymorphic_function._FrequentTracingDetectorManager())
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
