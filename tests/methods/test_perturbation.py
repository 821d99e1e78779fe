"""XGrad-CAM, HiResCAM, Layer-CAM, Score-CAM, Ablation-CAM, Eigen-CAM and smoothing, each checked
against an identity or a plain numpy implementation of its formula."""

from __future__ import annotations

import numpy as np
import pytest
from references import Reference, deep_head_model

from gradcam_cli.errors import MethodError
from gradcam_cli.explainer import Explainer
from gradcam_cli.models.in_memory import spec_for_model


def maps(model, images, method, classes=None, **options):
    layer = "target" if any(layer.name == "target" for layer in model.layers) else None
    explainer = Explainer(spec_for_model(model), method=method, layer=layer, batch_size=len(images), **options)
    return explainer.run(images, classes=classes).heatmaps[:, 0]


@pytest.fixture(scope="module")
def deep_model(keras):
    keras.utils.set_random_seed(1234)  # the same weights whichever tests ran before (some give flat maps)
    return deep_head_model(keras)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(11).uniform(0, 1, (3, 20, 20, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def reference(keras, deep_model, images):
    """Activations, gradients of logit 1 and logit functions, computed without the tool's probe."""
    ref = Reference(keras, deep_model, images, class_index=1)
    return ref.a, ref.g, ref.logits_of_images, ref.logits_of_activations


def relu(x):
    return np.maximum(x, 0)


def close(actual, expected, rtol=2e-3):
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-5 * np.abs(expected).max())


def test_xgradcam_formula(deep_model, images, reference):
    a, g, _, _ = reference
    sums = a.sum(axis=(1, 2))
    weights = np.divide((a * g).sum(axis=(1, 2)), sums, out=np.zeros_like(sums), where=sums != 0)
    close(maps(deep_model, images, "xgradcam", classes=[1]), relu(np.einsum("bhwk,bk->bhw", a, weights)))


def test_hirescam_formula(deep_model, images, reference):
    a, g, _, _ = reference
    close(maps(deep_model, images, "hirescam", classes=[1]), relu((g * a).sum(-1)))


def test_layercam_formula(deep_model, images, reference):
    a, g, _, _ = reference
    close(maps(deep_model, images, "layercam", classes=[1]), relu((relu(g) * a).sum(-1)))


def numpy_first_component(weighted):
    out = []
    for sample in weighted:
        flat = sample.reshape(-1, sample.shape[-1])
        centred = flat - flat.mean(axis=0)
        projection = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
        if (projection * centred.mean(axis=1)).sum() < 0:
            projection = -projection
        out.append(projection.reshape(sample.shape[:2]))
    return np.stack(out)


def test_eigencam_is_the_sign_fixed_first_component(deep_model, images, reference):
    a, _, _, _ = reference
    close(maps(deep_model, images, "eigencam"), numpy_first_component(a), rtol=1e-3)


def test_eigen_smooth_projects_the_weighted_activations(deep_model, images, reference):
    a, g, _, _ = reference
    weighted = a * g.mean(axis=(1, 2))[:, None, None, :]
    close(maps(deep_model, images, "gradcam", classes=[1], smooth="eigen"), numpy_first_component(weighted), rtol=1e-3)
    with pytest.raises(MethodError, match="eigen"):
        Explainer(spec_for_model(deep_model), method="eigencam", smooth="eigen")


def test_scorecam_formula_and_channel_selection(deep_model, images, reference):
    import tensorflow as tf

    a, _, logits_of_images, _ = reference
    upsampled = tf.image.resize(a, (20, 20), method="bilinear").numpy()
    low, high = upsampled.min(axis=(1, 2), keepdims=True), upsampled.max(axis=(1, 2), keepdims=True)
    masks = np.divide(upsampled - low, high - low, out=np.zeros_like(upsampled), where=high > low)
    scores = np.stack([logits_of_images((images * masks[..., k : k + 1]).astype(np.float32))[:, 1] for k in range(6)], axis=1)
    weights = np.exp(scores - scores.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    expected = relu(np.einsum("bhwk,bk->bhw", a, weights))
    for chunk_size in (1, 4, 6):  # 4 leaves a partial last chunk
        close(maps(deep_model, images, "scorecam", classes=[1], chunk_size=chunk_size), expected)
    variance = a.var(axis=(1, 2))
    keep = np.argsort(-variance, axis=1)[:, :3]
    kept_scores = np.take_along_axis(scores, keep, axis=1)
    kept_weights = np.exp(kept_scores - kept_scores.max(1, keepdims=True))
    kept_weights /= kept_weights.sum(1, keepdims=True)
    kept_a = np.take_along_axis(a, keep[:, None, None, :], axis=3)
    close(maps(deep_model, images, "scorecam", classes=[1], max_channels=3),
          relu(np.einsum("bhwk,bk->bhw", kept_a, kept_weights)))


def test_ablationcam_formula(deep_model, images, reference):
    a, _, _, logits_of_activations = reference
    base = logits_of_activations(a.astype(np.float32))[:, 1]
    drops = []
    for k in range(6):
        ablated = a.copy()
        ablated[..., k] = 0
        drops.append(base - logits_of_activations(ablated.astype(np.float32))[:, 1])
    weights = np.stack(drops, axis=1) / np.abs(base)[:, None]
    expected = relu(np.einsum("bhwk,bk->bhw", a, weights))
    for chunk_size in (2, 4):
        close(maps(deep_model, images, "ablationcam", classes=[1], chunk_size=chunk_size), expected, rtol=5e-3)


def test_ablationcam_substitution_equals_the_tail_model(deep_model, images, monkeypatch):
    """Both ways of scoring ablated maps (the sub-model after the layer, or the full forward pass
    with the map substituted) give the same maps."""
    from gradcam_cli.probe import Probe

    with_tail = maps(deep_model, images, "ablationcam", classes=[1], chunk_size=4)
    monkeypatch.setattr(Probe, "tail", lambda self: None)
    substituted = maps(deep_model, images, "ablationcam", classes=[1], chunk_size=4)
    close(substituted, with_tail, rtol=1e-4)


def test_ablationcam_on_a_nested_backbone_with_a_skip_around_the_layer(keras):
    """The target sits inside a nested backbone and a skip connection bypasses it (issue 15): the
    ablated maps are substituted inside the full forward pass; checked against eq. 3 computed by
    calling the layers by hand."""
    keras.utils.set_random_seed(15)
    inputs = keras.Input((16, 16, 3))
    first = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="first")(inputs)
    inner = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="inner")(first)
    merged = keras.layers.Add(name="skip")([first, keras.layers.Conv2D(4, 1, name="proj")(inner)])
    backbone = keras.Model(inputs, merged, name="backbone")
    outer_inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(outer_inputs))
    model = keras.Model(outer_inputs, keras.layers.Dense(3, activation="softmax", name="head")(pooled))
    images = np.random.default_rng(5).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)

    head = model.get_layer("head")
    kernel, bias = head.kernel.numpy(), head.bias.numpy()
    first_maps = backbone.get_layer("first")(images).numpy()
    a = backbone.get_layer("inner")(first_maps).numpy()

    def logits(activations):
        merged_maps = first_maps + backbone.get_layer("proj")(activations).numpy()
        return merged_maps.mean(axis=(1, 2)) @ kernel + bias

    base = logits(a)[:, 2]
    drops = []
    for k in range(5):
        ablated = a.copy()
        ablated[..., k] = 0
        drops.append(base - logits(ablated)[:, 2])
    weights = np.stack(drops, axis=1) / np.abs(base)[:, None]
    expected = relu(np.einsum("bhwk,bk->bhw", a, weights))
    for chunk_size in (2, 5):
        explainer = Explainer(spec_for_model(model), method="ablationcam", layer="backbone/inner",
                              batch_size=2, chunk_size=chunk_size)
        close(explainer.run(images, classes=[2]).heatmaps[:, 0], expected, rtol=5e-3)


