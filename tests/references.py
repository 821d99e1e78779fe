"""Independent references for the method tests: activations and logit gradients computed through
sub-models built here, never through the tool's probe."""

from __future__ import annotations

import numpy as np


def deep_head_model(keras, size: int = 20):
    """target conv -> conv -> GAP -> Dense(softmax): gradients at 'target' vary over positions."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="target")(inputs)
    x = keras.layers.Conv2D(5, 3, activation="tanh", name="after")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="head")(x))


class Reference:
    """For ``model`` (built by :func:`deep_head_model`) and ``images``: activations ``a`` of the
    target layer, gradients ``g`` of logit ``class_index``, and logit functions in numpy."""

    def __init__(self, keras, model, images: np.ndarray, class_index: int):
        import tensorflow as tf

        target, head = model.get_layer("target"), model.get_layer("head")
        to_activations = keras.Model(model.inputs, target.output)
        self._tail = keras.Model(target.output, head.input)
        self._kernel, self._bias = head.kernel.numpy(), head.bias.numpy()
        self._to_activations = to_activations
        activations = tf.constant(to_activations(images))
        with tf.GradientTape() as tape:
            tape.watch(activations)
            score = tf.reduce_sum(tf.matmul(self._tail(activations), head.kernel)[:, class_index])
        self.a = activations.numpy().astype(np.float64)
        self.g = tape.gradient(score, activations).numpy().astype(np.float64)

    def logits_of_activations(self, activations: np.ndarray) -> np.ndarray:
        return self._tail(activations.astype(np.float32)).numpy() @ self._kernel + self._bias

    def logits_of_images(self, images: np.ndarray) -> np.ndarray:
        return self.logits_of_activations(self._to_activations(images).numpy())
