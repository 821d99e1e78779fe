"""Counterfactual maps (Selvaraju et al. 2017, section 3.3): the explained score negated, so every
gradient of it is; accepted by the gradient methods, refused in one line by the others."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.errors import OptionConflict, phrase
from gradcam_cli.explainer import Explainer
from gradcam_cli.methods import METHODS
from gradcam_cli.models.in_memory import spec_for_model
from gradcam_cli.options import RunOptions
from tests.references import close, hessian_times_map, maps, relu

REFUSING = {"cam", "scorecam", "ablationcam", "eigencam", "kpcacam", "fem", "segeigencam", "fullgrad"}


def test_counterfactual_gradcam_weighs_channels_by_the_negated_gradients(deep_model, images, reference):
    a, g, _, _ = reference
    expected = relu(np.einsum("bhwk,bk->bhw", a, -g.mean(axis=(1, 2))))
    assert expected.max() > 0
    close(maps(deep_model, images, "gradcam", classes=[1], counterfactual=True), expected)


def test_counterfactual_hirescam_and_gradcam_elementwise(deep_model, images, reference):
    a, g, _, _ = reference
    close(maps(deep_model, images, "hirescam", classes=[1], counterfactual=True), relu((-g * a).sum(-1)))
    close(maps(deep_model, images, "gradcam-elementwise", classes=[1], counterfactual=True), relu(-g * a).sum(-1))


def test_counterfactual_shapleycam_negates_the_hessian_term_too(keras, deep_model, images, reference):
    a, g, _, _ = reference
    weights = -(g - 0.5 * hessian_times_map(keras, deep_model, images, 1)).mean(axis=(1, 2))
    expected = relu(np.einsum("bhwk,bk->bhw", a, weights))
    assert expected.max() > 0
    close(maps(deep_model, images, "shapleycam", classes=[1], counterfactual=True), expected, rtol=5e-3)


@pytest.mark.parametrize("method", sorted(REFUSING))
def test_counterfactual_is_refused_in_one_line_where_undefined(deep_model, method):
    with pytest.raises(OptionConflict, match=f"does not apply to {method}") as refused:
        Explainer(spec_for_model(deep_model), method=method, layer="target", counterfactual=True)
    message = str(refused.value)
    assert "\n" not in message and "counterfactual" in message
    assert phrase(refused.value.args[0], command_line=True).startswith("--counterfactual does not apply")


def test_the_methods_that_accept_it_are_the_class_specific_gradient_methods():
    accepted = {name for name, cls in METHODS.items() if cls.counterfactual_refusal() is None}
    assert accepted == set(METHODS) - REFUSING
    assert all(METHODS[name].uses_gradients and not METHODS[name].class_agnostic for name in accepted)


def test_the_option_reaches_the_explainer(deep_model):
    explainer = Explainer.from_options(spec_for_model(deep_model), RunOptions(method="layercam", counterfactual=True))
    assert explainer.counterfactual
    assert not Explainer.from_options(spec_for_model(deep_model), RunOptions()).counterfactual


@pytest.mark.slow
def test_counterfactual_guided_gradcam_negates_the_score_of_both_halves(deep_model, images, reference):
    a, g, _, _ = reference
    explainer = Explainer(spec_for_model(deep_model), method="guided-gradcam", layer="target",
                          batch_size=len(images), counterfactual=True)
    result = explainer.run(images, classes=[1])
    close(result.heatmaps[:, 0], relu(np.einsum("bhwk,bk->bhw", a, -g.mean(axis=(1, 2)))))
    plain = Explainer(spec_for_model(deep_model), method="guided-gradcam", layer="target", batch_size=len(images))
    assert not np.allclose(result.saliency, plain.run(images, classes=[1]).saliency)
