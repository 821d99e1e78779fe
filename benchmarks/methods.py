"""Every method side by side on the demo model's held-out scenes: localization, faithfulness, cost.

    python benchmarks/methods.py --json benchmarks/methods.json
    python benchmarks/methods.py --sections cost --cost-models mobilenet_v2 --cost-batch 2 --rounds 3 \
        --json benchmarks/methods.json

The first (all sections, default sizes) took 22.6 min on 2 CPU cores shared with other jobs (load about
4): 11 min localization, 10 min faithfulness, 2 min cost, Score-CAM alone about half of it;
``--per-kind 64 --eval-images 16`` took 10 min. The second adds the MobileNetV2 cost to the same JSON
(3 min): ``--sections`` runs only the sections named and keeps the others' figures in an existing file.

The figures docs/methods.md quotes ("Choosing a method: figures"), for every method of
``gradcam methods`` and the ``random`` / ``center`` baselines, with the bundled demo model:

- localization, on ``--per-kind`` scenes of each kind from ``lab.heldout`` (a generator written apart
  from the training one), scored by ``lab.localization.score_method`` exactly as
  benchmarks/localization.py scores them: pointing game (the paper's 15 px @ 224 tolerance, and
  strict), two-class discrimination (a two-class image explained for each class in turn: a hit when
  the map's maximum lands on the explained class's object) and multi-instance coverage. Also, per
  method, how often a two-class map's maximum lands on the *other* object, and what chance is: a
  uniformly random point's hit rate (from the masks) and, for a class-agnostic method (one map for
  both classes, so one maximum for two objects), its ceiling: 50 % plus half the scenes whose two
  objects lie within the tolerance of each other;
- faithfulness, on ``--eval-images`` held-out single-object images (benchmarks/evaluate.py's set),
  scored by the tool's own metric code (``Evaluator.score_maps``: deletion, insertion, ROAD MoRF /
  LeRF / combined, ARCC with its coherency and complexity), each the mean with its 95 % bootstrap
  interval. Methods whose maps equal an earlier method's on every image (up to float rounding, e.g.
  Grad-CAM = CAM = XGrad-CAM = HiResCAM on this conv -> GAP -> Dense model) are scored once and
  say so (``same_maps_as``): the scores of equal maps are equal;
- cost: ms per image of each method on one batch, relative to Grad-CAM, in one run: methods
  alternated in ``--rounds`` rounds after a warm-up call that compiles, the best round of each kept
  (the machine is shared; ratios from one interleaved run are what is reported). ``--cost-models
  demo,mobilenet_v2`` adds a ``weights="none"`` MobileNetV2 at 224 (slow: Score-CAM runs 1280 extra
  forward passes per image there).

A method that fails on a model is recorded with its error in the JSON, and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the lab (not installed) imports from the repo root
sys.path.insert(0, str(HERE))  # the sibling benchmarks whose helpers are reused

import numpy as np  # noqa: E402
from evaluate import held_out_images  # noqa: E402  (benchmarks/evaluate.py)
from localization import model_batch  # noqa: E402  (benchmarks/localization.py)
from scipy.ndimage import distance_transform_edt  # noqa: E402

from gradcam_cli import render  # noqa: E402
from gradcam_cli.explainer import Explainer  # noqa: E402
from gradcam_cli.methods import BASELINES, METHODS, method_names  # noqa: E402
from gradcam_cli.metrics.perturbation import blurred  # noqa: E402
from gradcam_cli.metrics.summary import summarize  # noqa: E402
from gradcam_cli.models import resolve_model  # noqa: E402
from gradcam_cli.scoring import EvaluateOptions, Evaluator  # noqa: E402
from lab.localization import SOURCES, TOLERANCE, points_inside, score_method, source_scenes  # noqa: E402

DATE = "2026-12-06"
METRICS = ["deletion", "insertion", "road_morf", "road_lerf", "road", "arcc", "coherency", "complexity"]
PAIRED = ("deletion", "insertion", "road", "arcc")  # reported as per-image differences from Grad-CAM too
SECTIONS = ("localization", "faithfulness", "cost")
SAME_MAPS = 1e-4  # display maps (in [0, 1]) closer than this everywhere are the same maps


def error_text(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def explainers_for(spec, methods: list[str], batch_size: int, errors: dict) -> dict[str, Explainer]:
    built = {}
    for method in methods:
        try:
            built[method] = Explainer(spec, method=method, batch_size=batch_size)
        except Exception as error:  # recorded, not fatal: the table says which method failed and why
            errors[method] = error_text(error)
    return built


def reachable(mask: np.ndarray, tolerance: float) -> np.ndarray:
    """Pixels within ``tolerance`` pixels of ``mask`` (where a maximum counts as a hit)."""
    return distance_transform_edt(~mask) <= tolerance


def chance(scenes: dict[str, list]) -> dict[str, float]:
    """Hit rates of a uniformly random point, and the two-class ceiling of a class-agnostic map: one
    map for both classes has one maximum, which hits both objects only where they come within the
    tolerance of each other (else at most one of the two explanations hits: 50 %)."""
    def share(mask, tolerance):
        return float(reachable(mask, tolerance * max(mask.shape)).mean())

    single = [scene.objects[0].mask for scene in scenes["single"]]
    pairs = [(scene.objects[0].mask, scene.objects[1].mask) for scene in scenes["pair"]]
    both = [bool((reachable(a, TOLERANCE * max(a.shape)) & reachable(b, TOLERANCE * max(b.shape))).any())
            for a, b in pairs]
    return {"pointing_game": float(np.mean([share(m, TOLERANCE) for m in single])),
            "pointing_game_strict": float(np.mean([share(m, 0.0) for m in single])),
            "two_class": float(np.mean([share(m, TOLERANCE) for pair in pairs for m in pair])),
            "two_class_ceiling_class_agnostic": float(np.mean([0.5 + 0.5 * b for b in both]))}


def localization(spec, explainers: dict[str, Explainer], scenes: dict[str, list], errors: dict) -> dict[str, dict]:
    """``score_method``'s summary per method, with its time per image and the share of two-class
    maps whose maximum lands on the other object instead (within the tolerance)."""
    results = {}
    for method, explainer in explainers.items():
        memo: dict = {}
        timing = {"images": 0, "seconds": 0.0}

        def explain_fn(images, classes, explainer=explainer, memo=memo, timing=timing):
            key = (tuple(id(image) for image in images), None if classes is None else np.asarray(classes).tobytes())
            if key not in memo:
                batch = model_batch(spec, images)
                started = time.perf_counter()
                memo[key] = explainer.run(batch, classes).heatmaps
                timing["seconds"] += time.perf_counter() - started
                timing["images"] += len(images)
            return memo[key]

        try:
            explain_fn([scenes["single"][0].image] * 2, None)  # compile outside the timing (both target modes)
            explain_fn([scenes["single"][0].image] * 2, np.zeros((2, 1), int))
            memo.clear()
            timing.update(images=0, seconds=0.0)
            summary = score_method(explain_fn, scenes).summary()
        except Exception as error:
            errors[method] = error_text(error)
            continue
        pairs = scenes["pair"]
        on_other = []
        for position in (0, 1):  # the maps score_method made, read again from the memo
            maps = explain_fn([s.image for s in pairs], np.array([[s.objects[position].label] for s in pairs]))
            on_other += [points_inside(m, s.objects[1 - position].mask) for s, m in zip(pairs, maps[:, 0], strict=True)]
        summary["two_class_on_other_object"] = float(np.mean(on_other))
        summary["ms_per_image"] = 1000 * timing["seconds"] / max(timing["images"], 1)
        results[method] = summary
        print(f"  {method:<22}pointing {summary['pointing_game']:6.1%}  strict {summary['pointing_game_strict']:6.1%}  "
              f"two-class {summary['two_class']:6.1%} (other object {summary['two_class_on_other_object']:5.1%})  "
              f"multi-instance {summary['multi_instance_coverage']:6.1%}", flush=True)
    return results


def faithfulness(spec, explainers: dict[str, Explainer], pixels: np.ndarray, batch_size: int, steps: int,
                 errors: dict) -> dict[str, dict]:
    """The tool's metric code (``Evaluator.score_maps``, as ``gradcam evaluate`` runs it) on each
    method's maps of the top-1 class; a method whose maps equal an earlier one's is scored once."""
    options = EvaluateOptions(methods=["gradcam"], metrics=METRICS, steps=steps, batch_size=batch_size)
    evaluator = Evaluator(spec, options)  # its runner and metric loop; the maps come from our explainers
    substrate = blurred(pixels)
    results: dict[str, dict] = {}
    scored: list[tuple[str, np.ndarray, dict]] = []  # (method, display maps, per-image values)
    per_image: dict[str, dict[str, list]] = {}
    for method, explainer in explainers.items():
        try:
            run = explainer.run(pixels, None)
            shown = render.display_heatmaps(run.heatmaps[:, 0], tuple(spec.input_size))
            same = next((name for name, other, _ in scored if np.abs(other - shown).max() < SAME_MAPS), None)
            if same is not None:
                values = next(v for name, _, v in scored if name == same)
            else:
                values = {metric: [] for metric in METRICS}
                for start in range(0, len(pixels), batch_size):
                    part = slice(start, start + batch_size)
                    scores = evaluator.score_maps(pixels[part], substrate[part], run.heatmaps[part], run.class_ids[part],
                                                  run.probabilities[part], explainer=explainer)
                    for metric in METRICS:
                        values[metric] += [None if np.isnan(v) else float(v) for v in scores.values[metric][:, 0]]
                scored.append((method, shown, values))
        except Exception as error:
            errors[method] = error_text(error)
            continue
        results[method] = {metric: summarize(values[metric]) for metric in METRICS}
        results[method]["same_maps_as"] = same
        per_image[method] = values
        row = "  ".join(f"{metric} {results[method][metric]['mean']:.3f}" for metric in METRICS[:5])
        print(f"  {method:<22}{row}" + (f"  (maps = {same}'s)" if same else ""), flush=True)
    if "gradcam" in per_image:  # the same images for every method: paired differences are the tight comparison
        for method, values in per_image.items():
            results[method]["minus_gradcam"] = {
                metric: summarize([None if a is None or b is None else a - b
                                   for a, b in zip(values[metric], per_image["gradcam"][metric], strict=True)])
                for metric in PAIRED}
    return results


def cost(spec, explainers: dict[str, Explainer], pixels: np.ndarray, rounds: int, errors: dict) -> dict:
    """ms per image of each method on ``pixels`` (one batch), methods alternated in ``rounds`` rounds
    after a warm-up call each; the best round of each, and its ratio to Grad-CAM's."""
    times: dict[str, list[float]] = {}
    for method, explainer in explainers.items():
        try:
            explainer.run(pixels, None)  # warm-up: compiles
            times[method] = []
        except Exception as error:
            errors[method] = error_text(error)
    for _ in range(rounds):
        for method in times:
            started = time.perf_counter()
            explainer = explainers[method]
            explainer.run(pixels, None)
            times[method].append(1000 * (time.perf_counter() - started) / len(pixels))
    reference = min(times["gradcam"]) if "gradcam" in times else float("nan")
    return {method: {"ms_per_image": round(min(values), 3), "ratio_to_gradcam": round(min(values) / reference, 3),
                     "all_ms_per_image": [round(v, 3) for v in values]} for method, values in times.items()}


