"""ROAD and ARCC (gradcam_cli/metrics/road.py) scored by the evaluator, against a plain numpy
implementation of the definitions: pixels ordered by the map, 10-90 % removed most or least
relevant first, each copy imputed by a dense solve of the neighbour-mean system plus the documented
seeded noise, the head's probability read per copy; complexity, coherency and their harmonic mean
with ROAD. Also: ``--metrics road,arcc`` selects them, and ``gradcam evaluate`` writes them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradcam_cli import render
from tests.helpers import SHAPES, run
from tests.metrics.imputation_reference import dense_imputation
from tests.references import make_evaluator, probability, reference_order

SIZE = 32
FRACTIONS = [k / 10 for k in range(1, 10)]
NOISE = 0.01 * 255  # ROAD's 0.01, of the pixel range
NOISE_SEED = 2022


@pytest.fixture(scope="module")
def red_detector(keras):
    """logit_0 = 8 * mean redness (r - (g + b) / 2, ReLU'd), logit_1 = 1: a red patch is class 0."""
    from gradcam_cli.models.in_memory import spec_for_model

    inputs = keras.Input((SIZE, SIZE, 3))
    redness = keras.layers.Conv2D(1, 1, activation="relu", name="redness")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(redness)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="head")(pooled))
    model.get_layer("redness").set_weights([np.array([1.0, -0.5, -0.5]).reshape(1, 1, 3, 1), np.zeros(1)])
    model.get_layer("head").set_weights([np.array([[8.0, 0.0]]), np.array([0.0, 1.0])])
    return spec_for_model(model, preprocess="scale01")


