"""The bundled demo: reproducible synthetic world, the trained model, and localization floors.

The model's floors are measured on the four held-out generators (lab.heldout, heldout2,
heldout3 and heldout4), which the model was not trained on (heldout3 chose its stage-2 head); see
docs/demo-model.md, "Measured on five generators".
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from gradcam_cli.decode import model_input
from gradcam_cli.explainer import Explainer
from gradcam_cli.methods import METHODS, method_names
from lab.localization import (
    confusion_matrix,
    score_method,
    source_scenes,
    source_single_objects,
)
from lab.shapes import CLASSES, EXTENT, make_dataset, make_scene

ROOT = Path(__file__).resolve().parents[2]


def test_generator_is_seeded_and_masks_match_objects():
    first = make_scene(np.random.default_rng(5), 96, "same")
    again = make_scene(np.random.default_rng(5), 96, "same")
    np.testing.assert_array_equal(first.image, again.image)
    assert 2 <= len(first.objects) <= 3 and len(set(first.labels)) == 1
    for obj in first.objects:
        assert obj.mask.shape == (96, 96) and obj.mask.sum() >= 8
        x0, y0, x1, y1 = obj.box
        assert obj.mask[y0:y1, x0:x1].sum() == obj.mask.sum()
    masks = np.stack([o.mask for o in first.objects])
    assert masks.sum(axis=0).max() == 1  # objects never overlap
    pair = make_scene(np.random.default_rng(6), 64, "pair")
    assert len(set(pair.labels)) == 2


def test_generator_sizes_stay_in_the_documented_range():
    rng = np.random.default_rng(11)
    extents = []
    for _ in range(60):
        scene = make_scene(rng, 96, "single")
        x0, y0, x1, y1 = scene.objects[0].box
        extents.append(max(x1 - x0, y1 - y0) / 96)
    # masks lose a little to occlusion and the frame; the drawn extent is EXTENT
    assert min(extents) >= EXTENT[0] * 0.4 and max(extents) <= EXTENT[1] * 1.05
    assert np.percentile(extents, 90) > 0.55 and np.percentile(extents, 10) < 0.25


def test_difficulty_zero_is_a_plain_large_filled_shape():
    for seed in range(5):
        scene = make_scene(np.random.default_rng(seed), 96, "single", difficulty=0.0)
        x0, y0, x1, y1 = scene.objects[0].box
        assert max(x1 - x0, y1 - y0) >= 0.2 * 96  # at least 22 % drawn; the frame may cut a little


def test_dataset_targets_are_soft_labels():
    _, targets, scenes = make_dataset(3, 30)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)
    for target, scene in zip(targets, scenes, strict=True):
        assert set(np.nonzero(target)[0]) == set(scene.labels)
    images, same_targets, none = make_dataset(3, 30, with_scenes=False)
    assert none is None and images.shape == (30, 96, 96, 3)
    np.testing.assert_array_equal(same_targets, targets)


def test_cell_targets_follow_the_masks():
    from lab.train import cell_targets

    scene = make_scene(np.random.default_rng(8), 96, "pair")
    cells = cell_targets(scene, 24).astype(np.float32) / 255
    assert cells.shape == (24, 24, len(CLASSES) + 1)
    np.testing.assert_allclose(cells.sum(axis=-1), 1.0, atol=0.02)
    for obj in scene.objects:
        np.testing.assert_allclose(cells[..., obj.label].sum() * 16, obj.mask.sum(), rtol=0.02)


def test_low_resolution_epochs_shrink_pixels_and_cell_targets_and_the_weights_fit_the_shipped_model(keras):
    from lab.train import build_model, build_models, training_batches

    count = 8
    images = np.random.default_rng(0).integers(0, 256, (count, 96, 96, 3), dtype=np.uint8)
    targets = np.eye(len(CLASSES), dtype=np.float32)[np.arange(count) % len(CLASSES)]
    cells = np.zeros((count, 24, 24, len(CLASSES) + 1), np.uint8)
    cells[:, :12, :, 0], cells[:, 12:, :, -1] = 255, 255  # a circle over the top half, background below
    batches = training_batches(images, targets, cells, seed=0, batch_size=4, epoch=3, size=64)
    assert len(batches) == 2  # one epoch of two batches
    pixels, (labels, cover) = batches[0]
    assert pixels.shape == (4, 64, 64, 3) and cover.shape == (4, 16, 16, len(CLASSES) + 1)
    np.testing.assert_allclose(cover.sum(axis=-1), 1.0, atol=1e-5)  # still a distribution per cell
    assert cover[..., 0].sum() == pytest.approx(4 * 16 * 8, rel=1e-5)  # half the cells, whatever the symmetry
    # the same batch for the same (seed, epoch, batch), another order in another epoch
    np.testing.assert_array_equal(batches[1][0], training_batches(images, targets, cells, 0, 4, 3, 64)[1][0])
    first = [set(np.flatnonzero(training_batches(images, targets, cells, 0, 4, epoch, 64)[0][1][0][:, 0]))
             for epoch in range(6)]
    assert len({tuple(sorted(s)) for s in first}) > 1
    any_size, training = build_models(None)
    assert [tuple(o.shape) for o in training(np.zeros((1, 64, 64, 3), np.float32))] == [(1, 5), (1, 16, 16, 6)]
    shipped = build_model(96)
    shipped.set_weights(any_size.get_weights())
    sample = np.random.default_rng(1).random((2, 96, 96, 3)).astype(np.float32)
    np.testing.assert_allclose(shipped(sample).numpy(), any_size(sample).numpy(), atol=1e-5)


def test_confusion_matrix_counts():
    counts = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])


def test_demo_model_is_small_and_labelled(demo_spec):
    assert demo_spec.labels == list(CLASSES)
    assert demo_spec.input_size == (96, 96) and demo_spec.preprocess_name == "scale01"
    assert (ROOT / "gradcam_cli" / "demo" / "shapes_cnn.keras").stat().st_size < 3_000_000
    assert "training" not in " ".join(layer.name for layer in demo_spec.model.layers)  # no training head


def _accuracy(demo_spec, source: str, count: int) -> float:
    images, labels = source_single_objects(source, seed=4242, count=count)
    pixels = np.stack([model_input(image, demo_spec.input_size) for image in images])
    probabilities = demo_spec.model.predict(demo_spec.preprocess(pixels), verbose=0)
    return float(np.mean(probabilities.argmax(1) == labels))


def test_demo_model_classifies_heldout_single_objects(demo_spec):
    assert _accuracy(demo_spec, "heldout", 200) >= HELDOUT_ACCURACY_FLOOR


def test_demo_model_classifies_second_heldout_single_objects(demo_spec):
    assert _accuracy(demo_spec, "heldout2", 200) >= HELDOUT2_ACCURACY_FLOOR


def test_demo_model_classifies_third_heldout_single_objects(demo_spec):
    assert _accuracy(demo_spec, "heldout3", 200) >= HELDOUT3_ACCURACY_FLOOR


def test_demo_model_classifies_fourth_heldout_single_objects(demo_spec):
    assert _accuracy(demo_spec, "heldout4", 200) >= HELDOUT4_ACCURACY_FLOOR


def test_demo_model_classifies_fresh_in_distribution_single_objects(demo_spec):
    assert _accuracy(demo_spec, "in_distribution", 200) >= IN_DISTRIBUTION_ACCURACY_FLOOR


def test_sample_ground_truth_matches_files():
    folder = ROOT / "sample_images" / "shapes"
    truth = json.loads((folder / "ground_truth.json").read_text())
    assert sorted(truth) == sorted(p.name for p in folder.glob("*.png"))
    kinds = [entry["kind"] for entry in truth.values()]
    assert kinds.count("single") == kinds.count("pair") == kinds.count("same") == 4


@functools.cache
def heldout_scenes_of(source: str) -> dict:
    """The fixed held-out scenes the floors below were measured on (40 per kind), drawn once."""
    return source_scenes(source, seed=31337, per_kind=40)


# Floors a little under the figures measured on the held-out generators (docs/demo-model.md and
# benchmarks/localization.json), so that a broken method or model fails while sampling noise on
# 40 images per kind does not.
# Measured on these exact images (seed 4242 / 31337) with the shipped model (stage-2 head): accuracy
# 95.0 % held-out, 90.5 % second, 97.0 % third, 97.0 % fourth held-out, 85.5 % in-distribution;
# held-out, every method: pointing 97.5 %, strict 87.5-90.0 %, two-class 96.3-97.5 % (Score-CAM
# 82.5 %), multi-instance coverage 86.7-93.3 %; Grad-CAM / Grad-CAM++ on the second held-out
# generator: pointing 87.5 %, strict 85.0 / 87.5 %, two-class 88.7 / 90.0 %, multi-instance 74.6 /
# 76.7 %; on the third: pointing 95.0 / 92.5 %, strict 87.5 / 85.0 %, two-class 97.5 %, multi-instance
# 92.5 %; on the fourth: pointing and strict 97.5 %, two-class 98.8 %, multi-instance 84.6 / 86.3 %.
HELDOUT_ACCURACY_FLOOR = 0.92
HELDOUT2_ACCURACY_FLOOR = 0.85
HELDOUT3_ACCURACY_FLOOR = 0.93
HELDOUT4_ACCURACY_FLOOR = 0.93
IN_DISTRIBUTION_ACCURACY_FLOOR = 0.82
FLOORS = {"pointing_game": 0.90, "pointing_game_strict": 0.80, "two_class": 0.90, "multi_instance_coverage": 0.82}
LATER_HELDOUT_FLOORS = {
    "heldout2": {"pointing_game": 0.80, "pointing_game_strict": 0.78, "two_class": 0.83, "multi_instance_coverage": 0.68},
    "heldout3": {"pointing_game": 0.88, "pointing_game_strict": 0.80, "two_class": 0.92, "multi_instance_coverage": 0.88},
    "heldout4": {"pointing_game": 0.92, "pointing_game_strict": 0.92, "two_class": 0.93, "multi_instance_coverage": 0.78},
}
METHOD_FLOORS = {
    ("scorecam", "two_class"): 0.78,  # its channel-masking scores are the least class-specific
    # the first principal component of gradient x activation keeps the class's sign but mixes in what
    # the two objects share: 0.70 on these scenes (2026-12-06), 0.765 on benchmarks/methods.py's
    ("eigengradcam", "two_class"): 0.62, ("segeigencam", "two_class"): 0.62,
}


def _localization(spec, method: str, scenes) -> dict[str, float]:
    """The localization summary of ``method``'s maps for the demo model on ``scenes``."""
    explainer = Explainer(spec, method=method, batch_size=40)

    def explain_fn(images, classes):
        batch = np.stack([model_input(image, spec.input_size) for image in images])
        return explainer.run(batch, classes).heatmaps

    return score_method(explain_fn, scenes).summary()


