"""Keeping the tool's own noise off a user's terminal without touching their logging: TensorFlow's
retracing warning while a thread is inside the tool's calls, and TensorFlow's start-up chatter when
the tool is what imports it."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

RETRACING_WARNING = "triggered tf.function retracing"


class _OwnRetracing(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls to <function> triggered tf.function retracing"
    while a thread is inside one of this tool's calls. Each explainer traces its steps once; a loop over
    models, methods or batch shapes makes many explainers of the same Python step, which TensorFlow
    counts as one function retracing. The user's own functions, traced outside the tool's calls, still warn."""

    def __init__(self) -> None:
        super().__init__()
        self.inside: dict[int, int] = {}  # thread id -> depth of the tool's calls

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.inside.get(record.thread) and RETRACING_WARNING in record.getMessage())


_own_retracing = _OwnRetracing()


@contextmanager
def quiet_own_retracing() -> Iterator[None]:
    """Within: TensorFlow's retracing warning is dropped for this thread (the filter goes on the
    ``tensorflow`` logger once; its level and handlers stay the user's)."""
    logger = logging.getLogger("tensorflow")
    if _own_retracing not in logger.filters:
        logger.addFilter(_own_retracing)
    thread = threading.get_ident()
    inside = _own_retracing.inside
    inside[thread] = inside.get(thread, 0) + 1
    try:
        yield
    finally:
        inside[thread] -= 1
        if not inside[thread]:
            del inside[thread]


def import_tensorflow_quietly() -> None:
    """Import TensorFlow, if nothing has yet, with its start-up chatter (oneDNN, CUDA probing, CPU
    features: written from C++ before any log level applies, and "failed call to cuInit" on a machine
    without a GPU, written when the devices are first listed) kept off the terminal: standard error
    points at /dev/null while it imports and lists its devices (which, unlike running an op, leaves
    ``set_memory_growth`` and ``set_visible_devices`` open to the user), so no setting of the user's
    changes and Python exceptions still surface. Nothing is done where TensorFlow is already imported."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (some embedded interpreters): import as is
        import tensorflow  # noqa: F401
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow

            tensorflow.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