def test_identities_on_a_gap_dense_head(gap_dense_model, random_images):
    cam = maps(gap_dense_model, random_images, "cam", classes=[2])
    gradcam = maps(gap_dense_model, random_images, "gradcam", classes=[2])
    mask = cam > 1e-2 * cam.max()
    xgradcam = maps(gap_dense_model, random_images, "xgradcam", classes=[2])
    np.testing.assert_allclose(xgradcam[mask], gradcam[mask], rtol=1e-3)
    assert np.array_equal(xgradcam > 0, gradcam > 0) or np.abs(xgradcam - gradcam).max() < 1e-5 * gradcam.max()
    np.testing.assert_allclose(maps(gap_dense_model, random_images, "hirescam", classes=[2])[mask] * 28 * 28, cam[mask], rtol=5e-3)


def test_scorecam_graph_never_holds_all_masked_channels(keras):
    """The largest image-shaped tensor in Score-CAM's graph is one chunk, whatever the channel count."""
    largest = {}
    for channels in (8, 64):
        inputs = keras.Input((24, 24, 3))
        x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name="target")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
        explainer = Explainer(spec_for_model(model), method="scorecam", batch_size=2, chunk_size=4)
        largest[channels] = _largest_image_tensor(explainer)
    assert largest[8] == largest[64] == 2 * 4 * 24 * 24 * 3  # batch x chunk x H x W x 3


