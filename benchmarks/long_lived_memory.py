"""Resident memory of a long-lived Python process using the library: an API loop, and a training run
with the Keras callback (issue 27).

    python benchmarks/long_lived_memory.py [--rounds 8] [--epochs 30] [--baseline DIR] [--json FILE]

The API loop calls ``gradcam_cli.explain(NAME, ...)`` for every model in ``--models`` (keras.applications
names, random weights, ``--size`` px) and every method in ``--methods``, on 4 generated pictures, and
repeats that ``--rounds`` times. The training run fits a tiny convnet (with a swish activation, the
kind of layer that trips TensorFlow's custom-gradient leak) for ``--epochs`` epochs on 256 random
images while ``GradCAMCallback`` explains 8 of them with 2 methods every epoch, to TensorBoard and PNG.

Each experiment runs in a fresh process; after every round or epoch it prints VmRSS and VmHWM (from
/proc/self/status, in MB) and the entries of TensorFlow's global gradient registry (a traced graph
that uses ``tf.custom_gradient``, e.g. ``tf.nn.silu``, is held there for the life of the process).
``--baseline DIR`` (an older checkout: ``git archive COMMIT | tar -x -C DIR``) runs the same with
that code, in the same run, for a before/after comparison.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def memory_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def registry_entries() -> int:
    """Entries of TensorFlow's gradient registry (private API; -1 where it moved)."""
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return -1 if registry is None else len(registry)


def record(kind: str, index: int, started: float) -> None:
    gc.collect()
    rss, hwm = memory_mb()
    print(json.dumps({"kind": kind, "index": index, "seconds": round(time.perf_counter() - started, 2),
                      "rss_mb": round(rss, 1), "hwm_mb": round(hwm, 1), "registry": registry_entries()}),
          flush=True)


def api_worker(args: argparse.Namespace) -> None:
    import numpy as np

    import gradcam_cli

    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(4)]
    record("api", -1, time.perf_counter())
    for round_index in range(args.rounds):
        started = time.perf_counter()
        for model in args.models.split(","):
            for method in args.methods.split(","):
                gradcam_cli.explain(model, pictures, method=method, weights="none", input_size=args.size,
                                    batch_size=4)
        record("api", round_index, started)


def callback_worker(args: argparse.Namespace) -> None:
    import keras
    import numpy as np

    from gradcam_cli.callbacks import GradCAMCallback

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, activation="swish", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (256, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 4, 256)
    work = Path(tempfile.mkdtemp(prefix="gradcam_callback_memory_"))
    watch = GradCAMCallback((images[:8], labels[:8]), method=["gradcam", "gradcam++"],
                            log_dir=work / "logs", png_dir=work / "png")
    timer = {"started": time.perf_counter()}

    class Meter(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            timer["started"] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # after GradCAMCallback's, which comes first in the list
            record("callback", epoch, timer["started"])

    record("callback", -1, time.perf_counter())
    model.fit(images, labels, batch_size=32, epochs=args.epochs, verbose=0, callbacks=[watch, Meter()])


def run_worker(kind: str, args: argparse.Namespace, checkout: Path) -> list[dict]:
    command = [sys.executable, __file__, "--worker", kind, "--rounds", str(args.rounds), "--epochs",
               str(args.epochs), "--models", args.models, "--methods", args.methods, "--size", str(args.size)]
    environment = {**os.environ, "PYTHONPATH": str(checkout), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode:
        raise SystemExit(f"the {kind} worker failed ({checkout}):\n{done.stderr[-3000:]}")
    return rows


def print_curve(title: str, rows: list[dict], unit: str) -> None:
    start = rows[0]
    print(f"{title}: at start {start['rss_mb']:.0f} MB, registry {start['registry']}")
    print(f"  {unit:>6} {'s':>6} {'VmRSS':>7} {'VmHWM':>7} {'registry':>8}")
    for row in rows[1:]:
        print(f"  {row['index'] + 1:>6} {row['seconds']:>6.1f} {row['rss_mb']:>7.0f} {row['hwm_mb']:>7.0f} "
              f"{row['registry']:>8}")
    after_first = [row["rss_mb"] for row in rows[2:]]
    if after_first:
        print(f"  growth after the first {unit}: {after_first[-1] - rows[1]['rss_mb']:+.0f} MB over "
              f"{len(after_first)} more ({(after_first[-1] - rows[1]['rss_mb']) / len(after_first):+.1f} MB each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--models", default="mobilenet_v2,resnet50,efficientnetb0")
    parser.add_argument("--methods", default="gradcam,gradcam++,layercam,hirescam")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--only", choices=["api", "callback"], default=None)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", choices=["api", "callback"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        (api_worker if args.worker == "api" else callback_worker)(args)
        return
    checkouts = {"this checkout": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    kinds = [args.only] if args.only else ["api", "callback"]
    results: dict = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                     "rounds": args.rounds, "epochs": args.epochs, "models": args.models, "methods": args.methods,
                     "size": args.size, "runs": {}}
    for name, checkout in checkouts.items():
        for kind in kinds:
            rows = run_worker(kind, args, checkout)
            results["runs"][f"{name}/{kind}"] = rows
            if kind == "api":
                title = (f"{name}: explain() over {args.models} x {args.methods} at {args.size} px, MB after "
                         "each round")
                print_curve(title, rows, "round")
            else:
                print_curve(f"{name}: GradCAMCallback, 2 methods x 8 images, MB after each epoch", rows, "epoch")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
