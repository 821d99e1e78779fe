"""Train the bundled demo classifier: ``python -m gradcam_cli.demo.train [--seed 0]``.

A small fully convolutional network, conv stack -> GlobalAveragePooling2D -> Dense softmax (so CAM
applies), trained on domain-randomized shapes from :mod:`gradcam_cli.demo.shapes`:

- input 96x96; a stride-2 stem and one 2x2 max-pool bring the grid to 24x24 (stride 4), and the
  layers after that keep 24x24 with dilated 3x3 convolutions (dilation 2, 4 and 8, Yu & Koltun
  2016), so the target layer's receptive field covers the whole image (129 px: a shape filling 80 %
  of the side is seen whole from its centre) while its maps stay fine enough for a strict pointing
  game on objects a tenth of the side wide;
- a 1x1 convolution gives the class-evidence maps that GAP averages (the layer CAM explains);
- the training images are drawn once (in parallel chunks with fixed seeds) and augmented on the fly
  in tf.data with the eight symmetries of the square, RGB channel permutations and negatives,
  which change no label; soft targets spread over the classes present in an image;
- each training scene's difficulty is drawn uniformly from 0 (a large filled shape on a flat or
  gradient background) to 1 (the full randomization). With only full-difficulty scenes the network
  sat at chance (loss ln 5) for a whole epoch: the easy scenes give the first gradients a signal;
- the network is fully convolutional, so the first ``--low-res-epochs`` epochs train on the images
  shrunk to ``--low-res`` pixels (about half the cost per image) and the last ones at full size
  (progressive resizing, as in Howard's fast.ai ImageNet runs; Touvron et al., NeurIPS 2019, on the
  train/test resolution gap that the full-size epochs close). More optimisation steps fit in the
  same half hour.

Model selection uses a validation set of full-difficulty scenes from the same generator with another
seed, at full size: the weights of the epoch with the best validation accuracy (top-1 among the
classes present) are kept. It writes ``shapes_cnn.keras`` and its sidecar
``shapes_cnn.keras.gradcam.json`` (preprocessing, labels, how it was trained) beside this file, and
logs progress to stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .shapes import CLASSES, make_dataset

SIZE = 96
CHUNK = 500  # images per generator call; chunk i of run seed s uses seed s * 100_000 + i
TRAIN_DIFFICULTY = (0.0, 1.0)  # training scenes range from easy to the full randomization
GRID = SIZE // 4  # the target layer's resolution


def build_model(size: int = SIZE, classes: int = len(CLASSES)):
    """The shipped classifier: conv stack -> GAP -> Dense softmax."""
    return build_models(size, classes)[0]


def build_models(size: int | None = SIZE, classes: int = len(CLASSES)):
    """(shipped model, training model). The training model shares every layer of the shipped one and
    adds a training-only head: a 1x1 convolution on the target layer that labels each cell of the
    24x24 grid with the class whose object covers it, or background (deep supervision, Lee et al.
    2015, with the generator's masks as hints). Trained on the image label alone, through global
    average pooling, the network sat at chance for a whole epoch whatever the head (GAP or max
    pooling; measured with the earlier 8-45 % size range): small objects fill 1-20 % of the grid, and
    the pooled signal drowns in
    the clutter (the "hints" problem of Gulcehre & Bengio 2013). The shipped model never sees the head."""
    import keras
    from keras import layers

    def conv_bn_relu(x, filters: int, block: int, conv: int, kernel: int = 3, strides: int = 1,
                     dilation: int = 1):
        x = layers.Conv2D(filters, kernel, strides=strides, dilation_rate=dilation, padding="same",
                          use_bias=False, name=f"block{block}_conv{conv}")(x)
        x = layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
        return layers.ReLU(name=f"block{block}_relu{conv}")(x)

    inputs = keras.Input((size, size, 3), name="image")
    x = conv_bn_relu(inputs, 24, 1, 1, strides=2)  # 48x48
    x = conv_bn_relu(x, 32, 1, 2)
    x = layers.MaxPooling2D(name="block1_pool")(x)  # 24x24 from here on
    x = conv_bn_relu(x, 48, 2, 1)
    x = conv_bn_relu(x, 64, 2, 2, dilation=2)
    x = conv_bn_relu(x, 64, 2, 3, dilation=4)
    x = conv_bn_relu(x, 64, 3, 1, dilation=8)
    evidence = conv_bn_relu(x, 96, 3, 2, kernel=1)  # the target layer: 24x24x96
    x = layers.GlobalAveragePooling2D(name="gap")(evidence)
    x = layers.Dropout(0.1, name="dropout")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    cells = layers.Conv2D(classes + 1, 1, activation="softmax", name="training_cells")(evidence)
    shipped = keras.Model(inputs, outputs, name="shapes_cnn")
    return shipped, keras.Model(inputs, [outputs, cells], name="shapes_cnn_training")


def cell_targets(scene, grid: int) -> np.ndarray:
    """(grid, grid, classes + 1) uint8: how much of each cell (x 255) each class covers; the last
    channel is the uncovered rest (background)."""
    size = scene.image.shape[0]
    block = size // grid
    cover = np.zeros((grid, grid, len(CLASSES) + 1), np.float32)
    for obj in scene.objects:
        cover[..., obj.label] += obj.mask.reshape(grid, block, grid, block).mean(axis=(1, 3))
    cover[..., -1] = np.clip(1 - cover[..., :-1].sum(axis=-1), 0, 1)
    return np.round(cover * 255).astype(np.uint8)


def _chunk(arguments: tuple[int, int, int, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    seed, count, size, difficulty = arguments
    images, targets, scenes = make_dataset(seed, count, size, difficulty=difficulty)
    return images, targets, np.stack([cell_targets(scene, GRID) for scene in scenes])


def generate(seed: int, count: int, size: int = SIZE, workers: int = 2, difficulty: tuple[float, float] = TRAIN_DIFFICULTY,
             cache: Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images, image targets, cell targets) for ``count`` scenes drawn in chunks of :data:`CHUNK`;
    the result does not depend on ``workers``. With ``cache`` (a folder), the arrays are kept there
    as .npz and reused by a later run with the same arguments."""
    name = f"shapes_s{seed}_n{count}_{size}px_d{difficulty[0]:g}-{difficulty[1]:g}_cells.npz"
    if cache and (cache / name).exists():
        with np.load(cache / name) as stored:
            return stored["images"], stored["targets"], stored["cells"]
    jobs = [(seed * 100_000 + i, min(CHUNK, count - start), size, difficulty)
            for i, start in enumerate(range(0, count, CHUNK))]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_chunk, jobs))
    images, targets, cells = (np.concatenate([p[k] for p in parts]) for k in range(3))
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(cache / name, images=images, targets=targets, cells=cells)
    return images, targets, cells


