"""Localization accuracy of every method on fresh synthetic shapes, with the bundled demo model.

    python benchmarks/localization.py [--per-kind 200] [--seed 777] [--json out.json]

Prints, per method: the pointing game on single-object images (top-1 class; with the paper's
15 px @ 224 tolerance, and strict), two-class
discrimination on images holding two classes (explaining each class in turn), multi-instance
coverage on images with 2-3 objects of one class, and the time per image.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from gradcam_cli.demo.localization import make_scenes, score_method  # noqa: E402
from gradcam_cli.engine import Explainer  # noqa: E402
from gradcam_cli.images import model_input  # noqa: E402
from gradcam_cli.methods import method_names  # noqa: E402
from gradcam_cli.models import resolve_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=200)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--methods", default=",".join(method_names()))
    parser.add_argument("--smooth", default=None, choices=["aug", "eigen"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    spec = resolve_model("demo")
    scenes = make_scenes(args.seed, args.per_kind)
    results = {}
    print(f"demo model, {args.per_kind} images per kind, seed {args.seed}, smooth={args.smooth}")
    print(f"{'method':<14}{'pointing':>10}{'strict':>8}{'two-class':>11}{'multi-inst.':>13}{'ms / image':>12}")
    for method in args.methods.split(","):
        if args.smooth == "eigen" and method in ("eigencam",):
            continue
        explainer = Explainer(spec, method=method, batch_size=32, smooth=args.smooth)
        calls = {"images": 0, "seconds": 0.0}

        def explain_fn(images, classes, explainer=explainer, calls=calls):
            batch = np.stack([model_input(image, spec.input_size) for image in images])
            started = time.perf_counter()
            result = explainer.run(batch, classes)
            calls["seconds"] += time.perf_counter() - started
            calls["images"] += len(images)
            return result.heatmaps

        explain_fn([scenes["single"][0].image] * 2, None)  # compile outside the timing
        calls.update(images=0, seconds=0.0)
        summary = score_method(explain_fn, scenes).summary()
        summary["ms_per_image"] = 1000 * calls["seconds"] / max(calls["images"], 1)
        results[method] = summary
        print(f"{method:<14}{summary['pointing_game']:>10.1%}{summary['pointing_game_strict']:>8.1%}{summary['two_class']:>11.1%}"
              f"{summary['multi_instance_coverage']:>13.1%}{summary['ms_per_image']:>12.2f}")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"seed": args.seed, "per_kind": args.per_kind, "results": results}, stream, indent=2)


if __name__ == "__main__":
    main()
