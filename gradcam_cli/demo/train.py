"""Train the bundled demo classifier: ``python -m gradcam_cli.demo.train [--seed 0]``.

A small fully convolutional network, conv stack -> GlobalAveragePooling2D -> Dense softmax (so CAM
applies), trained on domain-randomized shapes from :mod:`gradcam_cli.demo.shapes`:

- input 96x96; a stride-2 stem and one 2x2 max-pool bring the grid to 24x24 (stride 4), and the
  layers after that keep 24x24 with dilated 3x3 convolutions (dilation 2 and 4, Yu & Koltun 2016),
  so the target layer sees about 65 px (two thirds of the image: the largest shapes whole) while its
  maps stay fine enough for a strict pointing game on objects 8 % of the side wide;
- a 1x1 convolution gives the class-evidence maps that GAP averages (the layer CAM explains);
- the training images are drawn once (in parallel chunks with fixed seeds) and augmented on the fly
  in tf.data with the eight symmetries of the square, RGB channel permutations and negatives,
  which change no label; soft targets spread over the classes present in an image.

Model selection uses a validation set from the same generator with another seed: the weights of
the epoch with the best validation top-1-among-present-classes accuracy are kept. It writes
``shapes_cnn.keras`` and its sidecar ``shapes_cnn.keras.gradcam.json`` (preprocessing, labels, how it
was trained) beside this file, and logs progress to stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .shapes import CLASSES, make_dataset

SIZE = 96
CHUNK = 500  # images per generator call; chunk i of run seed s uses seed s * 100_000 + i


def build_model(size: int = SIZE, classes: int = len(CLASSES)):
    import keras
    from keras import layers

    def conv_bn_relu(x, filters: int, name: str, kernel: int = 3, strides: int = 1, dilation: int = 1):
        x = layers.Conv2D(filters, kernel, strides=strides, dilation_rate=dilation, padding="same",
                          use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    inputs = keras.Input((size, size, 3), name="image")
    x = conv_bn_relu(inputs, 24, "stem", strides=2)  # 48x48
    x = conv_bn_relu(x, 32, "block1")
    x = layers.MaxPooling2D(name="block1_pool")(x)  # 24x24
    x = conv_bn_relu(x, 48, "block2")
    x = conv_bn_relu(x, 64, "block3", dilation=2)
    x = conv_bn_relu(x, 64, "block4", dilation=4)
    x = conv_bn_relu(x, 96, "evidence", kernel=1)  # the target layer: 24x24x96
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.1, name="dropout")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="shapes_cnn")


def _chunk(arguments: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, count, size = arguments
    images, targets, _ = make_dataset(seed, count, size, with_scenes=False)
    return images, targets


def generate(seed: int, count: int, size: int = SIZE, workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``count`` training images in chunks of :data:`CHUNK`; the result does not depend on ``workers``."""
    jobs = [(seed * 100_000 + i, min(CHUNK, count - start), size) for i, start in enumerate(range(0, count, CHUNK))]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_chunk, jobs))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def training_dataset(images: np.ndarray, targets: np.ndarray, seed: int, batch_size: int):
    """Shuffled, augmented, endless batches; every random choice is a stateless function of
    (seed, batch number), so a run is reproducible."""
    import tensorflow as tf

    permutations = tf.constant([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])

    def augment(step, batch):
        pixels, labels = batch
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.cast(seed, tf.int64), step]), 3)
        n = tf.shape(pixels)[0]
        symmetry = tf.random.stateless_uniform([n], seeds[0], 0, 8, tf.int32)
        pixels = tf.where((symmetry >= 4)[:, None, None, None], tf.reverse(pixels, [2]), pixels)
        rotations = tf.stack([tf.image.rot90(pixels, k) for k in range(4)], axis=1)
        pixels = tf.gather(rotations, symmetry % 4, axis=1, batch_dims=1)
        channels = tf.gather(permutations, tf.random.stateless_uniform([n], seeds[1], 0, 6, tf.int32))
        pixels = tf.gather(pixels, channels, axis=3, batch_dims=1)
        negative = tf.random.stateless_uniform([n], seeds[2]) < 0.15
        pixels = tf.where(negative[:, None, None, None], 255 - pixels, pixels)
        return tf.cast(pixels, tf.float32) / 255.0, labels

    dataset = tf.data.Dataset.from_tensor_slices((images, targets))
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=True).enumerate().map(augment)
    return dataset.prefetch(2)


def present_accuracy(targets: np.ndarray, probabilities: np.ndarray) -> float:
    """Fraction of images whose top-1 class is one of the classes present (target > 0)."""
    top = probabilities.argmax(axis=1)
    return float(np.mean(targets[np.arange(len(top)), top] > 0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=40000, help="training images")
    parser.add_argument("--validation", type=int, default=2000, help="validation images (another seed)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="processes drawing the training images")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)

    import keras

    keras.utils.set_random_seed(args.seed)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f} s] {message}", flush=True)

    train_x, train_y = generate(args.seed, args.train, workers=args.workers)
    val_x, val_y = generate(args.seed + 50_000, args.validation, workers=args.workers)
    val_x = val_x.astype(np.float32) / 255
    log(f"generated {args.train} + {args.validation} images ({SIZE}x{SIZE})")

    model = build_model()
    steps = args.train // args.batch_size
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=args.epochs * steps - steps // 2, warmup_target=3e-3, warmup_steps=steps // 2)
    model.compile(keras.optimizers.AdamW(schedule, weight_decay=1e-4), loss="categorical_crossentropy")

    class Progress(keras.callbacks.Callback):
        """Logs the loss every 100 batches and keeps the weights of the best validation epoch."""

        best = (-1.0, None, -1)

        def on_train_batch_end(self, batch, logs=None):
            if batch % 100 == 0:
                log(f"  batch {batch}/{steps} loss {logs['loss']:.4f}")

        def on_epoch_end(self, epoch, logs=None):
            probabilities = self.model.predict(val_x, batch_size=256, verbose=0)
            accuracy = present_accuracy(val_y, probabilities)
            log(f"epoch {epoch + 1}/{args.epochs} loss {logs['loss']:.4f} validation accuracy {accuracy:.4f}")
            if accuracy >= self.best[0]:
                Progress.best = (accuracy, self.model.get_weights(), epoch + 1)

    model.fit(training_dataset(train_x, train_y, args.seed, args.batch_size), steps_per_epoch=steps,
              epochs=args.epochs, verbose=0, callbacks=[Progress()])
    accuracy, weights, best_epoch = Progress.best
    model.set_weights(weights)
    seconds = time.perf_counter() - started
    log(f"kept epoch {best_epoch}: validation accuracy {accuracy:.4f} ({args.validation} images, seed "
        f"{args.seed + 50_000}); parameters {model.count_params():,}; total time {seconds:.0f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "shapes_cnn.keras"
    model.save(model_path)
    sidecar = {
        "preprocess": "scale01",
        "labels": list(CLASSES),
        "input_size": [SIZE, SIZE],
        "trained": {"seed": args.seed, "train_images": args.train, "epochs": args.epochs, "kept_epoch": best_epoch,
                    "validation_accuracy": round(accuracy, 4), "seconds": round(seconds)},
    }
    (args.out / "shapes_cnn.keras.gradcam.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    log(f"wrote {model_path} ({model_path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
