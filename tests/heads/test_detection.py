"""The detection head (``gradcam_cli/heads/detection.py``) and its boxes (``gradcam_cli/boxes.py``):
the box score against a reference written here, on a tiny detector whose boxes are known, and a
keras-hub RetinaNet with random weights."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.boxes import Detection, non_max_suppression, pairwise_iou, pick_detections
from gradcam_cli.errors import ImageError, UnsupportedModel

SIZE = 32  # the tiny detector's input
CELL = 4  # its anchor grid: one anchor per 4 x 4 cell, 8 x 8 cells
ANCHOR = 16  # each anchor a 16 x 16 box centred on its cell: neighbours overlap by IoU 0.6, diagonals by 0.39
SQUARE = (8, 16)  # the bright square's rows and columns, in pixels: cells 2 and 3 of each axis


def _iou_reference(box, others):
    """IoU of one yxyx box with each of ``others`` (N, 4), in plain numpy, corner by corner."""
    results = []
    for other in others:
        height = min(box[2], other[2]) - max(box[0], other[0])
        width = min(box[3], other[3]) - max(box[1], other[1])
        overlap = max(height, 0) * max(width, 0)
        union = (box[2] - box[0]) * (box[3] - box[1]) + (other[2] - other[0]) * (other[3] - other[1]) - overlap
        results.append(overlap / union if union > 0 else 0.0)
    return np.asarray(results)


def _anchor_centres():
    centres = (np.arange(SIZE // CELL) + 0.5) * CELL
    rows, columns = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([rows.ravel(), columns.ravel()], axis=-1).astype(np.float32)  # (64, 2), row-major


def grid_boxes_layer(keras):
    """A weightless layer adding each cell's anchor box to the predicted (B, 64, 4) offsets."""

    @keras.saving.register_keras_serializable(package="gradcam_tests")
    class GridBoxes(keras.layers.Layer):
        def call(self, offsets):
            centres = keras.ops.convert_to_tensor(_anchor_centres())
            half = ANCHOR / 2
            anchors = keras.ops.concatenate([centres - half, centres + half], axis=-1)  # yxyx
            return offsets + anchors[None]

    return GridBoxes


def tiny_detector(keras, seed: int = 3):
    """A 32 x 32 detector of bright squares: a 'features' map (8 x 8 x 2: each cell's brightness and
    darkness), a sigmoid class score per cell (high where the cell is bright), and a box per cell,
    its anchor plus small offsets (random, seeded, so the boxes move with the picture and the IoU
    term has a gradient). Returns the detector and a twin that also outputs the features map."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    features = keras.layers.Conv2D(2, CELL, strides=CELL, activation="relu", name="features")(inputs)
    scores = keras.layers.Conv2D(1, 1, activation="sigmoid", name="class_conv")(features)
    offsets = keras.layers.Conv2D(4, 1, name="box_conv")(features)
    boxes = grid_boxes_layer(keras)(name="boxes")(keras.layers.Reshape((-1, 4), name="box_cells")(offsets))
    classes = keras.layers.Reshape((-1, 1), name="scores")(scores)
    detector = keras.Model(inputs, [boxes, classes], name="tiny_detector")
    brightness = np.full((CELL, CELL, 3, 1), 1.0 / (CELL * CELL * 3 * 255), np.float32)
    detector.get_layer("features").set_weights([np.concatenate([brightness, -brightness], axis=-1),
                                                np.array([0.0, 1.0], np.float32)])
    detector.get_layer("class_conv").set_weights([np.array([[[[12.0], [0.0]]]], np.float32), np.array([-6.0], np.float32)])
    kernel = keras.random.normal((1, 1, 2, 4), stddev=1.0, seed=seed)
    detector.get_layer("box_conv").set_weights([np.asarray(kernel), np.zeros(4, np.float32)])
    twin = keras.Model(inputs, [features, boxes, classes], name="tiny_detector_twin")
    return detector, twin


def square_picture(value: int = 255) -> np.ndarray:
    picture = np.zeros((SIZE, SIZE, 3), np.uint8)
    start, end = SQUARE
    picture[start:end, start:end] = value
    return picture


@pytest.fixture(scope="module")
def detector(keras):
    return tiny_detector(keras)


def test_iou_matches_a_plain_reference_on_overlapping_and_disjoint_boxes():
    kept = np.array([[[8.0, 8.0, 24.0, 24.0]]])
    others = np.array([[[8.0, 12.0, 24.0, 28.0],   # shifted 4 px: IoU 0.6
                        [12.0, 12.0, 28.0, 28.0],  # diagonal: IoU 144/368
                        [30.0, 30.0, 40.0, 40.0],  # disjoint: 0
                        [8.0, 8.0, 24.0, 24.0],    # the same box: 1
                        [10.0, 10.0, 10.0, 20.0]]])  # no area: 0
    assert np.allclose(pairwise_iou(others, kept)[0, 0], _iou_reference(kept[0, 0], others[0]))
    assert np.allclose(pairwise_iou(others, kept)[0, 0, :4], [0.6, 144 / 368, 0.0, 1.0])


def test_box_score_sums_class_probability_times_iou_over_matching_anchors_only(detector):
    """Anchors at IoU 0.6 and 1 count, weighted by IoU; the diagonal one (0.39) and a disjoint one
    do not, however sure they are of the class; the class read is the kept box's."""
    import keras

    from gradcam_cli.models import resolve_model

    head = resolve_model(detector[0], task="detect").head
    boxes = np.array([[8, 8, 24, 24], [8, 12, 24, 28], [12, 12, 28, 28], [30, 30, 40, 40]], np.float32)
    probabilities = np.array([[0.9, 0.1], [0.5, 0.7], [0.99, 0.2], [1.0, 0.3]], np.float32)
    raw = np.concatenate([boxes, probabilities], axis=-1)[None]  # (1, A=4, 4 + C=2)
    two_class = type(head)(**{**head.__dict__, "units": 2})
    kept = np.array([[[8, 8, 24, 24, 0, 0.9], [8, 8, 24, 24, 1, 0.9]]], np.float32)
    scores = keras.ops.convert_to_numpy(two_class.scores(raw, kept))[0]
    overlap = _iou_reference(kept[0, 0, :4], boxes)
    expected = [float(np.sum(np.where(overlap >= 0.5, overlap * probabilities[:, c], 0.0))) for c in (0, 1)]
    assert np.allclose(scores, expected) and np.isclose(expected[0], 0.9 * 1 + 0.5 * 0.6)


