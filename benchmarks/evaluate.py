"""Cost and scores of ``gradcam evaluate`` (deletion + insertion, RISE), with the bundled demo model.

    python benchmarks/evaluate.py [--images 64] [--steps 20] [--models demo,mobilenet_v2] [--json out.json]

Speed: forward passes per image (perturbed copies through the model, padding included, plus the
explanation pass) and the time of the scoring against the floor of ``model.predict`` over the same
number of perturbed images, already built and preprocessed, at the same batch size (ratio =
predict seconds / our seconds: 1.0 is as fast as predict, above is faster). Compilation is
excluded from both; ``--rounds`` alternated timings, the best of each kept. Random weights for keras.applications models (timing does not depend on them).

Scores: every method and the random/center baselines on held-out scenes, with the margins of
Grad-CAM over each baseline: docs/evaluate.md's figures. Then what deletion's black pixels do to the
demo model on the same scenes: its probability of the true class on the image, with the object's
pixels set to black (the black silhouette deletion leaves once the map has found the object) and
with them replaced by the scene's background as drawn before the object and before the camera
effects (the object removed, though a faint seam of the object's shape stays where the noise, blur
and JPEG of the rest of the image stop). When the silhouette keeps
the class, the mask's shape leaks it (Rong et al., ICML 2022, "ROAD") and deletion cannot reward a
map for finding the object.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the lab (not installed) imports from the repo root

import numpy as np  # noqa: E402

from gradcam_cli import render  # noqa: E402
from gradcam_cli.decode import model_input  # noqa: E402
from gradcam_cli.evaluate import EvaluateOptions, Evaluator, curve_chart  # noqa: E402
from gradcam_cli.metrics.summary import summarize  # noqa: E402
from gradcam_cli.models import resolve_model  # noqa: E402


def held_out_images(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Single-object scenes (pixels, labels) from the held-out generator where present, else the
    training generator."""
    try:
        from lab.heldout import make_scenes

        scenes = make_scenes(seed, count, size=128)["single"]
        source = f"lab.heldout (seed {seed}, 128 px, resized)"
    except ImportError:
        from lab.localization import make_scenes

        scenes = make_scenes(seed, count, size=128)["single"]
        source = f"lab.shapes (the training generator, unseen seed {seed}; 128 px, resized)"
    labels = np.array([scene.objects[0].label for scene in scenes])
    return np.stack([model_input(scene.image, (size, size)) for scene in scenes]), labels, source


