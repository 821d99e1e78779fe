"""gradcam evaluate: each metric against a plain numpy implementation, the baselines, the ground-truth
formats, the sanity check and the CI gate's exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gradcam_cli import render
from gradcam_cli.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ROOT / "sample_images" / "shapes"
STEPS = 5


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# ---- plain numpy references, written from the papers' definitions, one image and one step at a time

def reference_order(shown: np.ndarray, seed: int = 13) -> np.ndarray:
    """Pixels by decreasing saliency, ties by their place in a seeded permutation of positions."""
    flat = shown.ravel()
    place = np.empty(flat.size, int)
    place[np.random.default_rng(seed).permutation(flat.size)] = np.arange(flat.size)
    return np.lexsort((place, -flat))


def reference_blur(image: np.ndarray) -> np.ndarray:
    """RISE's Gaussian (sigma 5 px at 224, radius sigma) along each axis, weights renormalised at borders."""
    out = image.astype(np.float64)
    for axis in (0, 1):
        size = out.shape[axis]
        sigma = 5 / 224 * size
        radius = max(1, int(round(sigma)))
        moved = np.moveaxis(out, axis, 0)
        result = np.zeros_like(moved)
        for position in range(size):
            window = range(max(0, position - radius), min(size, position + radius + 1))
            weights = np.array([np.exp(-((position - j) ** 2) / (2 * sigma**2)) for j in window])
            weights /= weights.sum()
            result[position] = sum(w * moved[j] for w, j in zip(weights, window, strict=True))
        out = np.moveaxis(result, 0, axis)
    return out


def probability(model, preprocess, image: np.ndarray, class_index: int) -> float:
    batch = preprocess(image[None].astype(np.float32).copy())
    return float(np.asarray(model(batch, training=False))[0, class_index])


@pytest.fixture(scope="session")
def caffe_spec(gap_dense_model):
    """The small GAP-Dense model behind caffe preprocessing (BGR flip and mean subtraction), so the
    in-graph affine preprocessing is checked against Keras' own function."""
    from gradcam_cli.models.in_memory import spec_for_model

    return spec_for_model(gap_dense_model, preprocess="caffe")


def make_evaluator(spec, methods, metrics, batch_size=4, steps=STEPS, **extra):
    from gradcam_cli.evaluate import EvaluateOptions, Evaluator

    return Evaluator(spec, EvaluateOptions(methods=methods, metrics=metrics, steps=steps, batch_size=batch_size,
                                           **extra))


@pytest.mark.parametrize("tied", [False, True], ids=["maps", "maps-with-ties"])
def test_deletion_insertion_drop_and_increase_match_numpy(caffe_spec, random_images, tied):
    from gradcam_cli.metrics.perturbation import blurred

    pixels = random_images[:4]
    evaluator = make_evaluator(caffe_spec, ["gradcam"], ["deletion", "insertion", "drop", "increase"])
    result = evaluator.explainers["gradcam"].run(pixels, top_k=2)
    if tied:  # three levels: wide plateaus whose order only the documented tie rule decides
        result.heatmaps = np.floor(result.heatmaps / result.heatmaps.max(axis=(2, 3), keepdims=True) * 2.99)
    scores = evaluator.score_maps(pixels, blurred(pixels), result.heatmaps, result.class_ids, result.probabilities)
    model, preprocess = caffe_spec.model, caffe_spec.preprocess
    for i in range(len(pixels)):
        for t in range(2):
            c = int(result.class_ids[i, t])
            shown = render.display_heatmap(result.heatmaps[i, t], (32, 32))
            order = reference_order(shown)
            soft = reference_blur(pixels[i])
            deletion, insertion = [], []
            for s in range(STEPS + 1):
                n = int(np.round(s * 1024 / STEPS))
                deleted = pixels[i].reshape(-1, 3).copy()
                deleted[order[:n]] = 0
                inserted = soft.reshape(-1, 3).copy()
                inserted[order[:n]] = pixels[i].reshape(-1, 3)[order[:n]]
                deletion.append(probability(model, preprocess, deleted.reshape(32, 32, 3), c))
                insertion.append(probability(model, preprocess, inserted.reshape(32, 32, 3), c))
            y = probability(model, preprocess, pixels[i], c)
            o = probability(model, preprocess, pixels[i] * shown[..., None], c)
            assert scores.curves["deletion"][i, t] == pytest.approx(deletion, abs=2e-5)
            assert scores.curves["insertion"][i, t] == pytest.approx(insertion, abs=2e-5)
            assert scores.values["deletion"][i, t] == pytest.approx(np.trapezoid(deletion, dx=1 / STEPS), abs=2e-5)
            assert scores.values["insertion"][i, t] == pytest.approx(np.trapezoid(insertion, dx=1 / STEPS), abs=2e-5)
            assert scores.values["drop"][i, t] == pytest.approx(max(0.0, y - o) / y, abs=1e-4)
            assert scores.values["increase"][i, t] == float(o > y)


