"""The bundled demo: a small shapes classifier trained on :mod:`lab.shapes`."""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
DEMO_MODEL = DEMO_DIR / "shapes_cnn.keras"


def demo_model_path() -> Path:
    from ..errors import ModelNotFound

    if not DEMO_MODEL.exists():
        raise ModelNotFound(
            f"the bundled demo model is missing ({DEMO_MODEL}); rebuild it with "
            "'python -m lab.train'."
        )
    return DEMO_MODEL


def demo_description() -> str:
    """The ``gradcam models`` line for the demo, read from the model's sidecar file."""
    import json

    sidecar = json.loads((DEMO_DIR / "shapes_cnn.keras.gradcam.json").read_text())
    classes = ", ".join(sidecar["labels"])
    return f"{'demo':<20} {'demo':<20} {sidecar['input_size'][0]:>7}  (bundled shapes classifier: {classes})"
