"""Guided Grad-CAM (gradcam_cli/methods/guided.py)."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.explainer import Explainer
from gradcam_cli.models.in_memory import spec_for_model


@pytest.mark.slow
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
