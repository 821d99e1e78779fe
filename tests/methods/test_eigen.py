"""Eigen-Grad-CAM, Seg-Eigen-CAM and KPCA-CAM (gradcam_cli/methods/eigen.py) against numpy
implementations of their formulas: equal up to sign (a principal component's sign is arbitrary),
then each method's own sign rule checked on its own."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.errors import MethodError
from gradcam_cli.explainer import Explainer
from gradcam_cli.methods import eigen
from gradcam_cli.methods.eigen import KPCACAM
from gradcam_cli.models.in_memory import spec_for_model
from tests.references import (
    close,
    maps,
    numpy_kpca,
    numpy_principal_projection,
    numpy_seg_eigen,
    same_up_to_sign,
)


def test_eigengradcam_is_the_first_component_of_gradient_times_activation(deep_model, images, reference):
    a, g, _, _ = reference
    projections, centred = numpy_principal_projection(g * a)
    actual = maps(deep_model, images, "eigengradcam", classes=[1])
    same_up_to_sign(actual, projections.reshape(a.shape[:3]))
    # the sign: the map correlates positively with HiResCAM's map before its ReLU
    assert (np.einsum("bp,bp->b", actual.reshape(len(a), -1), centred.mean(axis=2)) > 0).all()


def test_segeigencam_weighs_by_absolute_gradients_and_flips_to_its_largest_extreme(deep_model, images, reference):
    a, g, _, _ = reference
    projections, _ = numpy_principal_projection(np.abs(g) * a)
    actual = maps(deep_model, images, "segeigencam", classes=[1])
    same_up_to_sign(actual, projections.reshape(a.shape[:3]))
    close(actual, numpy_seg_eigen(a, g))  # eq. 13: |max| >= |min| in every map
    flat = actual.reshape(len(a), -1)
    assert (np.abs(flat.max(axis=1)) >= np.abs(flat.min(axis=1))).all()


def test_segeigencam_on_a_segmentation_head_reads_the_region_gradient(keras, unet, unet_images):
    """The score is the class's logit summed over its predicted pixels R, z = a W + b a 1x1 conv, so
    d score / d a_ij = R_ij W[:, c]."""
    class_index = 1
    a = keras.Model(unet.inputs, unet.get_layer("dec").output)(unet_images).numpy().astype(np.float64)
    kernel, bias = (weights.astype(np.float64) for weights in unet.get_layer("classifier").get_weights())
    region = ((a @ kernel[0, 0] + bias).argmax(-1) == class_index).astype(np.float64)
    assert (region.sum(axis=(1, 2)) > 0).all()
    gradients = region[..., None] * kernel[0, 0][:, class_index]
    explainer = Explainer(spec_for_model(unet), method="segeigencam", layer="dec", batch_size=len(unet_images))
    close(explainer.run(unet_images, classes=[class_index]).heatmaps[:, 0], numpy_seg_eigen(a, gradients))


@pytest.mark.parametrize(("kernel", "gamma"), [("sigmoid", None), ("rbf", 0.5)])
def test_kpcacam_is_the_first_kernel_principal_component(deep_model, images, reference, kernel, gamma):
    a, _, _, _ = reference
    explainer = Explainer(spec_for_model(deep_model), method=KPCACAM(kernel=kernel, gamma=gamma), layer="target",
                          batch_size=len(images))
    actual = explainer.run(images, top_k=1).heatmaps[:, 0]
    expected = numpy_kpca(a, kernel, gamma)
    same_up_to_sign(actual, expected, rtol=5e-3)
    close(actual, expected, rtol=5e-3)  # the sign: agrees with the mean activation


def test_kpcacam_with_a_linear_kernel_is_eigencam(deep_model, images):
    explainer = Explainer(spec_for_model(deep_model), method=KPCACAM(kernel="linear"), layer="target",
                          batch_size=len(images))
    close(explainer.run(images).heatmaps[:, 0], maps(deep_model, images, "eigencam"), rtol=5e-3)


def test_kpcacam_is_class_agnostic_and_says_so(deep_model, images):
    two = Explainer(spec_for_model(deep_model), method="kpcacam", layer="target", batch_size=len(images))
    result = two.run(images, classes=[0, 3]).heatmaps
    np.testing.assert_array_equal(result[:, 0], result[:, 1])
    assert "class-agnostic" in KPCACAM.description and KPCACAM.class_agnostic


def test_kpcacam_refuses_a_layer_with_too_many_positions(deep_model, monkeypatch):
    monkeypatch.setattr(eigen, "KPCA_MAX_POSITIONS", 100)  # the target map has 18 x 18 = 324
    with pytest.raises(MethodError, match="324 positions.*layer") as refused:
        Explainer(spec_for_model(deep_model), method="kpcacam", layer="target")
    assert "\n" not in str(refused.value)
