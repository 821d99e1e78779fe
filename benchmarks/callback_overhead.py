"""What GradCAMCallback adds to an epoch of the demo model's own training.

    python benchmarks/callback_overhead.py [--train 20000] [--epochs 3] [--images 16] [--methods gradcam]

Trains the bundled demo architecture as ``python -m lab.train`` does (same data
generator, batch 64, Adam with cosine decay, 5 % validation split) with the callback watching
``--images`` fresh images (another seed, explained for their true class) and writing to a
temporary TensorBoard folder. The callback runs synchronously at each epoch end, so its cost is
the time spent inside it; the epoch time is measured from epoch begin to epoch end, before the
callback. The first epoch end also builds the explainer and traces its step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the lab (not installed) imports from the repo root

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=20000, help="training images (the demo uses 20,000)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=16, help="images the callback explains")
    parser.add_argument("--methods", default="gradcam")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import keras

    from gradcam_cli.callbacks import GradCAMCallback
    from lab.shapes import make_dataset
    from lab.train import SIZE, build_model

    keras.utils.set_random_seed(args.seed)
    train_x, train_y, _ = make_dataset(args.seed, args.train, SIZE)
    watch_x, watch_y, _ = make_dataset(args.seed + 20_000, args.images, SIZE, mix={"single": 1.0})
    model = build_model()
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=args.epochs * (args.train // 64))
    model.compile(keras.optimizers.Adam(schedule), loss="categorical_crossentropy", metrics=["accuracy"])

    class EpochTimer(keras.callbacks.Callback):
        seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as log_dir:
        callback = GradCAMCallback(watch_x / np.float32(255), method=args.methods.split(","),
                                   classes=watch_y.argmax(1), log_dir=log_dir)
        model.fit(train_x / np.float32(255), train_y, batch_size=64, epochs=args.epochs, verbose=2,
                  validation_split=0.05, shuffle=True, callbacks=[timer, callback])

    rows = []
    print(f"\n{'epoch':>5} {'epoch s':>9} {'callback s':>11} {'overhead':>9}")
    for epoch, (epoch_s, callback_s) in enumerate(zip(timer.seconds, callback.seconds, strict=True), start=1):
        rows.append({"epoch": epoch, "epoch_s": round(epoch_s, 3), "callback_s": round(callback_s, 4),
                     "overhead_pct": round(100 * callback_s / epoch_s, 3)})
        print(f"{epoch:>5} {epoch_s:>9.2f} {callback_s:>11.3f} {100 * callback_s / epoch_s:>8.2f}%")
    later = rows[1:] or rows
    summary = {
        "train_images": args.train, "watched_images": args.images, "methods": args.methods,
        "first_epoch_overhead_pct": rows[0]["overhead_pct"],
        "later_epochs_callback_s": round(float(np.mean([r["callback_s"] for r in later])), 4),
        "later_epochs_overhead_pct": round(float(np.mean([r["overhead_pct"] for r in later])), 3),
        "tracing_count": callback.tracing_count,
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "tensorflow": __import__("tensorflow").__version__, "keras": keras.__version__,
        "date": time.strftime("%Y-%m-%d"), "epochs": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "epochs"}))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(summary, stream, indent=1)
            stream.write("\n")


if __name__ == "__main__":
    main()