def test_pointing_and_energy_match_numpy_with_boxes(caffe_spec, random_images):
    from gradcam_cli.metrics.ground_truth import Box

    pixels = random_images[:4]
    evaluator = make_evaluator(caffe_spec, ["gradcam"], ["pointing", "energy"])
    result = evaluator.explainers["gradcam"].run(pixels, top_k=1)
    sizes = [(64, 48)] * 4  # originals twice as wide, 1.5x as tall as the 32 px model input
    annotations = [
        [Box(None, int(result.class_ids[0, 0]), (0, 0, 64, 48))],         # the whole image: a hit, all energy
        [Box("4", None, (10, 10, 20, 20)), Box(None, (int(result.class_ids[1, 0]) + 1) % 5, (0, 0, 64, 48))],
        [Box(None, int(result.class_ids[2, 0]), (30, 6, 44, 30)), Box(None, int(result.class_ids[2, 0]), (2, 30, 12, 46))],
        None,
    ]
    scores = evaluator.score_maps(pixels, pixels, result.heatmaps, result.class_ids, result.probabilities,
                                  annotations, sizes)
    assert scores.ground_truth == [["scored"], ["without_class"], ["scored"], ["unannotated"]]
    for i in (0, 2):
        shown = render.display_heatmap(result.heatmaps[i, 0], (32, 32))
        inside = np.zeros((32, 32), bool)
        for box in annotations[i]:
            x0, y0, x1, y1 = box.xyxy
            for y in range(32):
                for x in range(32):
                    if x0 / 2 <= x + 0.5 < x1 / 2 and y0 / 1.5 <= y + 0.5 < y1 / 1.5:
                        inside[y, x] = True
        top = reference_order(shown)[0]
        ty, tx = divmod(int(top), 32)
        distance = min(np.hypot(y - ty, x - tx) for y, x in zip(*np.nonzero(inside), strict=True))
        assert scores.values["pointing"][i, 0] == float(distance <= 15 / 224 * 32)
        assert scores.values["energy"][i, 0] == pytest.approx(shown[inside].sum() / shown.sum(), abs=1e-5)
    assert scores.values["energy"][0, 0] == pytest.approx(1.0)
    assert np.isnan(scores.values["pointing"][1, 0]) and np.isnan(scores.values["pointing"][3, 0])


def test_batched_display_maps_equal_pillow_upsampling():
    maps = np.random.default_rng(3).random((4, 7, 9)).astype(np.float32)
    maps[1] = 0.0
    batched = render.display_heatmaps(maps, (40, 33))
    one_by_one = np.stack([render.display_heatmap(m, (40, 33)) for m in maps])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_affine_preprocessing_is_read_off_and_others_refused():
    from gradcam_cli.errors import EvaluationError
    from gradcam_cli.metrics.perturbation import affine_preprocess
    from gradcam_cli.models.preprocessing import make_preprocess

    caffe, _ = make_preprocess("caffe")
    matrix, offset = affine_preprocess(caffe, (8, 8), 3)
    np.testing.assert_allclose(matrix, [[0, 0, 1], [0, 1, 0], [1, 0, 0]], atol=1e-5)  # RGB -> BGR
    np.testing.assert_allclose(offset, [-103.939, -116.779, -123.68], atol=1e-3)
    with pytest.raises(EvaluationError, match="affine"):
        affine_preprocess(lambda x: np.sqrt(x), (8, 8), 3)


# ---- a model whose class-0 score is the amount of red: the object is exactly what matters

