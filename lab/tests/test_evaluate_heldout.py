"""The demo model against the evaluation baselines, on scenes of a held-out generator (lab code)."""

from __future__ import annotations

import numpy as np

from gradcam_cli.evaluate import EvaluateOptions, Evaluator


def make_evaluator(spec, methods, metrics, batch_size, steps):
    return Evaluator(spec, EvaluateOptions(methods=methods, metrics=metrics, steps=steps, batch_size=batch_size))


def test_gradcam_beats_the_baselines_on_held_out_scenes(demo_spec):
    """On 96 scenes from the independent held-out generator, explaining each image's top-1 class
    (as benchmarks/evaluate.py does): Grad-CAM restores the evidence faster (higher insertion AUC)
    and removes it faster (lower deletion AUC) than the random and center baselines. Average Drop is
    not asserted: this model's maps sit on the objects' rims and corners, and the image weighted by
    such a map keeps less of the class than one weighted by a random map (docs/evaluate.md,
    "Measured margins"). Margins measured on 200 scenes: docs/evaluate.md."""
    from gradcam_cli.decode import model_input
    from gradcam_cli.metrics.perturbation import blurred
    from lab import heldout

    scenes = heldout.make_scenes(907, 96, size=128)["single"]
    all_pixels = np.stack([model_input(scene.image, demo_spec.input_size) for scene in scenes])
    evaluator = make_evaluator(demo_spec, ["gradcam", "random", "center"], ["insertion", "deletion"], batch_size=48,
                               steps=10)
    scores: dict[str, dict[str, list]] = {}
    for start in (0, 48):
        pixels = all_pixels[start:start + 48]
        substrate = blurred(pixels)
        for method, explainer in evaluator.explainers.items():
            result = explainer.run(pixels)
            batch = evaluator.score_maps(pixels, substrate, result.heatmaps, result.class_ids, result.probabilities)
            for metric, values in batch.values.items():
                scores.setdefault(method, {}).setdefault(metric, []).append(values)
    means = {method: {metric: float(np.concatenate(parts).mean()) for metric, parts in by_metric.items()}
             for method, by_metric in scores.items()}
    for baseline in ("random", "center"):
        assert means["gradcam"]["insertion"] > means[baseline]["insertion"], means
        assert means["gradcam"]["deletion"] < means[baseline]["deletion"], means
