"""FullGrad (gradcam_cli/methods/fullgrad.py) against the paper's sum written out by hand: the model's
layers recomputed from their weights with TensorFlow ops (pre-activations, BatchNormalization's
affine map), gradients from one ``tf.GradientTape``, the authors' post-processing in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.errors import MethodError
from gradcam_cli.explainer import Explainer
from gradcam_cli.models.in_memory import spec_for_model
from tests.references import close

SIZE = 16


def _layers(keras):
    layers = keras.layers
    return [layers.Conv2D(4, 3, activation="relu", name="c1"),  # a bias before a fused activation
            layers.BatchNormalization(name="bn"),
            layers.DepthwiseConv2D(3, activation="softplus", name="dw"),
            layers.Conv2D(5, 3, use_bias=False, name="target"),  # no bias: no term
            layers.Activation("tanh", name="act"),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(3, activation="softmax", name="head")]  # a bias with no positions: left out


@pytest.fixture(scope="module")
def fullgrad_models(keras):
    """The same layers as a flat model, inside a nested backbone, and in a subclassed model."""
    keras.utils.set_random_seed(41)
    c1, bn, dw, target, act, gap, head = _layers(keras)
    inputs = keras.Input((SIZE, SIZE, 3))
    flat = keras.Model(inputs, head(gap(act(target(dw(bn(c1(inputs))))))), name="flat")
    rng = np.random.default_rng(41)
    bn.set_weights([rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.5, 4), rng.normal(0, 0.5, 4), rng.uniform(0.5, 2, 4)])
    for layer in (c1, dw):
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, rng.normal(0, 0.3, bias.shape)])

    backbone = keras.Sequential([c1, bn, dw, target, act], name="backbone")
    nested_inputs = keras.Input((SIZE, SIZE, 3))
    nested = keras.Model(nested_inputs, head(gap(backbone(nested_inputs))), name="nested")

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.chain = [c1, bn, dw, target, act, gap, head]

        def call(self, x):
            for layer in self.chain:
                x = layer(x)
            return x

    subclassed = Subclassed()
    images = rng.uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    subclassed(images[:1])
    return {"flat": flat, "nested": nested, "subclassed": subclassed}, (c1, bn, dw, target, head), images


def _psi(term, size):
    """The authors' post-processing: |term|, min-max over (h, w, channels) per image, channel sum,
    bilinear resize (half-pixel centres) to the input size."""
    import tensorflow as tf

    magnitude = np.abs(term)
    low = magnitude.min(axis=(1, 2, 3), keepdims=True)
    high = magnitude.max(axis=(1, 2, 3), keepdims=True)
    summed = ((magnitude - low) / (high - low)).sum(-1, keepdims=True)
    return tf.image.resize(summed, size, method="bilinear").numpy()[..., 0].astype(np.float64)


def reference_fullgrad(layers, images, class_index):
    import tensorflow as tf

    c1, bn, dw, target, head = layers
    x = tf.constant(images)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        z1 = tf.nn.conv2d(x, c1.kernel, 1, "VALID") + c1.bias
        scale = bn.gamma / tf.sqrt(bn.moving_variance + bn.epsilon)
        normalised = (tf.nn.relu(z1) - bn.moving_mean) * scale + bn.beta
        z2 = tf.nn.depthwise_conv2d(normalised, dw.kernel, [1, 1, 1, 1], "VALID") + dw.bias
        features = tf.tanh(tf.nn.conv2d(tf.nn.softplus(z2), target.kernel, 1, "VALID"))
        score = tf.reduce_sum((tf.reduce_mean(features, axis=(1, 2)) @ head.kernel)[:, class_index])
    g_x, g_z1, g_bn, g_z2 = tape.gradient(score, [x, z1, normalised, z2])
    bn_bias = (bn.beta - bn.moving_mean * scale).numpy()
    terms = [g_x.numpy() * images, g_z1.numpy() * c1.bias.numpy(), g_bn.numpy() * bn_bias,
             g_z2.numpy() * dw.bias.numpy()]
    return sum(_psi(term.astype(np.float64), images.shape[1:3]) for term in terms)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flat", "nested", "subclassed"])
def test_fullgrad_is_the_sum_of_the_input_and_bias_gradients(fullgrad_models, kind):
    models, layers, images = fullgrad_models
    explainer = Explainer(spec_for_model(models[kind]), method="fullgrad", batch_size=len(images))
    result = explainer.run(images, classes=[2, 0])
    assert result.heatmaps.shape == (len(images), 2, SIZE, SIZE)  # at the input's resolution
    for t, class_index in enumerate((2, 0)):
        close(result.heatmaps[:, t], reference_fullgrad(layers, images, class_index))


def test_fullgrad_refuses_a_bias_it_cannot_read_in_one_line(keras):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.LayerNormalization(name="norm")(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(MethodError, match=r"norm \(LayerNormalization\).*gradcam") as refused:
        Explainer(spec_for_model(keras.Model(inputs, outputs)), method="fullgrad")
    assert "\n" not in str(refused.value)


@pytest.mark.slow
def test_fullgrad_on_a_segmentation_head_reads_the_classifier_bias_either_way(keras, unet, unet_images):
    """The probe reads a fused softmax's pre-activation itself (its logits are then tapped) and a
    separate Softmax layer's input (the classifier's output is tapped): the maps agree."""
    inputs = keras.Input(unet.input_shape[1:])
    decoded = keras.Model(unet.inputs, unet.get_layer("dec").output)(inputs)
    classifier = keras.layers.Conv2D(4, 1, name="linear_classifier")
    twin = keras.Model(inputs, keras.layers.Softmax()(classifier(decoded)))
    classifier.set_weights(unet.get_layer("classifier").get_weights())
    fused = Explainer(spec_for_model(unet), method="fullgrad", batch_size=len(unet_images))
    separate = Explainer(spec_for_model(twin), method="fullgrad", batch_size=len(unet_images))
    assert fused.head.source == "activation" and separate.head.source == "input"
    expected = separate.run(unet_images, classes=[1]).heatmaps
    assert expected.max() > 0
    close(fused.run(unet_images, classes=[1]).heatmaps, expected, rtol=1e-4)