def red_scenes(count: int, seed: int = 5):
    """Green-blue clutter with one red rectangle each, and the rectangles' masks."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((count, SIZE, SIZE, 3), np.float32)
    pixels[..., 1:] = rng.uniform(60, 200, (count, SIZE, SIZE, 2))
    masks = np.zeros((count, SIZE, SIZE), bool)
    for i in range(count):
        x0, y0 = rng.integers(0, 20, 2)
        masks[i, y0:y0 + 10, x0:x0 + 12] = True
        pixels[i][masks[i]] = (250, 20, 20)
    return pixels, masks


def reference_road(spec, image: np.ndarray, shown: np.ndarray, class_index: int) -> dict[str, float]:
    """ROAD by its definition, one copy at a time."""
    order = reference_order(shown)
    pixels = SIZE * SIZE
    original = probability(spec.model, spec.preprocess, image, class_index)
    changes = {"road_morf": [], "road_lerf": []}
    for k, fraction in enumerate(FRACTIONS):
        count = int(np.round(fraction * pixels))
        for o, (name, chosen) in enumerate([("road_morf", order[:count]), ("road_lerf", order[pixels - count:])]):
            removed = np.zeros(pixels, bool)
            removed[chosen] = True
            removed = removed.reshape(SIZE, SIZE)
            imputed = dense_imputation(image, removed)
            noise = np.random.default_rng([NOISE_SEED, o * len(FRACTIONS) + k]).standard_normal(image.shape)
            imputed[removed] += NOISE * noise[removed]
            changes[name].append(probability(spec.model, spec.preprocess, imputed, class_index) - original)
    morf, lerf = np.mean(changes["road_morf"]), np.mean(changes["road_lerf"])
    return {"road_morf": morf, "road_lerf": lerf, "road": (lerf - morf) / 2}


@pytest.mark.slow
def test_road_and_arcc_match_numpy(red_detector):
    from gradcam_cli.metrics import parse_metrics
    from gradcam_cli.metrics.perturbation import blurred

    pixels, _ = red_scenes(2)
    evaluator = make_evaluator(red_detector, ["gradcam"], parse_metrics("road,arcc", False), batch_size=2)
    explainer = evaluator.explainers["gradcam"]
    result = explainer.run(pixels, np.zeros((2, 1), np.int32))  # the red class (its logit is the redness)
    scores = evaluator.score_maps(pixels, blurred(pixels), result.heatmaps, result.class_ids, result.probabilities,
                                  explainer=explainer)
    for i in range(len(pixels)):
        c = int(result.class_ids[i, 0])
        shown = render.display_heatmap(result.heatmaps[i, 0], (SIZE, SIZE))
        expected = reference_road(red_detector, pixels[i], shown, c)
        product = pixels[i] * shown[..., None]  # the image times its own map, in pixel space
        again = render.display_heatmap(explainer.run(product[None], [[c]]).heatmaps[0, 0], (SIZE, SIZE))
        expected["coherency"] = (np.corrcoef(shown.ravel(), again.ravel())[0, 1] + 1) / 2
        expected["complexity"] = np.abs(shown).sum() / shown.size
        relevance = np.clip(2 * expected["road"], 0, 1)
        expected["arcc"] = 3 / (1 / expected["coherency"] + 1 / (1 - expected["complexity"]) + 1 / relevance)
        for name, value in expected.items():
            assert scores.values[name][i, 0] == pytest.approx(value, abs=2e-4), name
        assert expected["road"] > 0.05  # the map finds the red patch: a real signal, not two zeros compared
        assert len(scores.curves["road_morf"][i, 0]) == len(FRACTIONS)


@pytest.mark.slow
def test_a_map_equal_to_the_object_beats_the_random_baseline_on_road_both_ways(red_detector):
    from gradcam_cli.metrics.perturbation import blurred

    pixels, masks = red_scenes(6, seed=7)
    evaluator = make_evaluator(red_detector, ["random"], ["road_morf", "road_lerf", "road"], batch_size=6)
    classes = np.zeros((6, 1), np.int32)
    random_maps = evaluator.explainers["random"].run(pixels, classes)
    as_mask = evaluator.score_maps(pixels, blurred(pixels), masks[:, None].astype(np.float32), classes,
                                   random_maps.probabilities)
    baseline = evaluator.score_maps(pixels, blurred(pixels), random_maps.heatmaps, classes, random_maps.probabilities)
    assert np.all(as_mask.values["road_morf"] < baseline.values["road_morf"])  # lower is better
    assert np.all(as_mask.values["road_lerf"] > baseline.values["road_lerf"])  # higher is better
    assert as_mask.values["road"].mean() > baseline.values["road"].mean() + 0.1


def test_road_and_arcc_are_asked_for_by_name_and_select_their_family():
    from gradcam_cli.metrics import METRICS, parse_metrics

    assert parse_metrics("road,arcc", False) == ["road", "road_morf", "road_lerf", "arcc", "coherency", "complexity"]
    assert parse_metrics("deletion, road_lerf", False) == ["deletion", "road_lerf"]
    assert not {"road", "arcc", "coherency"} & set(parse_metrics(None, True))  # costly: never by default
    lower = {name for name in ("road_morf", "road_lerf", "road", "arcc", "coherency", "complexity")
             if not METRICS[name].higher_is_better}
    assert lower == {"road_morf", "complexity"}


def test_rows_remove_each_fraction_most_and_least_relevant_first_with_its_own_noise_field():
    from gradcam_cli.metrics.perturbation import REMOVE_LEAST, REMOVE_MOST
    from gradcam_cli.metrics.road import road_curves, road_rows

    rows = road_rows(np.arange(3), np.array([0, 0, 1]), np.array([4, 2, 4]), 100)
    assert len(rows) == 3 * 18
    copies = set(zip(rows.item, rows.kind, rows.count, rows.target, rows.noise, strict=True))
    for item, target in zip(range(3), (4, 2, 4), strict=True):
        for k in range(9):
            assert (item, REMOVE_MOST, 10 * (k + 1), target, k) in copies
            assert (item, REMOVE_LEAST, 10 * (k + 1), target, 9 + k) in copies
    scored = 1000.0 * rows.item + 10.0 * rows.count + (rows.kind == REMOVE_LEAST)
    morf, lerf = road_curves(scored, 3)
    np.testing.assert_array_equal(morf[1], 1000 + 10 * np.arange(10, 100, 10))
    np.testing.assert_array_equal(lerf[2], 2001 + 10 * np.arange(10, 100, 10))


@pytest.mark.slow
def test_evaluate_road_and_arcc_on_two_demo_samples(tmp_path):
    samples = sorted(SHAPES.glob("*.png"))[:2]
    result = run("evaluate", *samples, "--model", "demo", "--methods", "gradcam,center", "--metrics", "road,arcc",
                 "-o", tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "metrics.json").read_text())
    names = ["road", "road_morf", "road_lerf", "arcc", "coherency", "complexity"]
    assert summary["metrics"] == names
    for method in ("gradcam", "center"):
        assert all(summary["methods"][method][name]["n"] == 2 for name in names)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(len(row["road_morf_curve"]) == len(row["road_lerf_curve"]) == 9 for row in rows)
    assert "better: road higher, road_morf lower" in result.output