# Every method but FullGrad, whose map (input gradients and every bias's, at the input's resolution)
# points at 50-54 % on these scenes, below the centre baseline (benchmarks/methods.py, docs/methods.md):
# a floor would only pin a poor figure. The seven methods added on 2026-12-06 were measured on these
# scenes that day (held-out, seed 31337, 40 per kind): pointing 97.5 %, strict 87.5-92.5 %, multi-instance
# 85.8-96 %, two-class 96-97.5 % for the class-specific ones.
FLOORED_METHODS = ("cam", "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "scorecam", "ablationcam",
                   "eigencam", "guided-gradcam", "gradcam-elementwise", "shapleycam", "finercam", "eigengradcam",
                   "segeigencam", "kpcacam", "fem")


@pytest.mark.parametrize("method", [name for name in method_names() if name in FLOORED_METHODS])
def test_methods_localize_heldout_shapes_with_the_demo_model(demo_spec, method):
    summary = _localization(demo_spec, method, heldout_scenes_of("heldout"))
    for metric, floor in FLOORS.items():
        if METHODS[method].class_agnostic and metric == "two_class":  # the same map for A and B
            assert summary[metric] <= 0.6, summary
            continue
        assert summary[metric] >= METHOD_FLOORS.get((method, metric), floor), (method, metric, summary)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
