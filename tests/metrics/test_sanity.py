"""The sanity check by model parameter randomization (gradcam_cli/metrics/sanity.py)."""

from __future__ import annotations

import numpy as np


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