@pytest.fixture(scope="session")
def red_detector(keras):
    """logit_0 = 8 * mean redness (r - (g + b) / 2, ReLU'd), logit_1 = 1: deleting red pixels lowers p_0."""
    from gradcam_cli.models.in_memory import spec_for_model

    inputs = keras.Input((32, 32, 3))
    redness = keras.layers.Conv2D(1, 1, activation="relu", name="redness")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(redness)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("redness").set_weights([np.array([1.0, -0.5, -0.5]).reshape(1, 1, 3, 1), np.zeros(1)])
    model.get_layer("head").set_weights([np.array([[8.0, 0.0]]), np.array([0.0, 1.0])])
    return spec_for_model(model, preprocess="scale01")


def test_a_map_equal_to_the_mask_points_perfectly_and_deletes_better_than_random(red_detector):
    from gradcam_cli.metrics.ground_truth import Box
    from gradcam_cli.metrics.perturbation import blurred

    rng = np.random.default_rng(5)
    pixels = np.zeros((6, 32, 32, 3), np.float32)
    pixels[..., 1:] = rng.uniform(60, 200, (6, 32, 32, 2))  # green-blue clutter
    masks, boxes = np.zeros((6, 32, 32), bool), []
    for i in range(6):
        x0, y0 = rng.integers(0, 20, 2)
        masks[i, y0:y0 + 10, x0:x0 + 12] = True
        pixels[i][masks[i]] = (250, 20, 20)
        boxes.append([Box("red", 0, (x0, y0, x0 + 12, y0 + 10))])
    evaluator = make_evaluator(red_detector, ["random"], ["deletion", "pointing"], batch_size=6)
    classes = np.zeros((6, 1), np.int32)
    random_maps = evaluator.explainers["random"].run(pixels, classes)
    sizes = [(32, 32)] * 6
    as_mask = evaluator.score_maps(pixels, blurred(pixels), masks[:, None].astype(np.float32), classes,
                                   random_maps.probabilities, boxes, sizes)
    baseline = evaluator.score_maps(pixels, blurred(pixels), random_maps.heatmaps, classes,
                                    random_maps.probabilities, boxes, sizes)
    assert np.all(as_mask.values["pointing"] == 1.0)
    assert as_mask.values["deletion"].mean() < baseline.values["deletion"].mean() - 0.05
    assert np.all(as_mask.values["deletion"] < baseline.values["deletion"])


# ---- baselines and the sanity check

def test_baselines_are_fixed_and_model_free(demo_spec):
    from gradcam_cli.explainer import Explainer

    pixels = np.random.default_rng(0).uniform(0, 255, (3, *demo_spec.input_size, 3)).astype(np.float32)
    first = Explainer(demo_spec, "random", batch_size=3).run(pixels).heatmaps
    again = Explainer(demo_spec, "random", batch_size=3).run(pixels[::-1].copy()).heatmaps
    np.testing.assert_array_equal(first, again)  # a fixed seed per batch position, whatever the image
    assert not np.allclose(first[0], first[1])
    compiled_by_xla = Explainer(demo_spec, "random", batch_size=3, xla=True).run(pixels).heatmaps
    np.testing.assert_array_equal(first, compiled_by_xla)
    center = Explainer(demo_spec, "centre", batch_size=3).run(pixels).heatmaps[0, 0]
    peak = np.unravel_index(np.argmax(center), center.shape)
    assert all(abs(p - (s - 1) / 2) <= 0.5 for p, s in zip(peak, center.shape, strict=True))
    np.testing.assert_allclose(center, center[::-1, ::-1], atol=1e-6)


def test_rank_correlation_matches_spearman_with_ties():
    from gradcam_cli.metrics.sanity import rank_correlation

    rng = np.random.default_rng(2)
    first = np.maximum(rng.normal(size=(5, 36)), 0)  # ReLU: many tied zeros
    second = np.maximum(first + rng.normal(scale=0.5, size=first.shape), 0)

    def ranks(values):  # average ranks, one value at a time
        return np.array([np.sum(values < v) + (np.sum(values == v) - 1) / 2 for v in values])

    expected = [np.corrcoef(ranks(a), ranks(b))[0, 1] for a, b in zip(first, second, strict=True)]
    np.testing.assert_allclose(rank_correlation(first, second), expected, atol=1e-10)
    assert rank_correlation(np.zeros((1, 9)), first[:1, :9])[0] == 0.0


