"""Train the bundled demo classifier: ``python -m gradcam_cli.demo.train [--seed 0]``.

A conv stack -> GlobalAveragePooling2D -> Dense softmax network (so CAM applies as well), trained
on synthetic shapes from :mod:`gradcam_cli.demo.shapes` and scored on a fresh held-out set drawn
with another seed. It writes ``shapes_cnn.keras`` and its sidecar ``shapes_cnn.keras.gradcam.json``
(preprocessing and labels) beside this file, and prints the held-out accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .shapes import CLASSES, make_dataset

SIZE = 64


def build_model(size: int = SIZE, classes: int = len(CLASSES)):
    import keras
    from keras import layers

    inputs = keras.Input((size, size, 3), name="image")
    x = inputs
    for block, filters in enumerate((16, 32, 64), start=1):
        for conv in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}")(x)
            x = layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        if block < 3:
            x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="shapes_cnn")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=20000, help="training images")
    parser.add_argument("--test", type=int, default=2000, help="held-out images (single objects)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)

    import keras

    keras.utils.set_random_seed(args.seed)
    started = time.perf_counter()
    train_x, train_y, _ = make_dataset(args.seed, args.train, SIZE)
    test_x, test_y, _ = make_dataset(args.seed + 10_000, args.test, SIZE, mix={"single": 1.0})
    print(f"generated {args.train} + {args.test} images in {time.perf_counter() - started:.1f} s", flush=True)

    model = build_model()
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=args.epochs * (args.train // 64))
    model.compile(keras.optimizers.Adam(schedule), loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_x / np.float32(255), train_y, batch_size=64, epochs=args.epochs, verbose=2,
              validation_split=0.05, shuffle=True)
    probabilities = model.predict(test_x / np.float32(255), batch_size=256, verbose=0)
    accuracy = float(np.mean(probabilities.argmax(1) == test_y.argmax(1)))
    seconds = time.perf_counter() - started
    print(f"held-out accuracy (seed {args.seed + 10_000}, {args.test} single-object images): {accuracy:.4f}")
    print(f"parameters: {model.count_params():,}; total time {seconds:.0f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "shapes_cnn.keras"
    model.save(model_path)
    sidecar = {
        "preprocess": "scale01",
        "labels": list(CLASSES),
        "input_size": [SIZE, SIZE],
        "trained": {"seed": args.seed, "train_images": args.train, "epochs": args.epochs,
                    "held_out_accuracy": round(accuracy, 4), "seconds": round(seconds)},
    }
    (args.out / "shapes_cnn.keras.gradcam.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    print(f"wrote {model_path} ({model_path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