def speed(model_name: str, count: int, steps: int, batch: int, copies: int, rounds: int = 3) -> dict:
    spec = resolve_model(model_name, weights=None if model_name == "demo" else "none")  # random weights: offline
    height, width = spec.input_size
    if model_name == "demo":
        pixels, _, _ = held_out_images(count, height, seed=31)
    else:
        pixels = np.random.default_rng(0).uniform(0, 255, (count, height, width, 3)).astype(np.float32)
    options = EvaluateOptions(methods=["gradcam"], metrics=["deletion", "insertion"], steps=steps,
                              batch_size=batch, copies_per_pass=copies)
    evaluator = Evaluator(spec, options)
    evaluator.score_batch(pixels[:batch])  # compile outside the timing
    evaluator.runner.copies_run = evaluator.explained_images = 0
    for start in range(0, count, batch):  # one counted run: the passes per image
        evaluator.score_batch(pixels[start:start + batch])
    copies_run = evaluator.runner.copies_run
    passes = (copies_run + evaluator.explained_images) / count
    # the floor: the same number of already perturbed, preprocessed images through model.predict
    floor_batch = evaluator.runner._pass_size
    perturbed = spec.preprocess(np.repeat(pixels[:batch], -(-copies_run // batch), axis=0)[:copies_run] * 0.5)
    spec.model.predict(perturbed[:floor_batch], batch_size=floor_batch, verbose=0)
    ours_times, floor_times = [], []
    for _ in range(rounds):  # alternated, best of each: load from other jobs swings single timings 2x
        started = time.perf_counter()
        for start in range(0, count, batch):
            evaluator.score_batch(pixels[start:start + batch])
        ours_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        spec.model.predict(perturbed, batch_size=floor_batch, verbose=0)
        floor_times.append(time.perf_counter() - started)
    ours, floor = min(ours_times), min(floor_times)
    return {"model": model_name, "input": [height, width], "images": count, "steps": steps,
            "forward_passes_per_image": round(passes, 2), "perturbed_copies": copies_run,
            "seconds": round(ours, 3), "predict_seconds": round(floor, 3), "ratio_to_predict": round(floor / ours, 3),
            "copies_per_pass": floor_batch, "rounds": rounds,
            "all_seconds": [round(t, 3) for t in ours_times], "all_predict_seconds": [round(t, 3) for t in floor_times]}


def scores(count: int, steps: int, methods: list[str], seed: int) -> dict:
    spec = resolve_model("demo")
    pixels, labels, source = held_out_images(count, spec.input_size[0], seed)
    options = EvaluateOptions(methods=methods, metrics=["deletion", "insertion", "drop", "increase"], steps=steps,
                              batch_size=32)
    evaluator = Evaluator(spec, options)
    values: dict[str, dict[str, list]] = {m: {k: [] for k in options.metrics} for m in methods}
    predicted: list[int] = []
    curves: dict[str, dict[str, list]] = {m: {"deletion": [], "insertion": []} for m in methods}
    for start in range(0, count, 32):
        for method, batch in evaluator.score_batch(pixels[start:start + 32]).items():
            if method == methods[0]:
                predicted.extend(batch.class_ids[:, 0].tolist())
            for metric, array in batch.values.items():
                values[method][metric].extend(array[:, 0].tolist())
            for name, curve in batch.curves.items():
                curves[method][name].extend(curve[:, 0].tolist())
    accuracy = round(float(np.mean(np.array(predicted) == labels)), 4)
    table = {m: {k: summarize(v) for k, v in metrics.items()} for m, metrics in values.items()}
    margins = {}
    for baseline in ("random", "center"):
        if "gradcam" in values and baseline in values:
            for metric in ("deletion", "insertion"):
                difference = np.subtract(values["gradcam"][metric], values[baseline][metric])
                margins[f"{metric} gradcam - {baseline}"] = summarize(difference)
    mean_curves = {m: {k: np.mean(v, axis=0).round(6).tolist() for k, v in sets.items()} for m, sets in curves.items()}
    return {"source": source, "images": count, "steps": steps, "accuracy": accuracy, "methods": table,
            "margins": margins, "curves": mean_curves}


def silhouette(count: int, seed: int) -> dict:
    """Mean probability of the true class (and accuracy) on held-out single-object scenes: as drawn,
    with the object's mask set to black, and with it replaced by the scene's clean background."""
    from lab.heldout import make_scenes

    spec = resolve_model("demo")
    scenes = make_scenes(seed, count, size=128)["single"]
    labels = np.array([scene.objects[0].label for scene in scenes])
    variants = {"as drawn": [], "object set to black": [], "object replaced by the background": []}
    for scene in scenes:
        mask = scene.objects[0].mask
        black, removed = scene.image.copy(), scene.image.copy()
        black[mask] = 0
        removed[mask] = scene.background[mask]
        for name, image in zip(variants, (scene.image, black, removed), strict=True):
            variants[name].append(model_input(image, spec.input_size))
    result = {}
    for name, images in variants.items():
        probabilities = spec.model.predict(spec.preprocess(np.stack(images)), batch_size=64, verbose=0)
        result[name] = {"p_true": round(float(probabilities[np.arange(len(labels)), labels].mean()), 4),
                        "accuracy": round(float(np.mean(probabilities.argmax(1) == labels)), 4)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--copies-per-pass", type=int, default=64)
    parser.add_argument("--models", default="demo", help="for the speed part, e.g. demo,mobilenet_v2")
    parser.add_argument("--rounds", type=int, default=3, help="alternated timing rounds; the best of each counts")
    parser.add_argument("--score-images", type=int, default=200)
    parser.add_argument("--methods", default="gradcam,gradcam++,layercam,scorecam,random,center")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--skip-scores", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--curves", default=None, help="write the mean curves as a PNG here")
    args = parser.parse_args()

    report: dict = {"speed": []}
    print(f"{'model':<14}{'input':>8}{'passes/img':>12}{'ours s':>9}{'predict s':>11}{'x predict':>11}")
    for name in args.models.split(","):
        row = speed(name, args.images, args.steps, args.batch_size, args.copies_per_pass, args.rounds)
        report["speed"].append(row)
        print(f"{name:<14}{row['input'][0]:>8}{row['forward_passes_per_image']:>12}{row['seconds']:>9}"
              f"{row['predict_seconds']:>11}{row['ratio_to_predict']:>11}")
    if not args.skip_scores:
        report["scores"] = scores(args.score_images, args.steps, args.methods.split(","), args.seed)
        print(f"\nscores on {report['scores']['images']} images from {report['scores']['source']}, "
              f"{args.steps} steps (model accuracy {report['scores']['accuracy']:.1%}): mean [95% bootstrap interval]")
        if args.curves:
            render.atomic_write_bytes(Path(args.curves), render.png_bytes(curve_chart(report["scores"]["curves"])))
        for method, metrics in report["scores"]["methods"].items():
            cells = "  ".join(f"{k} {v['mean']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]" for k, v in metrics.items())
            print(f"{method:<12}{cells}")
        for name, summary in report["scores"]["margins"].items():
            print(f"{name:<28}{summary['mean']:+.3f} [{summary['ci95'][0]:+.3f}, {summary['ci95'][1]:+.3f}]")
        report["silhouette"] = silhouette(args.score_images, args.seed)
        print("\nthe same scenes, probability of the true class (accuracy):")
        for name, values in report["silhouette"].items():
            print(f"  {name:<36}{values['p_true']:.3f} ({values['accuracy']:.1%})")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(report, stream, indent=2)


if __name__ == "__main__":
    main()