def test_sanity_reinitialises_the_top_temporarily_and_leaves_global_random_state_alone(demo_spec, keras):
    from gradcam_cli.metrics.sanity import randomized_layers, randomized_weights

    model = demo_spec.model
    assert randomized_layers(model) == ["predictions", "block3_bn2", "block3_conv2", "block3_bn1", "block3_conv1"]
    trained = [layer.get_weights() for layer in model.layers]
    keras.utils.set_random_seed(77)
    expected_next_draw = keras.random.uniform((3,), seed=None).numpy()
    keras.utils.set_random_seed(77)
    with randomized_weights(model):
        inside = {layer.name: layer.get_weights() for layer in model.layers}
        with randomized_weights(model):  # the same seeds: the same fresh values
            again = {layer.name: layer.get_weights() for layer in model.layers}
    np.testing.assert_array_equal(keras.random.uniform((3,), seed=None).numpy(), expected_next_draw)
    for layer, before in zip(model.layers, trained, strict=True):
        for now, old in zip(layer.get_weights(), before, strict=True):
            np.testing.assert_array_equal(now, old)  # restored
    assert not np.allclose(inside["block3_conv2"][0], trained[[layer.name for layer in model.layers].index("block3_conv2")][0])
    np.testing.assert_array_equal(inside["block3_conv2"][0], again["block3_conv2"][0])
    np.testing.assert_array_equal(inside["block2_conv2"][0], model.get_layer("block2_conv2").get_weights()[0])
    beta = inside["block3_bn2"][1]
    np.testing.assert_array_equal(beta, np.zeros_like(beta))  # beta: its own initializer, zeros


# ---- summaries and the gate

def test_bootstrap_interval_brackets_the_mean_and_is_reproducible():
    from gradcam_cli.metrics.summary import summarize

    values = list(np.random.default_rng(1).random(50))
    summary = summarize(values)
    assert summary["n"] == 50 and summary["ci95"][0] < summary["mean"] < summary["ci95"][1]
    assert summarize(values) == summary
    assert summarize([0.3]) == {"mean": 0.3, "ci95": [0.3, 0.3], "n": 1}
    assert summarize([None])["n"] == 0


def test_gate_parsing_and_directions():
    from gradcam_cli.errors import EvaluationError
    from gradcam_cli.methods import canonical_name
    from gradcam_cli.metrics.summary import check_gates, parse_gate

    gates = [parse_gate("insertion:gradcampp=0.6", canonical_name), parse_gate("deletion=0.2", canonical_name)]
    assert gates[0].method == "gradcam++"
    summaries = {"gradcam++": {"insertion": {"mean": 0.5}, "deletion": {"mean": 0.1}},
                 "random": {"insertion": {"mean": 0.1}, "deletion": {"mean": 0.9}}}
    missed = check_gates(gates, summaries, baselines={"random"})
    assert missed == ["insertion:gradcam++=0.6: gradcam++ insertion = 0.500, below 0.6"]
    for bad in ("insertion", "nonsense=1", "insertion=high"):
        with pytest.raises(EvaluationError, match="METRIC"):
            parse_gate(bad, canonical_name)


# ---- the command

@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    output = tmp_path_factory.mktemp("evaluate")
    result = run("evaluate", SHAPES, "--model", "demo", "--methods", "gradcam,random,center", "--steps", STEPS,
                 "--ground-truth", SHAPES / "ground_truth.json", "--sanity", "-o", output, "--report")
    return result, output