def training_dataset(images: np.ndarray, targets: np.ndarray, cells: np.ndarray, seed: int, batch_size: int,
                     size: int = SIZE):
    """Shuffled, augmented, endless batches; every random choice is a stateless function of
    (seed, batch number), so a run is reproducible. The symmetries move the cell targets with the
    pixels. With ``size`` under the images' side, pixels and cell targets are shrunk by area
    averaging (the cells stay a distribution over classes)."""
    import tensorflow as tf

    permutations = tf.constant([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])

    def symmetric(maps, symmetry):
        maps = tf.where((symmetry >= 4)[:, None, None, None], tf.reverse(maps, [2]), maps)
        rotations = tf.stack([tf.image.rot90(maps, k) for k in range(4)], axis=1)
        return tf.gather(rotations, symmetry % 4, axis=1, batch_dims=1)

    def augment(step, batch):
        pixels, labels, cover = batch
        seeds = tf.random.experimental.stateless_split(tf.stack([tf.cast(seed, tf.int64), step]), 3)
        n = tf.shape(pixels)[0]
        symmetry = tf.random.stateless_uniform([n], seeds[0], 0, 8, tf.int32)
        pixels, cover = symmetric(pixels, symmetry), symmetric(cover, symmetry)
        channels = tf.gather(permutations, tf.random.stateless_uniform([n], seeds[1], 0, 6, tf.int32))
        pixels = tf.gather(pixels, channels, axis=3, batch_dims=1)
        negative = tf.random.stateless_uniform([n], seeds[2]) < 0.15
        pixels = tf.where(negative[:, None, None, None], 255 - pixels, pixels)
        cover = tf.cast(cover, tf.float32) / 255.0
        cover = cover / tf.reduce_sum(cover, axis=-1, keepdims=True)
        pixels = tf.cast(pixels, tf.float32) / 255.0
        if size != images.shape[1]:
            pixels = tf.image.resize(pixels, (size, size), method="area")
            cover = tf.image.resize(cover, (size // 4, size // 4), method="area")
        return pixels, (labels, cover)

    dataset = tf.data.Dataset.from_tensor_slices((images, targets, cells))
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
    parser.add_argument("--train", type=int, default=72000, help="training images")
    parser.add_argument("--validation", type=int, default=2000, help="validation images (another seed)")
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--low-res-epochs", type=int, default=4,
                        help=f"the first epochs see the images shrunk to --low-res px (full size: {SIZE})")
    parser.add_argument("--low-res", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="processes drawing the training images")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--cache", type=Path, default=None, help="folder to keep and reuse generated arrays")
    args = parser.parse_args(argv)

    import keras

    keras.utils.set_random_seed(args.seed)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f} s] {message}", flush=True)

    train_x, train_y, train_cells = generate(args.seed, args.train, workers=args.workers, cache=args.cache)
    val_x, val_y, _ = generate(args.seed + 50_000, args.validation, workers=args.workers, difficulty=(1.0, 1.0),
                            cache=args.cache)
    val_x = val_x.astype(np.float32) / 255
    log(f"generated {args.train} + {args.validation} images ({SIZE}x{SIZE})")

    model, training_model = build_models(None)  # any input size: the first epochs train on smaller images
    steps = args.train // args.batch_size
    warmup = min(300, steps // 2)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=args.epochs * steps - warmup, warmup_target=3e-3, warmup_steps=warmup)
    training_model.compile(keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                           loss=["categorical_crossentropy", "categorical_crossentropy"], loss_weights=[1.0, 1.0])

    class Progress(keras.callbacks.Callback):
        """Logs the loss every 200 batches and keeps the weights of the best validation epoch."""

        best = (-1.0, None, -1)

        def on_train_batch_end(self, batch, logs=None):
            if batch % 200 == 0:
                log(f"  batch {batch}/{steps} loss {logs['loss']:.4f}")

        def on_epoch_end(self, epoch, logs=None):
            probabilities = model.predict(val_x, batch_size=256, verbose=0)
            accuracy = present_accuracy(val_y, probabilities)
            log(f"epoch {epoch + 1}/{args.epochs} ({phase['size']} px) loss {logs['loss']:.4f} "
                f"validation accuracy {accuracy:.4f}")
            if accuracy >= self.best[0]:
                Progress.best = (accuracy, model.get_weights(), epoch + 1)

    phase = {}
    low = min(args.low_res_epochs, args.epochs)
    for size, first, last in ((args.low_res, 0, low), (SIZE, low, args.epochs)):
        if last > first:
            phase["size"] = size
            training_model.fit(training_dataset(train_x, train_y, train_cells, args.seed + first, args.batch_size, size),
                               steps_per_epoch=steps, initial_epoch=first, epochs=last, verbose=0,
                               callbacks=[Progress()])
    accuracy, weights, best_epoch = Progress.best
    model = build_model(SIZE)  # the shipped model takes the size it was validated at
    model.set_weights(weights)
    seconds = time.perf_counter() - started
    cpu_seconds = sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                      for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    log(f"CPU time {cpu_seconds:.0f} s (all threads and generator processes)")
    log(f"kept epoch {best_epoch}: validation accuracy {accuracy:.4f} ({args.validation} images, seed "
        f"{args.seed + 50_000}); parameters {model.count_params():,}; total time {seconds:.0f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "shapes_cnn.keras"
    model.save(model_path)
    sidecar = {
        "preprocess": "scale01",
        "labels": list(CLASSES),
        "input_size": [SIZE, SIZE],
        "trained": {"seed": args.seed, "train_images": args.train, "epochs": args.epochs,
                    "low_res_epochs": low, "low_res": args.low_res, "kept_epoch": best_epoch,
                    "validation_accuracy": round(accuracy, 4), "seconds": round(seconds),
                    "cpu_seconds": round(cpu_seconds)},
    }
    (args.out / "shapes_cnn.keras.gradcam.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    log(f"wrote {model_path} ({model_path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
