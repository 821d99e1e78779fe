"""Maps of a ``mixed_float16`` model against the same weights in float32, with and without the tool
computing the maps in float32 (issue 24).

    python benchmarks/mixed_precision.py [--json FILE]

Two models: the bundled demo (trained, 96 px, on the bundled shape samples) and a MobileNetV2 with
random weights (96 px, on the bundled photos; random weights make tiny activations, where float16
gradients underflow). Each is rebuilt from its configuration with every layer's policy set to
``mixed_float16`` and given the float32 model's weights. For every method, prints the largest
difference between the two models' raw maps relative to the float32 map's largest value, and whether
the mixed model's maps hold a NaN or are all zero; "float16 gradients" is the same with the tool's
float32 computation switched off (``gradcam_cli.probe.low_precision_layers`` returning nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "scorecam", "ablationcam")


def mixed_twin(model):
    """The model rebuilt with every layer's dtype policy ``mixed_float16``, float32 weights copied."""

    def mixed(config):
        if isinstance(config, dict):
            if config.get("class_name") == "DTypePolicy":
                return {**config, "config": {**config["config"], "name": "mixed_float16"}}
            return {key: mixed(value) for key, value in config.items()}
        if isinstance(config, list):
            return [mixed(value) for value in config]
        return config

    twin = model.__class__.from_config(mixed(model.get_config()))
    twin.set_weights(model.get_weights())
    return twin


def pictures(folder: Path, size: tuple[int, int], count: int = 4) -> np.ndarray:
    names = sorted(path for path in folder.iterdir() if path.suffix.lower() in (".png", ".jpg", ".jpeg"))[:count]
    return np.stack([np.asarray(Image.open(name).convert("RGB").resize(size[::-1], Image.BILINEAR), np.float32)
                     for name in names])


def compare(spec32, spec16, images, float16_gradients: bool) -> dict:
    import gradcam_cli.probe as probe
    from gradcam_cli.explainer import Explainer

    original = probe.low_precision_layers
    if float16_gradients:
        probe.low_precision_layers = lambda model: []
    try:
        rows = {}
        for method in METHODS:
            expected = Explainer(spec32, method, batch_size=len(images)).run(images).heatmaps
            actual = Explainer(spec16, method, batch_size=len(images)).run(images).heatmaps
            scale = float(np.abs(expected).max())
            rows[method] = {
                "max_relative_difference": float(np.abs(actual - expected).max() / scale) if scale else None,
                "nan": bool(np.isnan(actual).any()),
                "all_zero": bool(not np.abs(actual).max() > 0),
                "float32_map_max": scale,
            }
        return rows
    finally:
        probe.low_precision_layers = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from gradcam_cli.models import resolve_model
    from gradcam_cli.models.in_memory import spec_for_model

    keras.utils.set_random_seed(1)
    demo = resolve_model("demo")
    mobilenet = spec_for_model(keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10),
                               preprocess="tf")
    cases = {"demo (trained)": (demo, ROOT / "sample_images" / "shapes"),
             "mobilenet_v2 (random weights)": (mobilenet, ROOT / "sample_images" / "photos")}
    results = {}
    for name, (spec32, folder) in cases.items():
        spec16 = spec_for_model(mixed_twin(spec32.model), preprocess=spec32.preprocess)
        images = pictures(folder, spec32.input_size)
        results[name] = {"float32 maps (the tool)": compare(spec32, spec16, images, False),
                         "float16 gradients": compare(spec32, spec16, images, True)}
        for mode, rows in results[name].items():
            print(f"{name}, {mode}:")
            for method, row in rows.items():
                difference = row["max_relative_difference"]
                flags = " NaN" if row["nan"] else " all zero" if row["all_zero"] else ""
                print(f"  {method:12s} max relative difference "
                      f"{'n/a' if difference is None else f'{difference:.2e}'}{flags}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
