"""Peak memory of ``gradcam explain`` per method, for the perturbation methods' bound on the model
inputs one extra forward pass holds (issue 27).

    python benchmarks/perturbation_memory.py [--images 16] [--model mobilenet_v2] [--baseline DIR]

Writes ``--images`` photo-like 640x480 JPEGs, then for each method runs ``gradcam explain`` on them in a
fresh process (random weights, 224 px) and prints its peak resident memory (VmHWM), and, with
``--baseline DIR`` (an older checkout, ``git archive COMMIT | tar -x -C DIR``), the same for that code.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import peak_rss_mb  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--methods", default="gradcam,scorecam,ablationcam")
    parser.add_argument("--baseline", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gradcam_memory_"))
    folder = work / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(args.images):
        noise = rng.normal(128, 40, (480, 640, 3)).clip(0, 255).astype(np.uint8)
        Image.fromarray(noise).save(folder / f"{index:03d}.jpg", quality=90)
    print(f"{args.images} photos of 640x480, {args.model} (random weights), batch 16, peak RSS in MB")
    for method in args.methods.split(","):
        extra = ("--method", method, "--max-channels", "64") if method == "scorecam" else ("--method", method)
        model = ("--model", args.model, "--weights", "none", *extra)
        line = f"  {method:<12} this checkout {peak_rss_mb([folder], work / f'out_{method}', model):7.0f}"
        if args.baseline:
            line += f"   baseline {peak_rss_mb([folder], work / f'base_{method}', model, args.baseline):7.0f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
