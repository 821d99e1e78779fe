"""The bundled demo: a small shapes classifier trained on :mod:`gradcam_cli.demo.shapes`."""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
DEMO_MODEL = DEMO_DIR / "shapes_cnn.keras"


def demo_model_path() -> Path:
    from ..errors import ModelNotFound

    if not DEMO_MODEL.exists():
        raise ModelNotFound(
            f"the bundled demo model is missing ({DEMO_MODEL}); rebuild it with "
            "'python -m gradcam_cli.demo.train'."
        )
    return DEMO_MODEL
