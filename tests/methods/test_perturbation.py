"""Score-CAM, Ablation-CAM and Eigen-CAM (gradcam_cli/methods/perturbation.py) against plain numpy
implementations, and the memory their chunked graphs hold."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.explainer import Explainer
from gradcam_cli.models.in_memory import spec_for_model
from tests.references import close, maps, numpy_first_component, relu


def test_eigencam_is_the_sign_fixed_first_component(deep_model, images, reference):
    a, _, _, _ = reference
    close(maps(deep_model, images, "eigencam"), numpy_first_component(a), rtol=1e-3)


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_a_perturbation_pass_holds_at_most_64_model_inputs_by_default_whatever_the_batch():
    from gradcam_cli.methods import get_method
    from gradcam_cli.methods.base import INPUTS_PER_PASS

    scorecam, ablation = get_method("scorecam"), get_method("ablationcam")
    for batch in (1, 3, 16, 64, 200):
        for method in (scorecam, ablation):
            channels = method.channels_per_pass(batch)
            assert channels >= 1 and (batch * channels <= INPUTS_PER_PASS or channels == 1), (batch, channels)
    assert get_method("scorecam", chunk_size=32).channels_per_pass(16) == 32  # given: as asked
