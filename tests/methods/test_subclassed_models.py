"""Every method on two subclassed ``keras.Model``s (layers made in ``__init__``, chained in ``call()``;
no symbolic graph, so the tool reads them from a traced call, gradcam_cli/trace.py): a classifier
(a nested Sequential conv block, conv + ReLU, GAP, Dense softmax) and a per-pixel segmenter (nested
Sequential encoder and decoder, a 1x1 softmax classifier over 3 classes).

The references call the model's own layers BY HAND (never the tool's probe, trace or hooks), take
the gradients with ``tf.GradientTape`` and apply each method's formula in numpy (float64), from the
method docstrings in gradcam_cli/methods/."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.errors import MethodError
from gradcam_cli.explainer import Explainer
from gradcam_cli.methods import BASELINES, METHODS
from gradcam_cli.models.in_memory import spec_for_model
from tests.references import (
    close,
    finer_comparisons,
    numpy_elementwise_gradcam,
    numpy_fem,
    numpy_first_component,
    numpy_kpca,
    numpy_seg_eigen,
)

CLASSIFIER_SIZE = 28  # c1 -> 26, pool -> 13, c2 -> 11, conv -> 9: the target map is 9x9x10
SEGMENTER_SIZE = 24
CLASSIFIER_CLASSES = (1, 0)  # two targets per image, in this order (class 3 gives all-zero maps here)
SEGMENTER_CLASSES = 3


def _classifier(keras):
    layers = keras.layers

    class Classifier(keras.Model):
        def __init__(self):
            super().__init__(name="sub_classifier")
            self.block = keras.Sequential([layers.Rescaling(1 / 255, name="scale"),
                                           layers.Conv2D(6, 3, activation="relu", name="c1"),
                                           layers.MaxPooling2D(name="down"),
                                           layers.Conv2D(8, 3, activation="relu", name="c2")], name="block")
            self.conv = layers.Conv2D(10, 3, name="conv")
            self.conv_act = layers.ReLU(name="conv_act")
            self.pool = layers.GlobalAveragePooling2D(name="pool")
            self.head_dense = layers.Dense(4, activation="softmax", name="head_dense")

        def call(self, x):
            return self.head_dense(self.pool(self.conv_act(self.conv(self.block(x)))))

    return Classifier()


def _segmenter(keras):
    layers = keras.layers

    class Segmenter(keras.Model):
        def __init__(self):
            super().__init__(name="sub_segmenter")
            self.encoder = keras.Sequential([layers.Rescaling(1 / 255, name="scale"),
                                             layers.Conv2D(6, 3, padding="same", activation="relu", name="e1"),
                                             layers.MaxPooling2D(name="down"),
                                             layers.Conv2D(8, 3, padding="same", activation="relu", name="e2")],
                                            name="encoder")
            self.decoder = keras.Sequential([layers.UpSampling2D(name="up"),
                                             layers.Conv2D(8, 3, padding="same", activation="relu", name="d1")],
                                            name="decoder")
            self.classifier = layers.Conv2D(SEGMENTER_CLASSES, 1, activation="softmax", name="classifier")

        def call(self, x):
            return self.classifier(self.decoder(self.encoder(x)))

    return Segmenter()


# ---- the references: the model's layers called by hand

def _guided(tensor):
    """Guided backpropagation's rule after a ReLU: only positive incoming gradients pass."""
    import tensorflow as tf

    @tf.custom_gradient
    def guided(x):
        return tf.identity(x), lambda upstream: tf.nn.relu(upstream)

    return guided(tensor)


def _is_relu(layer, keras) -> bool:
    return isinstance(layer, keras.layers.ReLU) or getattr(getattr(layer, "activation", None), "__name__", "") == "relu"


