"""The same job on TensorFlow and on JAX, each against its own backend's forward-pass floor, in one run
(``python benchmarks/throughput.py --backends tensorflow,jax``, or this file alone).

    python benchmarks/backends.py [--images 64] [--models mobilenetv2,resnet50] [--methods gradcam,gradcam++]
                                  [--json F]

Keras picks its backend once per process, so each backend's figures come from a subprocess of this
file (``--worker BACKEND``), run one after the other on the same inputs:

- floor: ``model.predict`` on already preprocessed batches of 16 (no decode, no maps);
- maps: ``Explainer.run`` on the same batches (batch 16), after a first call that compiles it
  (its time is reported as ``compile_s``);
- end to end: ``gradcam explain FOLDER --weights none`` as a subprocess on photo-like 640x480 JPEGs
  (start-up, model build, compile, decode, overlays and manifest included).

Random weights: timing does not depend on them. Prints one table; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = 16


def worker(backend: str, models: list[str], methods: list[str], images: int) -> dict:
    """Runs inside ``KERAS_BACKEND=backend``: floor and maps per model and method."""
    import keras
    import numpy as np

    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models import resolve_model

    assert keras.backend.backend() == backend, keras.backend.backend()
    figures = {}
    for name in models:
        spec = resolve_model(name, weights="none")
        height, width = spec.input_size
        pixels = np.random.default_rng(0).uniform(0, 255, (images, height, width, 3)).astype(np.float32)
        ready = spec.preprocess(pixels.copy())
        spec.model.predict(ready[:BATCH], batch_size=BATCH, verbose=0)  # warm-up
        start = time.perf_counter()
        spec.model.predict(ready, batch_size=BATCH, verbose=0)
        floor = images / (time.perf_counter() - start)
        row = {"floor_images_per_s": floor, "methods": {}}
        for method in methods:
            explainer = Explainer(spec, method=method, batch_size=BATCH)
            start = time.perf_counter()
            explainer.run(pixels[:BATCH])
            compile_s = time.perf_counter() - start
            start = time.perf_counter()
            explainer.run(pixels)
            rate = images / (time.perf_counter() - start)
            row["methods"][method] = {"maps_images_per_s": rate, "of_floor": rate / floor, "compile_s": compile_s}
        figures[name] = row
    return figures


def end_to_end(backend: str, model: str, folder: Path, out: Path, count: int) -> float:
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gradcam_cli", "explain", str(folder), "--model", model, "--weights",
                    "none", "-o", str(out), "-q"], check=True, env=environment, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return count / (time.perf_counter() - start)


def compare(backends: list[str], models: list[str], methods: list[str], images: int) -> dict:
    """Every backend's figures, from one subprocess each, plus end-to-end runs on one folder."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from photos import make_folder

    results: dict = {"images": images, "batch": BATCH, "backends": {}}
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "photos"
        make_folder(folder, images)
        for backend in backends:
            environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
                           "PYTHONPATH": str(ROOT)}
            done = subprocess.run([sys.executable, __file__, "--worker", backend, "--models", ",".join(models),
                                   "--methods", ",".join(methods), "--images", str(images)],
                                  capture_output=True, text=True, env=environment, cwd=ROOT, check=True)
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            for model in models:
                figures[model]["end_to_end_images_per_s"] = end_to_end(
                    backend, model, folder, Path(work) / f"out-{backend}-{model}", images)
            results["backends"][backend] = figures
    return results


def print_table(results: dict) -> None:
    backends = list(results["backends"])
    print(f"{results['images']} images, batch {results['batch']}, random weights; images/s (x of that backend's floor)")
    print(f"{'model':12s} {'method':10s} " + " ".join(f"{backend:>28s}" for backend in backends))
    first = results["backends"][backends[0]]
    for model, row in first.items():
        cells = [f"{results['backends'][b][model]['floor_images_per_s']:8.1f} floor" for b in backends]
        print(f"{model:12s} {'-':10s} " + " ".join(f"{cell:>28s}" for cell in cells))
        for method in row["methods"]:
            cells = []
            for backend in backends:
                figure = results["backends"][backend][model]["methods"][method]
                cells.append(f"{figure['maps_images_per_s']:8.1f} ({figure['of_floor']:.2f}x, "
                             f"compile {figure['compile_s']:.1f} s)")
            print(f"{model:12s} {method:10s} " + " ".join(f"{cell:>28s}" for cell in cells))
        cells = [f"{results['backends'][b][model]['end_to_end_images_per_s']:8.1f} end to end" for b in backends]
        print(f"{model:12s} {'gradcam':10s} " + " ".join(f"{cell:>28s}" for cell in cells))
    if len(backends) == 2:
        a, b = backends
        for model in first:
            for method in first[model]["methods"]:
                ratio = (results["backends"][b][model]["methods"][method]["maps_images_per_s"]
                         / results["backends"][a][model]["methods"][method]["maps_images_per_s"])
                print(f"{model} {method}: {b} makes {ratio:.2f}x the maps per second of {a}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--models", default="mobilenetv2,resnet50")
    parser.add_argument("--methods", default="gradcam,gradcam++")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    models, methods = args.models.split(","), args.methods.split(",")
    if args.worker:
        print(json.dumps(worker(args.worker, models, methods, args.images)))
        return
    results = compare(args.backends.split(","), models, methods, args.images)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
