"""The methods of issue 26 on JAX give TensorFlow's maps: models saved here, explained in one
``KERAS_BACKEND=jax`` subprocess (the pattern of tests/test_backend.py), compared after per-map
min-max normalisation. This checks the JAX branches of gradcam_cli/backend.py that only these methods
use: Hessian-vector products (ShapleyCAM) and gradients at several taps (FullGrad)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.references import deep_head_model

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-3
CASES = {
    # model file -> (layer, classes, [(method, counterfactual), ...])
    "deep": ("target", [1, 2], [("gradcam-elementwise", False), ("shapleycam", False), ("finercam", False),
                               ("eigengradcam", False), ("segeigencam", False), ("kpcacam", False), ("fem", False),
                               ("fullgrad", False), ("gradcam", True), ("shapleycam", True)]),
    "batchnorm": (None, [0], [("fullgrad", False)]),
    "unet": ("dec", [1], [("segeigencam", False), ("fullgrad", False), ("finercam", False)]),
}
SCRIPT = r'''
import json, os, sys
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
from gradcam_cli.explainer import Explainer
from gradcam_cli.models import resolve_model

work = sys.argv[1]
cases = json.load(open(os.path.join(work, "cases.json")))
maps = {}
for name, (layer, classes, methods) in cases.items():
    spec = resolve_model(os.path.join(work, name + ".keras"), preprocess=None)
    images = np.load(os.path.join(work, name + ".npy"))
    for method, counterfactual in methods:
        explainer = Explainer(spec, method=method, layer=layer, batch_size=len(images), counterfactual=counterfactual)
        maps[f"{name}/{method}/{counterfactual}"] = explainer.run(images, classes=classes).heatmaps
np.savez(os.path.join(work, "jax_maps.npz"), **maps)
'''


def _normalised(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(-2, -1), keepdims=True)
    high = maps.max(axis=(-2, -1), keepdims=True)
    return (maps - low) / np.where(high > low, high - low, 1.0)


def _batchnorm_model(keras):
    keras.utils.set_random_seed(26)
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.BatchNormalization(name="bn")(layers.Conv2D(4, 3, activation="relu", name="c1")(inputs))
    x = layers.DepthwiseConv2D(3, activation="softplus", name="dw")(x)
    x = layers.Conv2D(5, 3, use_bias=False, name="target")(x)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(x)))
    rng = np.random.default_rng(26)
    model.get_layer("bn").set_weights([rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.5, 4), rng.normal(0, 0.5, 4),
                                       rng.uniform(0.5, 2, 4)])
    return model


@pytest.mark.slow
def test_the_new_methods_give_the_same_maps_on_jax(tmp_path, keras, unet, unet_images):
    pytest.importorskip("jax", reason="the jax extra: pip install -e '.[jax]'")
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models import resolve_model

    keras.utils.set_random_seed(1234)
    models = {"deep": deep_head_model(keras), "batchnorm": _batchnorm_model(keras), "unet": unet}
    rng = np.random.default_rng(26)
    images = {"deep": rng.uniform(0, 1, (3, 20, 20, 3)), "batchnorm": rng.uniform(-1, 1, (2, 16, 16, 3)),
              "unet": unet_images}
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}.npy", np.asarray(images[name], np.float32))
    (tmp_path / "cases.json").write_text(json.dumps(CASES))
    (tmp_path / "jax_side.py").write_text(SCRIPT)
    environment = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
                   "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(tmp_path / "jax_side.py"), str(tmp_path)], capture_output=True,
                          text=True, env=environment, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    jax_maps = np.load(tmp_path / "jax_maps.npz")
    for name, (layer, classes, methods) in CASES.items():
        spec = resolve_model(str(tmp_path / f"{name}.keras"), preprocess=None)
        batch = np.load(tmp_path / f"{name}.npy")
        for method, counterfactual in methods:
            explainer = Explainer(spec, method=method, layer=layer, batch_size=len(batch),
                                  counterfactual=counterfactual)
            expected = explainer.run(batch, classes=classes).heatmaps
            got = jax_maps[f"{name}/{method}/{counterfactual}"]
            assert np.abs(expected).max() > 0, (name, method)
            difference = np.abs(_normalised(got) - _normalised(expected)).max()
            assert difference < TOLERANCE, f"{name} {method} counterfactual={counterfactual}: {difference:.2e}"