def cell(summary: dict | None, key: str, percent: bool = False) -> str:
    value = None if summary is None else summary.get(key)
    if isinstance(value, dict):
        value = value.get("mean")
    if value is None:
        return "-"
    return f"{value:.1%}" if percent else f"{value:.3f}"


def print_table(report: dict, source: str) -> None:
    loc = report["localization"][source]["methods"]
    faith = report["faithfulness"]["methods"]
    cost_demo = report["cost"].get("demo", {}).get("methods", {})
    headers = ["method", "agnostic", "pointing", "strict", "two-class", "on other", "deletion", "insertion",
               "ROAD MoRF", "ROAD LeRF", "ROAD", "ARCC", "ms/img", "x Grad-CAM"]
    rows = [headers]
    for method in report["methods"]:
        agnostic = report["class_agnostic"].get(method)
        timing = cost_demo.get(method, {})
        rows.append([method, "-" if agnostic is None else ("yes" if agnostic else "no"),
                     cell(loc.get(method), "pointing_game", True), cell(loc.get(method), "pointing_game_strict", True),
                     cell(loc.get(method), "two_class", True), cell(loc.get(method), "two_class_on_other_object", True),
                     *(cell(faith.get(method), m) for m in ("deletion", "insertion", "road_morf", "road_lerf", "road",
                                                            "arcc")),
                     f"{timing['ms_per_image']:.1f}" if timing else "-",
                     f"{timing['ratio_to_gradcam']:.2f}" if timing else "-"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    for row in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print("\nper-image difference from Grad-CAM, mean [95% bootstrap interval] (deletion: lower is better):")
    for method in report["methods"]:
        paired = faith.get(method, {}).get("minus_gradcam")
        if paired and method != "gradcam":
            print(f"  {method:<22}" + "  ".join(f"{metric} {paired[metric]['mean']:+.3f} [{paired[metric]['ci95'][0]:+.3f}, "
                                                 f"{paired[metric]['ci95'][1]:+.3f}]" for metric in PAIRED))
    odds = report["localization"][source]["chance"]
    print(f"chance (a uniformly random point): pointing {odds['pointing_game']:.1%}, strict "
          f"{odds['pointing_game_strict']:.1%}, two-class {odds['two_class']:.1%}; a class-agnostic map's two-class "
          f"ceiling (one maximum for both objects): {odds['two_class_ceiling_class_agnostic']:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=100, help="held-out scenes of each kind (localization)")
    parser.add_argument("--seed", type=int, default=777, help="localization scenes (benchmarks/localization.py's)")
    parser.add_argument("--sources", default="heldout", help="localization sources, e.g. heldout,heldout2")
    parser.add_argument("--eval-images", type=int, default=32, help="single-object images for the metrics")
    parser.add_argument("--eval-seed", type=int, default=2024, help="benchmarks/evaluate.py's seed")
    parser.add_argument("--steps", type=int, default=20, help="deletion / insertion steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternated timing rounds, the best of each kept")
    parser.add_argument("--cost-models", default="demo", help="e.g. demo,mobilenet_v2 (weights=None, 224)")
    parser.add_argument("--cost-batch", type=int, default=4, help="images per timed batch for models other than demo")
    parser.add_argument("--methods", default=",".join([*method_names(), *BASELINES]))
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="run only these; an existing --json file keeps the figures of the others")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    sections = args.sections.split(",")

    started = time.perf_counter()
    methods = args.methods.split(",")
    spec = resolve_model("demo")
    errors: dict[str, str] = {}
    explainers = explainers_for(spec, methods, args.batch_size, errors)
    first = next(iter(explainers.values()))
    command = "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    report: dict = {"localization": {}, "faithfulness": {}, "cost": {}, "errors": {}, "seconds": {}}
    if args.json and Path(args.json).exists() and set(sections) != set(SECTIONS):
        report.update(json.loads(Path(args.json).read_text()))
    report.update({"date": DATE, "model": "demo", "input_size": list(spec.input_size), "layer": first.layer_name,
                   "backend": __import__("keras").backend.backend(), "methods": methods,
                   "class_agnostic": {m: (METHODS[m].class_agnostic if m in METHODS else None) for m in methods}})
    report.setdefault("commands", {})
    for section_name in sections:
        report["commands"][section_name] = command
    report["errors"].update(errors)
    errors = report["errors"]
    for source in args.sources.split(",") if "localization" in sections else []:
        section = time.perf_counter()
        scenes = source_scenes(source, args.seed, args.per_kind)
        print(f"\n== localization on {source} ({SOURCES[source]}): {args.per_kind} scenes per kind, seed {args.seed}")
        results = localization(spec, explainers, scenes, errors)
        report["localization"][source] = {"seed": args.seed, "per_kind": args.per_kind, "chance": chance(scenes),
                                          "methods": results}
        report["seconds"][f"localization {source}"] = round(time.perf_counter() - section, 1)

    section = time.perf_counter()
    pixels, labels, description = held_out_images(args.eval_images, spec.input_size[0], args.eval_seed)
    if "faithfulness" in sections:
        print(f"\n== faithfulness on {args.eval_images} images from {description}, {args.steps} steps")
        faith = faithfulness(spec, explainers, pixels, args.batch_size, args.steps, errors)
        predicted = explainers[next(iter(explainers))].run(pixels, None).class_ids[:, 0]
        report["faithfulness"] = {"source": description, "images": args.eval_images, "steps": args.steps,
                                  "accuracy": round(float(np.mean(predicted == labels)), 4), "metrics": METRICS,
                                  "methods": faith}
        report["seconds"]["faithfulness"] = round(time.perf_counter() - section, 1)

    for model in args.cost_models.split(",") if "cost" in sections else []:
        section = time.perf_counter()
        if model == "demo":
            model_spec, timed, batch = spec, explainers, pixels[:args.batch_size]
            if len(batch) < args.batch_size:
                batch = np.resize(batch, (args.batch_size, *batch.shape[1:]))
        else:
            model_spec = resolve_model(model, weights="none")  # random weights: timing does not depend on them
            timed = explainers_for(model_spec, methods, args.cost_batch, errors.setdefault(model, {}))
            batch = np.random.default_rng(0).uniform(0, 255, (args.cost_batch, *model_spec.input_size, 3))
        print(f"\n== cost on {model} ({len(batch)} images a batch, {args.rounds} alternated rounds, best kept)")
        report["cost"][model] = {"input_size": list(model_spec.input_size), "images": len(batch),
                                 "rounds": args.rounds,
                                 "methods": cost(model_spec, timed, batch.astype(np.float32), args.rounds,
                                                 errors if model == "demo" else errors[model])}
        for method, entry in report["cost"][model]["methods"].items():
            print(f"  {method:<22}{entry['ms_per_image']:9.1f} ms/image  {entry['ratio_to_gradcam']:6.2f} x Grad-CAM")
        report["seconds"][f"cost {model}"] = round(time.perf_counter() - section, 1)

    report["seconds"]["total" if set(sections) == set(SECTIONS) else f"total {args.sections}"] = round(
        time.perf_counter() - started, 1)
    source = args.sources.split(",")[0]
    if source in report["localization"] and report["faithfulness"]:
        print(f"\n== every method side by side ({source}; faithfulness: mean over "
              f"{report['faithfulness']['images']} images; cost on the demo model, batch {args.batch_size})")
        print_table(report, source)
    if errors:
        print("errors:", json.dumps(errors, indent=1))
    print(f"seconds: {report['seconds']}")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(report, stream, indent=2)


if __name__ == "__main__":
    main()