class HandReference:
    """``features(x)``: the target layer's map; ``raw(a)``: the pre-softmax output from that map;
    ``score(raw, c)``: (B,) the class score the methods explain (the logit; for the segmenter the sum
    of the class's logits over the pixels predicted as it in the unperturbed images, kept fixed)."""

    def __init__(self, keras, model, images, features, raw, feature_layers, segmentation):
        import tensorflow as tf

        self.keras, self.model, self.images = keras, model, images
        self._features, self._raw = features, raw
        self._feature_layers = feature_layers
        self.segmentation = segmentation
        self.a_tf = tf.constant(features(tf.constant(images)))
        self.a = self.a_tf.numpy().astype(np.float64)
        raw0 = raw(self.a_tf).numpy()
        # regions: pixels predicted as each class (argmax of the pre-softmax output), fixed
        self.regions = (np.eye(raw0.shape[-1])[raw0.argmax(-1)] if segmentation else None)

    def score(self, raw, class_index):
        import tensorflow as tf

        if not self.segmentation:
            return raw[:, class_index]
        region = tf.constant(self.regions[..., class_index], raw.dtype)
        return tf.reduce_sum(raw[..., class_index] * region, axis=(1, 2))

    def score_of_features(self, a, class_index) -> np.ndarray:
        import tensorflow as tf

        return self.score(self._raw(tf.constant(a, tf.float32)), class_index).numpy().astype(np.float64)

    def score_of_images(self, images, class_index) -> np.ndarray:
        import tensorflow as tf

        return self.score(self._raw(self._features(tf.constant(images, tf.float32))), class_index).numpy()

    def gradients(self, class_index) -> np.ndarray:
        import tensorflow as tf

        a = tf.constant(self.a_tf)
        with tf.GradientTape() as tape:
            tape.watch(a)
            total = tf.reduce_sum(self.score(self._raw(a), class_index))
        return tape.gradient(total, a).numpy().astype(np.float64)

    def guided_backprop(self, class_index) -> np.ndarray:
        """d score / d image with every ReLU's output passed through :func:`_guided`."""
        import tensorflow as tf

        x = tf.constant(self.images)
        with tf.GradientTape() as tape:
            tape.watch(x)
            h = x
            for layer in self._feature_layers:
                h = layer(h)
                if _is_relu(layer, self.keras):
                    h = _guided(h)
            total = tf.reduce_sum(self.score(self._raw(h), class_index))
        return tape.gradient(total, x).numpy().astype(np.float64)


def _dense_logits(model):
    import tensorflow as tf

    def raw(a):
        return tf.matmul(model.pool(a), model.head_dense.kernel) + model.head_dense.bias  # softmax dropped
    return raw


def _pixel_logits(model):
    import tensorflow as tf

    def raw(a):  # the 1x1 classifier by hand, softmax dropped
        return tf.einsum("bhwk,kc->bhwc", a, model.classifier.kernel[0, 0]) + model.classifier.bias
    return raw


@pytest.fixture(scope="module")
def classifier_case(keras):
    keras.utils.set_random_seed(32)
    model = _classifier(keras)
    images = np.random.default_rng(32).uniform(0, 255, (3, CLASSIFIER_SIZE, CLASSIFIER_SIZE, 3)).astype(np.float32)
    model(images[:1])  # built: spec_for_model reads the input size from this call
    # a confident head (logits of a few units, not a few hundredths): Score-CAM's softmax over the
    # channel scores then weighs channels unevenly (max weight 0.4-0.9), so the scores matter
    kernel, bias = model.head_dense.get_weights()
    model.head_dense.set_weights([kernel * 100, bias])

    def features(x):
        return model.conv_act(model.conv(model.block(x)))

    feature_layers = [*model.block.layers, model.conv, model.conv_act]
    ref = HandReference(keras, model, images, features, _dense_logits(model), feature_layers, False)
    return model, images, ref


@pytest.fixture(scope="module")
def segmenter_case(keras):
    keras.utils.set_random_seed(33)
    model = _segmenter(keras)
    images = np.random.default_rng(33).uniform(0, 255, (2, SEGMENTER_SIZE, SEGMENTER_SIZE, 3)).astype(np.float32)
    model(images[:1])

    def features(x):
        return model.decoder(model.encoder(x))

    feature_layers = [*model.encoder.layers, *model.decoder.layers]
    ref = HandReference(keras, model, images, features, _pixel_logits(model), feature_layers, True)
    # the class explained: the smallest region of at least 20 pixels in every image (a region that
    # covers most of the image would score almost as the whole image does)
    counts = ref.regions.sum(axis=(1, 2)).min(axis=0)  # (C,)
    class_index = int(np.where(counts >= 20, counts, np.inf).argmin())
    assert 20 <= counts[class_index] <= 0.5 * SEGMENTER_SIZE**2, counts
    return model, images, ref, class_index


# ---- each method's formula in numpy (from gradcam_cli/methods/*.py docstrings)

def relu(x):
    return np.maximum(x, 0)


def weighted_sum(a, weights):
    return relu(np.einsum("bhwk,bk->bhw", a, weights))


def bilinear_upsample(maps, size):
    """(B, h, w, k) -> (B, H, W, k), bilinear with half-pixel centres and edge clamping (what
    ``tf.image.resize(..., 'bilinear')`` does), written out as two interpolation matrices."""

    def matrix(n_in, n_out):
        position = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        fraction = position - low
        out = np.zeros((n_out, n_in))
        np.add.at(out, (np.arange(n_out), low), 1 - fraction)
        np.add.at(out, (np.arange(n_out), high), fraction)
        return out

    return np.einsum("Yy,byxk,Xx->bYXk", matrix(maps.shape[1], size[0]), maps, matrix(maps.shape[2], size[1]))


def ref_gradcam(ref, c):
    return weighted_sum(ref.a, ref.gradients(c).mean(axis=(1, 2)))