def test_ablationcam_substitution_graph_holds_one_chunk_of_copies(keras):
    """In the full-forward-pass path, the largest image-shaped tensor is one chunk of image copies
    (batch x chunk), whatever the target layer's channel count."""
    largest = {}
    for channels in (8, 64):
        inputs = keras.Input((24, 24, 3))
        x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name="target")(inputs)
        backbone = keras.Model(inputs, keras.layers.Conv2D(4, 1)(x), name="backbone")
        outer = keras.Input((24, 24, 3))
        model = keras.Model(outer, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(backbone(outer))))
        explainer = Explainer(spec_for_model(model), method="ablationcam", layer="backbone/target", batch_size=2,
                              chunk_size=4)
        assert explainer.method_state is None  # nested: no tail model, the substitution path
        largest[channels] = _largest_image_tensor(explainer)
    assert largest[8] == largest[64] == 2 * 4 * 24 * 24 * 3


def _largest_image_tensor(explainer) -> int:
    """Elements of the largest fully defined 3-channel tensor of rank >= 4 in the compiled step."""
    graph = explainer._step(False, 1).get_concrete_function().graph
    sizes = [0]
    for function in [graph, *(f.graph for f in _nested_functions(graph))]:
        for operation in function.get_operations():
            for output in operation.outputs:
                shape = output.shape
                if shape.rank and shape.rank >= 4 and shape[-1] == 3 and shape.is_fully_defined():
                    sizes.append(shape.num_elements())
    return max(sizes)


def _nested_functions(graph):
    """The functions (tf.map_fn's while-loop bodies among them) defined inside a traced graph."""
    return list(graph._functions.values())


def test_aug_smoothing_is_mirror_symmetric_on_a_mirror_symmetric_image(gap_dense_model):
    rng = np.random.default_rng(5)
    half = rng.uniform(0, 255, (32, 16, 3))
    symmetric = np.concatenate([half, half[:, ::-1]], axis=1)[None].astype(np.float32)
    smoothed = maps(gap_dense_model, symmetric, "gradcam", smooth="aug")
    np.testing.assert_allclose(smoothed, smoothed[:, :, ::-1], rtol=1e-4, atol=1e-6 * smoothed.max())
    plain = maps(gap_dense_model, symmetric, "gradcam")
    assert not np.allclose(plain, smoothed)


def test_guided_gradcam_is_guided_backprop_times_upsampled_gradcam(keras):
    """Against a twin model whose ReLUs are replaced by an independent guided-ReLU layer."""
    import tensorflow as tf

    @tf.custom_gradient
    def guided_relu(x):
        y = tf.nn.relu(x)
        return y, lambda dy: dy * tf.cast(x > 0, dy.dtype) * tf.cast(dy > 0, dy.dtype)

    class GuidedReLU(keras.layers.Layer):
        def call(self, x):
            return guided_relu(x)

    def build(relu):
        inputs = keras.Input((12, 12, 3))
        x = relu()(keras.layers.Conv2D(4, 3, name="c1")(inputs))
        x = relu()(keras.layers.Conv2D(5, 3, name="c2")(x))
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x))

    keras.utils.set_random_seed(1234)  # the same weights whichever tests ran before (some give flat maps)
    model, twin = build(keras.layers.ReLU), build(GuidedReLU)
    twin.set_weights(model.get_weights())
    images = np.random.default_rng(2).uniform(0, 1, (2, 12, 12, 3)).astype(np.float32)
    explainer = Explainer(spec_for_model(model), method="guided-gradcam", batch_size=2)
    result = explainer.run(images, classes=[1])
    gradcam = Explainer(spec_for_model(model), method="gradcam", batch_size=2).run(images, classes=[1]).heatmaps
    np.testing.assert_allclose(result.heatmaps, gradcam, rtol=1e-5)

    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        head = twin.get_layer("head")
        features = keras.Model(twin.inputs, head.input)(x)
        score = tf.reduce_sum((tf.matmul(features, head.kernel) + head.bias)[:, 1])
    guided = tape.gradient(score, x).numpy()
    upsampled = tf.image.resize(gradcam[:, 0, :, :, None], (12, 12), method="bilinear").numpy()
    expected = guided * upsampled
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(result.saliency[:, 0], expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
