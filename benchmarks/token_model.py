"""A small Vision Transformer trained briefly on the demo shapes; its pointing game next to the demo CNN's.

    python benchmarks/token_model.py [--train 8000] [--epochs 8] [--per-kind 200] [--json out.json]

Trains a keras-hub ViT classifier (64 px input, patch 8 -> an 8 x 8 token grid plus a class token,
class-token pooling) on scenes from :mod:`gradcam_cli.demo.shapes` (the demo model's training mix,
another seed), reports its held-out accuracy, then scores the tool's maps for it and for the bundled
demo CNN on the same fresh scenes as ``benchmarks/localization.py`` (pointing game with the paper's
tolerance, and strict). The ViT's maps come from the tokens entering its last block (an 8 x 8
grid); the CNN's from ``block3_relu2`` (16 x 16). Both at the model sizes printed.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from gradcam_cli.demo.localization import make_scenes, score_method  # noqa: E402
from gradcam_cli.demo.shapes import CLASSES, make_dataset  # noqa: E402
from gradcam_cli.engine import Explainer  # noqa: E402
from gradcam_cli.images import model_input  # noqa: E402
from gradcam_cli.models import resolve_model, spec_for_model  # noqa: E402

SIZE = 64
LEARNING_RATE = 5e-4


def preprocess(images: np.ndarray) -> np.ndarray:
    """[0, 255] -> [-1, 1] (the tool's ``--preprocess tf``)."""
    return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def train_vit(seed: int, train: int, test: int, epochs: int):
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    train_x, train_y, _ = make_dataset(seed + 500, train, SIZE)
    test_x, test_y, _ = make_dataset(seed + 20_000, test, SIZE, mix={"single": 1.0})
    backbone = keras_hub.models.ViTBackbone(image_shape=(SIZE, SIZE, 3), patch_size=8, num_layers=4, num_heads=4,
                                            hidden_dim=64, mlp_dim=128)
    model = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=len(CLASSES), activation="softmax")
    steps = epochs * (train // 64)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=steps - steps // 10, warmup_target=LEARNING_RATE,
                                                      warmup_steps=steps // 10)
    model.compile(keras.optimizers.Adam(schedule), loss="categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(preprocess(train_x), train_y, batch_size=64, epochs=epochs, verbose=2)
    seconds = time.perf_counter() - started
    accuracy = float(np.mean(model.predict(preprocess(test_x), batch_size=256, verbose=0).argmax(1)
                             == test_y.argmax(1)))
    return model, accuracy, seconds


def pointing(spec, scenes, method: str) -> dict:
    explainer = Explainer(spec, method=method, batch_size=32, max_channels=32)

    def explain_fn(images, classes):
        batch = np.stack([model_input(image, spec.input_size) for image in images])
        return explainer.run(batch, classes).heatmaps

    summary = score_method(explain_fn, scenes).summary()
    return {"pointing_game": summary["pointing_game"], "pointing_game_strict": summary["pointing_game_strict"],
            "two_class": summary["two_class"], "layer": explainer.layer_name,
            "tapped": explainer.target.shape_text()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--per-kind", type=int, default=200)
    parser.add_argument("--scene-seed", type=int, default=777)
    parser.add_argument("--methods", default="gradcam,gradcam++,layercam,eigencam")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    vit, accuracy, seconds = train_vit(args.seed, args.train, args.test, args.epochs)
    print(f"ViT: {vit.count_params():,} parameters, trained {args.epochs} epochs on {args.train} images in "
          f"{seconds:.0f} s; held-out accuracy {accuracy:.3f} ({args.test} single-object images)")
    cnn = resolve_model("demo")
    models = {"vit": spec_for_model(vit, name="shapes_vit", preprocess="tf"), "demo_cnn": cnn}
    scenes = make_scenes(args.scene_seed, args.per_kind)
    results = {"vit": {"parameters": int(vit.count_params()), "held_out_accuracy": accuracy,
                       "train_seconds": round(seconds), "train_images": args.train, "epochs": args.epochs},
               "demo_cnn": {"parameters": int(cnn.model.count_params())}}
    print(f"{'model':<10}{'params':>10}{'method':>12}{'pointing':>10}{'strict':>8}{'two-class':>11}  layer")
    for key, spec in models.items():
        for method in args.methods.split(","):
            scores = pointing(spec, scenes, method)
            results[key][method] = scores
            print(f"{key:<10}{results[key]['parameters']:>10,}{method:>12}{scores['pointing_game']:>10.1%}"
                  f"{scores['pointing_game_strict']:>8.1%}{scores['two_class']:>11.1%}  {scores['layer']}", flush=True)
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"scene_seed": args.scene_seed, "per_kind": args.per_kind, "results": results}, stream, indent=2)


if __name__ == "__main__":
    main()