@pytest.mark.parametrize("source", ["heldout2", "heldout3", "heldout4"])
def test_gradcam_localizes_shapes_of_the_later_heldout_generators(demo_spec, request, source, method):
    summary = _localization(demo_spec, method, heldout_scenes_of(source))
    for metric, floor in LATER_HELDOUT_FLOORS[source].items():
        assert summary[metric] >= floor, (source, method, metric, summary)


def test_augmentation_moves_cells_with_pixels_and_keeps_colours_up_to_order():
    from lab.train import augment

    pixels = np.zeros((16, 96, 96, 3), np.uint8)
    pixels[:, 8:28, 60:88] = (200, 40, 10)  # one coloured block on whole cells
    cells = np.zeros((16, 24, 24, len(CLASSES) + 1), np.uint8)
    cells[..., -1] = 255
    cells[:, 2:7, 15:22] = 0
    cells[:, 2:7, 15:22, 2] = 255
    out, cover = augment(np.random.default_rng(3), pixels, cells)
    assert out.dtype == np.float32 and out.max() <= 1.0
    for image, cell in zip(out, cover, strict=True):
        block = cell[..., 2] > 0.5
        shown = np.abs(image - image[0, 0]).sum(axis=-1) > 0.1  # pixels unlike the corner (background)
        np.testing.assert_array_equal(shown.reshape(24, 4, 24, 4).all(axis=(1, 3)), block)
        colour = sorted(np.round(image[shown][0] * 255).astype(int))
        assert colour in (sorted([200, 40, 10]), sorted([55, 215, 245]))  # a channel order, or its negative