def test_tiny_detector_finds_the_bright_square_and_nothing_on_black(keras, detector):
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models import resolve_model

    explainer = Explainer(resolve_model(detector[0], task="detect"), batch_size=2)
    assert explainer.target.path == "features"  # the per-cell convolutions are the head's own
    found = explainer.detect(np.stack([square_picture(), np.zeros((SIZE, SIZE, 3), np.uint8)]))
    start, end = SQUARE
    assert found[0] and found[0][0].score > 0.99
    top, left, bottom, right = found[0][0].box
    assert start <= (top + bottom) / 2 <= end and start <= (left + right) / 2 <= end
    assert all(d.score < 0.01 for d in found[1])
    with pytest.raises(ImageError, match="no detection scores min_score=0.5 or more"):
        pick_detections(found[1], "black.png", 0.5)


@pytest.mark.slow
def test_explained_box_map_equals_a_gradient_tape_reference(keras, detector):
    """Grad-CAM at 'features' of the box score, against the same score written here with TensorFlow
    (the IoU a fixed weight, as the head's docstring says)."""
    import tensorflow as tf

    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models import resolve_model

    model, twin = detector
    explainer = Explainer(resolve_model(model, task="detect"), batch_size=1)
    picture = square_picture()[None].astype(np.float32)
    kept = pick_detections(explainer.detect(picture)[0], "square", 0.5)
    result = explainer.run(picture, boxes=[kept])
    assert result.heatmaps.shape == (1, len(kept), 8, 8) and list(result.class_ids[0]) == [0] * len(kept)
    for slot, box in enumerate(kept):
        with tf.GradientTape() as tape:
            features, boxes, probabilities = twin(tf.constant(picture))
            tape.watch(features)
            target = tf.constant(box.box, tf.float32)
            height = tf.nn.relu(tf.minimum(boxes[0, :, 2], target[2]) - tf.maximum(boxes[0, :, 0], target[0]))
            width = tf.nn.relu(tf.minimum(boxes[0, :, 3], target[3]) - tf.maximum(boxes[0, :, 1], target[1]))
            overlap = height * width
            areas = (boxes[0, :, 2] - boxes[0, :, 0]) * (boxes[0, :, 3] - boxes[0, :, 1])
            iou = tf.stop_gradient(overlap / (areas + (target[2] - target[0]) * (target[3] - target[1]) - overlap))
            score = tf.reduce_sum(tf.cast(iou >= 0.5, tf.float32) * iou * probabilities[0, :, 0])
        gradient = tape.gradient(score, features)[0].numpy()
        reference = np.maximum(np.sum(gradient.mean(axis=(0, 1)) * features[0].numpy(), axis=-1), 0)
        assert reference.max() > 0
        assert np.allclose(result.heatmaps[0, slot], reference, rtol=1e-4, atol=1e-6)
        assert np.isclose(result.probabilities[0, slot], box.score)


