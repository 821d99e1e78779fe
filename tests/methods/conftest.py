"""The method tests' model, images and references: a target conv layer with a deeper head after it,
so that the gradients at the target vary over positions."""

from __future__ import annotations

import numpy as np
import pytest

from tests.references import Reference, deep_head_model


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
