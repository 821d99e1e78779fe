"""Models and explainers kept between API calls (gradcam_cli/model_cache.py): a loop over a model name
builds and traces it once, the kept models are bounded and an edited model file is read again."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.helpers import PAIR


@pytest.mark.slow
def test_explain_in_a_loop_over_a_model_name_builds_and_traces_it_once():
    # explain("NAME", ...) built and traced a new model every call: a loop over names and methods grew
    # by the graphs TensorFlow never frees (tf.custom_gradient ops such as SiLU: EfficientNet).
    from gradcam_cli import explain, model_cache

    model_cache.release_models()
    first = explain("demo", str(PAIR), method="gradcam++")
    second = explain("demo", str(PAIR), method="gradcam++")
    other = explain("demo", str(PAIR), method="layercam")
    assert first.spec is second.spec is other.spec  # one model for the three calls
    explainers = getattr(first.spec, model_cache._EXPLAINERS)
    assert len(explainers) == 2 and [e.tracing_count for e in explainers.values()] == [1, 1]
    np.testing.assert_allclose(second.heatmaps, first.heatmaps, rtol=1e-5, atol=1e-6)
    model_cache.release_models()
    assert explain("demo", str(PAIR)).spec is not first.spec


@pytest.mark.slow
def test_kept_models_are_bounded_and_an_edited_model_file_is_read_again(tmp_path, monkeypatch):
    import os

    from gradcam_cli import explain, model_cache
    from gradcam_cli.demo import demo_model_path

    monkeypatch.setattr(model_cache, "MODELS_KEPT", 1)
    model_cache.release_models()
    copy = tmp_path / "shapes.keras"
    shutil.copy(demo_model_path(), copy)
    first = explain(str(copy), str(PAIR))
    assert explain(str(copy), str(PAIR)).spec is first.spec
    os.utime(copy, ns=(1_000_000_000, 1_000_000_000))  # the file changed: its model is loaded again
    edited = explain(str(copy), str(PAIR))
    assert edited.spec is not first.spec
    explain("demo", str(PAIR))
    assert len(model_cache._kept_models) == 1  # MODELS_KEPT, the least recently used gone
    model_cache.release_models()
    assert not model_cache._kept_models