def test_eigencam_explains_a_box_without_gradients(keras, detector):
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models import resolve_model

    explainer = Explainer(resolve_model(detector[0], task="detect"), method="eigencam", batch_size=1)
    picture = square_picture()[None]
    kept = pick_detections(explainer.detect(picture)[0], "square", 0.5, boxes=[0])
    heatmap = explainer.run(picture, boxes=[kept]).heatmaps[0, 0]
    start, end = (value // CELL for value in SQUARE)
    inside = np.zeros(heatmap.shape, bool)
    inside[start:end, start:end] = True
    # the first principal component of (brightness, darkness) separates the square from the rest
    # (its sign follows the channel mean, which is flat here, so only the separation is asserted)
    assert np.ptp(heatmap[inside]) < 1e-5 and np.ptp(heatmap[~inside]) < 1e-5
    assert abs(heatmap[inside].mean() - heatmap[~inside].mean()) > 0.1


def test_non_max_suppression_keeps_the_best_and_drops_its_overlaps():
    boxes = np.array([[0, 0, 16, 16], [0, 4, 16, 20], [4, 4, 20, 20], [40, 40, 50, 50]], np.float32)
    probabilities = np.array([[0.9], [0.8], [0.7], [0.6]], np.float32)
    kept = non_max_suppression(boxes, probabilities, iou_threshold=0.5)
    assert [d.box for d in kept] == [tuple(boxes[0]), tuple(boxes[2]), tuple(boxes[3])]  # box 1: IoU 0.6


def test_pick_detections_numbers_boxes_and_refuses_one_out_of_range():
    found = [Detection((0, 0, 4, 4), 0, 0.9), Detection((0, 0, 8, 8), 1, 0.7), Detection((0, 0, 9, 9), 0, 0.3)]
    assert [d.number for d in pick_detections(found, "a.png", 0.5)] == [0, 1]
    assert [d.class_index for d in pick_detections(found, "a.png", 0.5, boxes=[1])] == [1]
    assert [d.score for d in pick_detections(found, "a.png", 0.2, classes=[0])] == [0.9, 0.3]
    with pytest.raises(ImageError, match=r"a.png: boxes=2 is out of range: 2 detection\(s\)"):
        pick_detections(found, "a.png", 0.5, boxes=[2])


def test_no_box_message_reads_the_best_score_below_min_score_and_blames_an_empty_decoder():
    # the hostile pass: --min-score 1.0 on PNet printed "(the best scores 1.000)" for 0.999998, and
    # --min-score 0.0 with a decoder that kept nothing advised lowering --min-score
    near = [Detection((0, 0, 4, 4), 0, 0.999998)]
    with pytest.raises(ImageError, match=r"a.png: no detection scores min_score=1.0 or more \(the best scores "
                                         r"0.999998\); lower min_score"):
        pick_detections(near, "a.png", 1.0)
    with pytest.raises(ImageError, match=r"the best scores 0.300\)"):  # the best of the classes asked, not 0.9
        pick_detections([Detection((0, 0, 4, 4), 0, 0.9), Detection((0, 0, 8, 8), 1, 0.3)], "a.png", 0.5, classes=[1])
    for found, classes, which in (([], None, ""), (near, [1], " of classes 1")):
        with pytest.raises(ImageError) as error:
            pick_detections(found, "a.png", 0.0, classes=classes)
        message = str(error.value)
        assert message.startswith(f"a.png: the model's decoder kept no box{which} (its own confidence threshold")
        assert "lower min_score" not in message and "\n" not in message


def test_finercam_on_a_detector_is_refused_in_a_sentence(detector):
    from gradcam_cli.errors import MethodError
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models import resolve_model

    with pytest.raises(MethodError) as error:
        Explainer(resolve_model(detector[0], task="detect"), method="finercam")
    assert str(error.value) == ("Finer-CAM compares a class's score with those of other classes, and this model's "
                                "head is an object detector (per-anchor boxes and scores for 1 class), whose score is "
                                "one box's; use method=gradcam.")


def test_detect_task_on_a_classifier_is_refused_in_one_line(gap_dense_model):
    from gradcam_cli.models import resolve_model

    with pytest.raises(UnsupportedModel, match="task=detect needs two outputs") as error:
        _ = resolve_model(gap_dense_model, task="detect").head
    assert "\n" not in str(error.value)


def small_retinanet(keras, size: int = 64, classes: int = 3):
    """A keras-hub RetinaNet with random weights at ``size`` px (levels P3-P4 of a two-stage ResNet),
    its decoder keeping boxes from 0.01. Its box offsets are zeroed, so its boxes are its anchors."""
    import keras_hub
    from keras_hub.layers import NonMaxSuppression

    keras.utils.set_random_seed(5)
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16, 16],
        stackwise_num_blocks=[1, 1, 1], stackwise_num_strides=[1, 2, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(size, size, 3))
    backbone = keras_hub.models.RetinaNetBackbone(image_encoder=encoder, min_level=3, max_level=4, use_p5=False,
                                                  image_shape=(size, size, 3))
    detector = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=classes, pre_logits_num_conv_layers=1,
        prediction_decoder=NonMaxSuppression(bounding_box_format="yxyx", from_logits=True,
                                             confidence_threshold=0.01, max_detections=5))
    for weight in detector.box_head.prediction_layer.weights:
        weight.assign(np.zeros(weight.shape, np.float32))
    return detector