def test_evaluate_writes_metrics_curves_and_report(evaluated):
    result, output = evaluated
    assert result.exit_code == 0, result.output
    summary = json.loads((output / "metrics.json").read_text())
    assert summary["metrics"] == ["deletion", "insertion", "drop", "increase", "pointing", "energy"]
    for method in ("gradcam", "random", "center"):
        for metric in summary["metrics"]:
            entry = summary["methods"][method][metric]
            # pointing and energy count apart the maps of a class the image's boxes do not hold
            # (the model's top-1 is wrong on one sample), never as misses
            apart = entry.get("without_class", 0) + entry.get("unannotated", 0)
            assert entry["n"] + apart == 12 and entry["ci95"][0] <= entry["mean"] <= entry["ci95"][1]
        assert len(summary["curves"][method]["deletion"]) == STEPS + 1
    assert summary["sanity"]["random"]["flagged"] and summary["sanity"]["center"]["flagged"]
    assert not summary["sanity"]["gradcam"]["flagged"]
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 36 and {row["ground_truth"] for row in rows} <= {"scored", "without_class"}
    assert sum(row["ground_truth"] == "scored" for row in rows) == sum(
        summary["methods"][m]["pointing"]["n"] for m in ("gradcam", "random", "center"))
    table = [line for line in result.output.splitlines() if line.split()[:1] in (["gradcam"], ["random"], ["center"])]
    ranked = [line.split()[0] for line in table]
    deletion = {m: summary["methods"][m]["deletion"]["mean"] for m in ranked}
    assert ranked == sorted(ranked, key=deletion.get)  # best first by the first metric (deletion: lower)
    from PIL import Image

    assert Image.open(output / "curves.png").size[0] > 600
    page = (output / "index.html").read_text()
    assert "Evaluation: " in page and "curves.png" in page and "flagged" in page
    assert summary["baselines"] == [m for m in summary["ranking"] if m in ("random", "center")]
    assert "<tr><th>gradcam</th>" in page  # the evaluation table marks the baselines, and only them
    for baseline in ("random", "center"):
        assert f"<tr class=baseline><th>{baseline} <small>(baseline)</small></th>" in page


def test_a_rerun_reuses_rows_scored_with_the_same_settings(tmp_path):
    common = ["evaluate", SHAPES / "01_single_cross.png", SHAPES / "05_pair_circle_triangle.png", "--methods",
              "gradcam,center", "--steps", 2, "-q", "-o", tmp_path]
    first = run(*common)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert first.exit_code == 0 and summary["forward_passes"]["explained_images"] == 4
    again = run(*common)
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    assert again.exit_code == 0 and resumed["forward_passes"]["explained_images"] == 0
    assert resumed["methods"] == summary["methods"] and resumed["curves"] == summary["curves"]
    changed = run(*common, "--top-k", 2)  # other targets: scored afresh
    assert changed.exit_code == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["forward_passes"]["explained_images"] == 4
    run(*common, "--top-k", 2, "--overwrite")
    assert json.loads((tmp_path / "metrics.json").read_text())["forward_passes"]["explained_images"] == 4


def test_gate_exit_codes(tmp_path, evaluated):
    # two samples whose Grad-CAM maximum lies on the object and whose random map's does not
    common = ["evaluate", SHAPES / "02_single_square.png", SHAPES / "03_single_triangle.png", "--methods",
              "gradcam,random", "--metrics", "insertion,pointing", "--ground-truth", SHAPES / "ground_truth.json",
              "--steps", 2, "-q"]
    passing = run(*common, "-o", tmp_path / "a", "--fail-under", "pointing:gradcam=0.5")
    assert passing.exit_code == 0, passing.output
    failing = run(*common, "-o", tmp_path / "b", "--fail-under", "insertion:gradcam=1.01", "--fail-under",
                  "pointing=0.9", "--fail-under", "pointing:random=0.9")
    assert failing.exit_code == 5
    missed = [line for line in failing.output.splitlines() if line.startswith("gradcam: fail-under:")]
    assert len(missed) == 2 and "insertion:gradcam=1.01: gradcam insertion" in missed[0]
    assert "pointing:random=0.9: random pointing = 0.000, below 0.9" in missed[1]
    bad_image = tmp_path / "broken.png"
    bad_image.write_bytes(b"not a picture")
    one_bad = run(*common[:3], bad_image, *common[3:], "-o", tmp_path / "c")
    assert one_bad.exit_code == 1 and "broken.png" in one_bad.output
    both = run(*common[:3], bad_image, *common[3:], "-o", tmp_path / "d", "--fail-under", "insertion=1.01")
    assert both.exit_code == 5
    usage = run(*common, "-o", tmp_path / "e", "--fail-under", "insertion>0.5")
    assert usage.exit_code == 2 and "METRIC[:METHOD]=VALUE" in usage.output
    for bad_methods in (",", "gradcam,nonsense"):
        wrong = run("evaluate", SHAPES / "01_single_cross.png", "--methods", bad_methods, "-o", tmp_path / "f")
        assert wrong.exit_code == 2 and "Traceback" not in wrong.output