def test_a_training_run_consumes_the_same_batches_whatever_the_threads(keras):
    """Two runs of two epochs with two reader threads end with identical weights although Python's
    global random state differs between them: the batches fit consumes depend on the seed alone
    (Keras's default shuffle reorders a PyDataset's batches with that global state)."""
    import random

    from lab.train import fit_epochs

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    targets = np.eye(len(CLASSES), dtype=np.float32)[rng.integers(0, len(CLASSES), 64)]
    cells = rng.integers(1, 256, (64, 4, 4, len(CLASSES) + 1), dtype=np.uint8)

    keras.utils.set_random_seed(1)
    inputs = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(8, 4, strides=4)(inputs)
    labels = keras.layers.Dense(len(CLASSES), activation="softmax")(keras.layers.GlobalAveragePooling2D()(features))
    cover = keras.layers.Conv2D(len(CLASSES) + 1, 1, activation="softmax")(features)
    model = keras.Model(inputs, [labels, cover])
    initial = model.get_weights()

    def run(other_code_state: int):
        model.set_weights(initial)
        model.compile(keras.optimizers.SGD(0.1), loss=["categorical_crossentropy", "categorical_crossentropy"])
        random.seed(other_code_state)  # as if other code had drawn from Python's generator
        fit_epochs(model, images, targets, cells, seed=3, batch_size=4, sizes=[16, 16], workers=2)
        return model.get_weights()

    for first, second in zip(run(0), run(1), strict=True):
        np.testing.assert_array_equal(first, second)


def test_stage_two_retrains_the_evidence_head_on_the_frozen_backbone(keras):
    from lab.train import (
        BACKBONE_OUTPUT,
        HEAD_LAYERS,
        _evidence_head,
        build_model,
        generate,
        retrain_head,
    )

    keras.utils.set_random_seed(2)
    model = build_model(96, width=0.25)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}
    validation = generate(99, 16, workers=1, difficulty=(1.0, 1.0))[:2]
    lines = []
    grafted, record = retrain_head(model, seed=5, images=64, epochs=1, workers=1, validation=validation,
                                   log=lines.append)
    names = [layer.name for layer in model.layers]
    backbone = names[:names.index(BACKBONE_OUTPUT) + 1]
    for name in backbone:  # frozen: the weights from before the call
        for old, new in zip(before[name], grafted.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(old, new)
    assert [layer.name for layer in grafted.layers] == backbone + list(HEAD_LAYERS)  # no training head
    # the head trained: its Dense weights moved away from the ones a fresh head with the same seed starts with
    keras.utils.set_random_seed(5)
    inputs = keras.Input(model.get_layer(BACKBONE_OUTPUT).output.shape[1:])
    fresh = keras.Model(inputs, _evidence_head(inputs, model.get_layer("block3_conv2").filters, len(CLASSES))[0])
    assert not np.allclose(fresh.get_layer("predictions").get_weights()[0], grafted.get_layer("predictions").get_weights()[0])
    # and the grafted model is that head on the backbone's output
    sample = np.random.default_rng(0).random((2, 96, 96, 3)).astype(np.float32)
    features = keras.Model(model.inputs, model.get_layer(BACKBONE_OUTPUT).output)(sample)
    x = features
    for name in HEAD_LAYERS:
        x = grafted.get_layer(name)(x)
    np.testing.assert_allclose(grafted(sample).numpy(), np.asarray(x), atol=1e-6)
    assert record["images"] == 64 and record["seed"] == 12 and 0.0 <= record["validation_accuracy"] <= 1.0
    assert any("stage 2 epoch 1/1" in line for line in lines)


def test_head_only_refuses_to_overwrite_the_model_it_reads(tmp_path, capsys):
    from lab.train import DEMO_MODEL, main

    with pytest.raises(SystemExit) as stop:
        main(["--head-only", "--out", str(DEMO_MODEL.parent)])
    assert stop.value.code == 2 and "pass --out DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--head-only", "--out", str(tmp_path), "--head-images", "0"])
