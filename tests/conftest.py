"""Shared fixtures: TensorFlow models are built once per session, at small input sizes."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest


@pytest.fixture(scope="session")
def keras():
    import keras

    keras.utils.set_random_seed(1234)
    return keras


def _gap_dense_model(keras, activation="softmax", name="gap_dense"):
    """conv -> conv -> GAP -> Dense: the architecture CAM is defined on."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(12, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(5, activation=activation, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="session")
def gap_dense_model(keras):
    return _gap_dense_model(keras)


@pytest.fixture(scope="session")
def logits_twin(keras, gap_dense_model):
    """The same weights with the softmax as a separate layer, and with no softmax at all."""
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for name in ("conv1", "conv2", "gap"):
        x = gap_dense_model.get_layer(name)(x)
    logits = keras.layers.Dense(5, name="head_logits")(x)
    with_softmax_layer = keras.Model(inputs, keras.layers.Softmax()(logits), name="separate_softmax")
    logits_model = keras.Model(inputs, logits, name="logits_only")
    with_softmax_layer.get_layer("head_logits").set_weights(gap_dense_model.get_layer("head").get_weights())
    return with_softmax_layer, logits_model


@pytest.fixture(scope="session")
def random_images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)


@pytest.fixture(scope="session")
def demo_spec():
    from gradcam_cli.models import resolve_model

    return resolve_model("demo")