def test_pointing_without_ground_truth_and_bad_ground_truth_are_usage_errors(tmp_path):
    no_boxes = run("evaluate", SHAPES / "01_single_cross.png", "--metrics", "pointing", "-o", tmp_path)
    assert no_boxes.exit_code == 2 and "--ground-truth" in no_boxes.output
    broken = tmp_path / "gt.json"
    broken.write_text("{not json")
    bad = run("evaluate", SHAPES / "01_single_cross.png", "--ground-truth", broken, "-o", tmp_path)
    assert bad.exit_code == 2 and "gt.json" in bad.output and "Traceback" not in bad.output


def test_coco_and_voc_ground_truth_give_the_project_files_boxes(tmp_path):
    from gradcam_cli.metrics.ground_truth import load_ground_truth

    project = json.loads((SHAPES / "ground_truth.json").read_text())
    names = sorted(project)
    categories = ["circle", "square", "triangle", "star", "cross"]
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(categories)]}
    voc = tmp_path / "voc"
    voc.mkdir()
    for image_id, name in enumerate(names):
        coco["images"].append({"id": image_id, "file_name": name, "width": 256, "height": 256})
        objects = ""
        for obj in project[name]["objects"]:
            x0, y0, x1, y1 = obj["box_xyxy"]
            coco["annotations"].append({"image_id": image_id, "category_id": obj["class_index"] + 1,
                                        "bbox": [x0, y0, x1 - x0, y1 - y0]})
            objects += (f"<object><name>{obj['class']}</name><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
                        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
        (voc / f"{Path(name).stem}.xml").write_text(f"<annotation><filename>{name}</filename>{objects}</annotation>")
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    reference = load_ground_truth(SHAPES / "ground_truth.json")
    for other in (load_ground_truth(tmp_path / "coco.json"), load_ground_truth(voc)):
        for name in names:
            expected = reference.boxes(str(SHAPES / name), name)
            found = other.boxes(str(SHAPES / name), name)
            assert [b.xyxy for b in found] == [b.xyxy for b in expected]
            assert [b.matches(e.class_index, e.label) for b, e in zip(found, expected, strict=True)] == [True] * len(found)


def test_evaluate_help_imports_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from gradcam_cli.cli import cli; "
            "r = CliRunner().invoke(cli, ['evaluate', '--help']); assert r.exit_code == 0, r.output; "
            "print('tensorflow' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"


def test_the_readme_ci_job_passes_on_the_bundled_samples(tmp_path):
    """.ci/evaluate (shown in the README) must pass as shipped: the gate's thresholds hold for the demo model."""
    script = (ROOT / ".ci" / "evaluate").read_text()
    command = script[script.index(".venv/bin/gradcam evaluate"):].replace("\\\n", " ").split()
    assert command[1] == "evaluate" and command.count("--fail-under") >= 3
    arguments = [str(ROOT / a) if a.startswith("sample_images") else a for a in command[1:]]
    arguments[arguments.index("-o") + 1] = str(tmp_path)
    result = run(*arguments)
    assert result.exit_code == 0, result.output
    assert "fail-under" not in result.output


def test_maps_of_a_class_the_image_does_not_hold_are_counted_apart(tmp_path):
    result = run("evaluate", SHAPES / "01_single_cross.png", "--methods", "gradcam", "--metrics", "pointing,energy",
                 "--top-k", 2, "--ground-truth", SHAPES / "ground_truth.json", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    pointing = json.loads((tmp_path / "metrics.json").read_text())["methods"]["gradcam"]["pointing"]
    assert pointing["n"] == 1 and pointing["without_class"] == 1 and pointing["unannotated"] == 0
    assert "counted apart, not as misses: 1 map(s)" in result.output


def test_heads_without_probabilities_are_refused_for_faithfulness_metrics(keras):
    from gradcam_cli.errors import EvaluationError
    from gradcam_cli.models.in_memory import spec_for_model

    inputs = keras.Input((16, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    regression = spec_for_model(keras.Model(inputs, keras.layers.Dense(1, name="value")(features)))
    with pytest.raises(EvaluationError, match="regression"):
        make_evaluator(regression, ["gradcam"], ["deletion"])