def ref_gradcam_pp(ref, c):
    a, g = ref.a, ref.gradients(c)
    denominator = 2 * g**2 + a.sum(axis=(1, 2), keepdims=True) * g**3
    alpha = np.divide(g**2, denominator, out=np.zeros_like(g), where=denominator != 0)
    return weighted_sum(a, (alpha * relu(g)).sum(axis=(1, 2)))


def ref_xgradcam(ref, c):
    a, g = ref.a, ref.gradients(c)
    sums = a.sum(axis=(1, 2))
    return weighted_sum(a, np.divide((a * g).sum(axis=(1, 2)), sums, out=np.zeros_like(sums), where=sums != 0))


def ref_hirescam(ref, c):
    return relu((ref.gradients(c) * ref.a).sum(-1))


def ref_layercam(ref, c):
    return relu((relu(ref.gradients(c)) * ref.a).sum(-1))


def ref_eigencam(ref, c):
    maps = []
    for sample in ref.a:
        flat = sample.reshape(-1, sample.shape[-1])
        centred = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        projection = centred @ vt[0]
        if projection @ flat.mean(axis=1) < 0:  # sign: correlates positively with the channel mean
            projection = -projection
        maps.append(projection.reshape(sample.shape[:2]))
    return np.stack(maps)  # no ReLU


def ref_scorecam(ref, c):
    images = ref.images.astype(np.float64)
    upsampled = bilinear_upsample(ref.a, images.shape[1:3])
    low = upsampled.min(axis=(1, 2), keepdims=True)
    high = upsampled.max(axis=(1, 2), keepdims=True)
    masks = np.divide(upsampled - low, high - low, out=np.zeros_like(upsampled), where=high > low)
    scores = np.stack([ref.score_of_images((images * masks[..., k:k + 1]).astype(np.float32), c)
                       for k in range(ref.a.shape[-1])], axis=1).astype(np.float64)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return weighted_sum(ref.a, weights / weights.sum(axis=1, keepdims=True))


def ref_ablationcam(ref, c):
    base = ref.score_of_features(ref.a, c)
    drops = []
    for k in range(ref.a.shape[-1]):
        ablated = ref.a.copy()
        ablated[..., k] = 0
        drops.append(base - ref.score_of_features(ablated, c))
    return weighted_sum(ref.a, np.stack(drops, axis=1) / np.abs(base)[:, None])


def ref_cam(ref, c):
    kernel = ref.model.head_dense.kernel.numpy().astype(np.float64)  # the Dense weights of class c
    return weighted_sum(ref.a, np.repeat(kernel[None, :, c], len(ref.a), axis=0))


def ref_gradcam_elementwise(ref, c):
    return numpy_elementwise_gradcam(ref.a, ref.gradients(c))


def ref_shapleycam(ref, c, step=1e-2):
    """``H A`` by central differences of the gradient at the map scaled by ``1 +- step``."""
    import tensorflow as tf

    def gradient(scale):
        a = tf.constant(ref.a_tf * scale)
        with tf.GradientTape() as tape:
            tape.watch(a)
            total = tf.reduce_sum(ref.score(ref._raw(a), c))
        return tape.gradient(total, a).numpy().astype(np.float64)

    products = (gradient(1 + step) - gradient(1 - step)) / (2 * step)
    return weighted_sum(ref.a, (ref.gradients(c) - 0.5 * products).mean(axis=(1, 2)))


def ref_finercam(ref, c):
    classes = int(ref._raw(ref.a_tf).shape[-1])
    logits = np.stack([ref.score_of_features(ref.a, j) for j in range(classes)], axis=1)
    picked, weights = finer_comparisons(logits, c, 3)
    gradients = np.stack([ref.gradients(j) for j in range(classes)], axis=1)  # (B, C, h, w, k)
    rivals = np.einsum("bn,bnhwk->bhwk", weights, np.take_along_axis(gradients, picked[..., None, None, None], 1))
    return weighted_sum(ref.a, (ref.gradients(c) - rivals).mean(axis=(1, 2)))


REFERENCES = {
    "cam": ref_cam,
    "gradcam": ref_gradcam,
    "gradcam++": ref_gradcam_pp,
    "xgradcam": ref_xgradcam,
    "hirescam": ref_hirescam,
    "layercam": ref_layercam,
    "scorecam": ref_scorecam,
    "ablationcam": ref_ablationcam,
    "eigencam": ref_eigencam,
    "guided-gradcam": ref_gradcam,  # its heatmap is Grad-CAM's; the saliency is checked separately
    "gradcam-elementwise": ref_gradcam_elementwise,
    "shapleycam": ref_shapleycam,
    "finercam": ref_finercam,
    "eigengradcam": lambda ref, c: numpy_first_component(ref.gradients(c) * ref.a),
    "segeigencam": lambda ref, c: numpy_seg_eigen(ref.a, ref.gradients(c)),
    "kpcacam": lambda ref, c: numpy_kpca(ref.a),
    "fem": lambda ref, c: numpy_fem(ref.a),
}
# FullGrad's map is at the input's resolution and ignores the target layer: tests/methods/test_fullgrad.py
# checks it on a subclassed model against its own hand reference
INPUT_RESOLUTION = {"fullgrad"}
RTOL = {"ablationcam": 5e-3, "scorecam": 5e-3}  # score differences of float32 forward passes
# CAM needs a conv -> GlobalAveragePooling2D -> Dense head: the segmenter is checked to refuse it
SEGMENTER_METHODS = sorted(set(METHODS) - {"cam"} - INPUT_RESOLUTION)