@pytest.mark.slow
def test_keras_hub_retinanet_is_a_detector_by_itself(keras):
    pytest.importorskip("keras_hub")
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models import resolve_model

    detector = small_retinanet(keras)
    spec = resolve_model(detector, preprocess="scale01")
    explainer = Explainer(spec, batch_size=2)
    assert spec.head.kind == "detection" and explainer.target.path.endswith("stack1_block0_out")
    assert explainer.target.output_shape[1:3] == (8, 8)  # P3: stride 8
    pictures = np.stack([square_picture(), square_picture(128)]).repeat(2, axis=1).repeat(2, axis=2)
    found = explainer.detect(pictures)
    kept = [pick_detections(boxes, f"image {i}", 0.0, boxes=[0]) for i, boxes in enumerate(found)]
    anchors = keras.ops.convert_to_numpy(spec.head.anchor_boxes(np.zeros((1, spec.head.anchors.shape[0], 7))))[0]
    assert any(np.allclose(kept[0][0].box, anchor, atol=1e-3) for anchor in anchors)  # zero offsets: an anchor
    result = explainer.run(pictures, boxes=kept)
    assert result.heatmaps.shape == (2, 1, 8, 8) and np.isfinite(result.heatmaps).all()
    assert np.allclose(result.probabilities[:, 0], [boxes[0].score for boxes in kept])


@pytest.mark.slow
def test_a_kept_boxs_score_on_the_unaltered_image_is_the_decoders_score(keras, detector):
    """What evaluate reads on a perturbed copy (DetectionHead.copy_scores) starts where the run's row
    does: on the unaltered image, each kept box's own score, for the tool's suppression (the tiny
    detector) and for a keras-hub decoder (a RetinaNet whose box offsets are not zero, so its boxes
    are decoded, not its anchors)."""
    pytest.importorskip("keras_hub")
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models import resolve_model

    retinanet = small_retinanet(keras)
    for weight in retinanet.box_head.prediction_layer.weights:
        weight.assign(np.random.default_rng(0).normal(0, 0.05, weight.shape).astype(np.float32))
    for spec, picture in ((resolve_model(detector[0], task="detect"), square_picture()),
                          (resolve_model(retinanet, preprocess="scale01"), square_picture().repeat(2, 0).repeat(2, 1))):
        explainer = Explainer(spec, batch_size=1)
        pixels = picture[None].astype(np.float32)
        found = pick_detections(explainer.detect(pixels)[0], "square", 0.5 if spec.head.anchors is None else 0.0)
        assert len(found) >= 2
        raw = np.asarray(explainer.probe.logits(spec.preprocess(pixels.copy())))
        kept = np.array([box.target() for box in found], np.float32)
        scores = keras.ops.convert_to_numpy(spec.head.copy_scores(np.repeat(raw, len(found), axis=0), kept))
        assert np.allclose(scores, [box.score for box in found], atol=1e-5)