def test_every_listed_method_has_a_reference():
    # the baselines (random, center) read neither model nor image: nothing to compare with a reference
    assert set(REFERENCES) | INPUT_RESOLUTION == set(METHODS)
    assert not set(BASELINES) & set(METHODS)


def _run(model, images, method, classes, layer=None):
    explainer = Explainer(spec_for_model(model), method=method, layer=layer, batch_size=len(images))
    return explainer, explainer.run(images, classes=list(classes))


# ---- the classifier

def test_classifier_automatic_layer_is_the_last_map_before_the_head(classifier_case):
    model, _, _ = classifier_case
    explainer = Explainer(spec_for_model(model), method="gradcam", layer=None, batch_size=3)
    assert explainer.target.path == "conv_act"
    assert explainer.target.layer is model.conv_act
    assert tuple(explainer.target.output_shape) == (None, 9, 9, 10)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(set(METHODS) - INPUT_RESOLUTION))
def test_classifier_method_matches_the_hand_reference(classifier_case, method):
    model, images, ref = classifier_case
    explainer, result = _run(model, images, method, CLASSIFIER_CLASSES)
    assert explainer.target.path == "conv_act"
    np.testing.assert_array_equal(result.class_ids, np.tile(CLASSIFIER_CLASSES, (len(images), 1)))
    assert result.heatmaps.shape == (len(images), 2, 9, 9)
    for t, class_index in enumerate(CLASSIFIER_CLASSES):
        expected = REFERENCES[method](ref, class_index)
        assert (np.abs(expected).max(axis=(1, 2)) > 0).all(), f"{method}: a flat reference map"
        close(result.heatmaps[:, t], expected, rtol=RTOL.get(method, 2e-3))


def test_classifier_guided_gradcam_saliency_is_guided_backprop_times_the_upsampled_map(classifier_case):
    model, images, ref = classifier_case
    _, result = _run(model, images, "guided-gradcam", CLASSIFIER_CLASSES[:1])
    c = CLASSIFIER_CLASSES[0]
    upsampled = bilinear_upsample(ref_gradcam(ref, c)[..., None], images.shape[1:3])
    expected = ref.guided_backprop(c) * upsampled
    assert result.saliency.shape == (len(images), 1, *images.shape[1:])
    close(result.saliency[:, 0], expected)


# ---- the segmenter

def test_segmenter_automatic_layer_is_the_one_before_the_per_pixel_classifier(segmenter_case):
    model, _, _, _ = segmenter_case
    explainer = Explainer(spec_for_model(model), method="gradcam", layer=None, batch_size=2)
    assert explainer.target.path == "decoder/d1"
    assert explainer.target.layer is model.decoder.get_layer("d1")


@pytest.mark.slow
@pytest.mark.parametrize("method", SEGMENTER_METHODS)
def test_segmenter_method_matches_the_hand_reference(segmenter_case, method):
    model, images, ref, class_index = segmenter_case
    explainer, result = _run(model, images, method, [class_index])
    assert explainer.target.path == "decoder/d1"
    np.testing.assert_array_equal(result.region_pixels[:, 0], ref.regions[..., class_index].sum(axis=(1, 2)))
    expected = REFERENCES[method](ref, class_index)
    assert (np.abs(expected).max(axis=(1, 2)) > 0).all(), f"{method}: a flat reference map"
    close(result.heatmaps[:, 0], expected, rtol=RTOL.get(method, 2e-3))


@pytest.mark.slow
def test_segmenter_guided_gradcam_saliency_is_guided_backprop_times_the_map(segmenter_case):
    model, images, ref, class_index = segmenter_case
    _, result = _run(model, images, "guided-gradcam", [class_index])
    expected = ref.guided_backprop(class_index) * ref_gradcam(ref, class_index)[..., None]  # map at input size
    close(result.saliency[:, 0], expected)


def test_segmenter_refuses_cam(segmenter_case):
    model, _, _, _ = segmenter_case
    with pytest.raises(MethodError, match="GlobalAveragePooling2D"):
        Explainer(spec_for_model(model), method="cam", batch_size=2)
