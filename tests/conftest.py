"""Shared fixtures: TensorFlow models are built once per session, at small input sizes; so are the
files (photos, awkward corpora, saved models, a report) that several test files read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from PIL import Image

from tests.corpus import NASTY, make_corpus, photo
from tests.helpers import SHAPES, run
from tests.references import NEVER, TOKEN_SIZE, UNET_SIZE, kind_and_age_model

HEAD_SIZE = 24  # the input of the head models below


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


@pytest.fixture(scope="session")
def caffe_spec(gap_dense_model):
    """The small GAP-Dense model behind caffe preprocessing (BGR flip and mean subtraction), so the
    in-graph affine preprocessing is checked against Keras' own function."""
    from gradcam_cli.models.in_memory import spec_for_model

    return spec_for_model(gap_dense_model, preprocess="caffe")


# ---- heads other than softmax, and a model with two outputs

def _trunk(keras, inputs):
    x = keras.layers.Conv2D(6, 3, activation="relu", name="target")(inputs)
    x = keras.layers.Conv2D(5, 3, activation="tanh", name="after")(x)
    return keras.layers.GlobalAveragePooling2D(name="gap")(x)


def head_model(keras, units: int, activation: str | None, name: str):
    inputs = keras.Input((HEAD_SIZE, HEAD_SIZE, 3))
    outputs = keras.layers.Dense(units, activation=activation, name="head")(_trunk(keras, inputs))
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="session")
def head_models(keras):
    """One model per head kind, on the same trunk: the explained layer is 'target'."""
    keras.utils.set_random_seed(7)
    return {
        "binary": head_model(keras, 1, "sigmoid", "binary"),
        "multilabel": head_model(keras, 4, "sigmoid", "multilabel"),
        "regression": head_model(keras, 1, None, "regression"),
        "relu_regression": head_model(keras, 2, "relu", "counts"),
        "logits": head_model(keras, 3, None, "logits"),
    }


@pytest.fixture(scope="session")
def two_output_model(keras):
    inputs = keras.Input((HEAD_SIZE, HEAD_SIZE, 3))
    features = _trunk(keras, inputs)
    kind = keras.layers.Dense(3, activation="softmax", name="kind")(features)
    age = keras.layers.Dense(1, name="age")(features)
    return keras.Model(inputs, [kind, age], name="two_outputs")


@pytest.fixture(scope="session")
def head_images():
    return np.random.default_rng(3).uniform(0, 255, (3, HEAD_SIZE, HEAD_SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="session")
def saved_head_models(tmp_path_factory, head_models, two_output_model):
    """The head models and the two-output model as .keras files, with an image of their input size."""
    folder = tmp_path_factory.mktemp("heads")
    paths = {}
    for name, model in {**head_models, "two": two_output_model}.items():
        paths[name] = folder / f"{name}.keras"
        model.save(paths[name])
    picture = np.random.default_rng(0).integers(0, 255, (HEAD_SIZE, HEAD_SIZE, 3), dtype=np.uint8)
    Image.fromarray(picture).save(folder / "a.png")
    paths["image"] = folder / "a.png"
    return paths


@pytest.fixture(scope="session")
def two_output_model_file(tmp_path_factory, keras):
    """:func:`tests.references.kind_and_age_model` saved as a .keras file (32 px input)."""
    model = kind_and_age_model(keras)
    path = tmp_path_factory.mktemp("two") / "two.keras"
    model.save(path)
    return path


# ---- a segmentation model

@pytest.fixture(scope="session")
def unet(keras):
    """A small U-Net: two encoder levels, a skip connection, a per-pixel softmax classifier."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((UNET_SIZE, UNET_SIZE, 3))
    enc1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="enc1")(inputs)
    enc2 = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="enc2")(
        keras.layers.MaxPooling2D(name="down")(enc1))
    merged = keras.layers.Concatenate(name="merge")([enc1, keras.layers.UpSampling2D(name="up")(enc2)])
    decoded = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="dec")(merged)
    outputs = keras.layers.Conv2D(4, 1, activation="softmax", name="classifier")(decoded)
    model = keras.Model(inputs, outputs, name="tiny_unet")
    kernel, bias = model.get_layer("classifier").get_weights()
    bias[NEVER] = -100.0
    model.get_layer("classifier").set_weights([kernel, bias])
    return model


@pytest.fixture(scope="session")
def unet_images():
    return np.random.default_rng(8).uniform(0, 255, (2, UNET_SIZE, UNET_SIZE, 3)).astype(np.float32)


# ---- token models (keras-hub is in the test extra; the tests that need it skip where it is not installed)

@pytest.fixture(scope="session")
def keras_hub():
    return pytest.importorskip("keras_hub")


@pytest.fixture(scope="session")
def vit(keras, keras_hub):
    """A keras-hub ViT classifier: random weights, 32 px, patch 8, two blocks, width 32."""
    keras.utils.set_random_seed(21)
    backbone = keras_hub.models.ViTBackbone(image_shape=(TOKEN_SIZE, TOKEN_SIZE, 3), patch_size=8, num_layers=2,
                                            num_heads=2, hidden_dim=32, mlp_dim=64)
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=3)


@pytest.fixture(scope="session")
def vit_images():
    return np.random.default_rng(4).uniform(-1, 1, (3, TOKEN_SIZE, TOKEN_SIZE, 3)).astype(np.float32)


# ---- files

@pytest.fixture(scope="session")
def phone_jpeg(tmp_path_factory) -> Path:
    """A 12-megapixel photo (4000 x 3000) as a phone writes it."""
    path = tmp_path_factory.mktemp("phone") / "phone photo #1.jpg"
    photo(4000, 3000).save(path, quality=90)
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The awkward and broken files of tests/corpus.py: (folder, {relative name: GOOD or BAD})."""
    folder = tmp_path_factory.mktemp("corpus")
    return folder, make_corpus(folder)


@pytest.fixture
def inn(tmp_path):
    """Three small images in tmp_path/inn."""
    folder = tmp_path / "inn"
    folder.mkdir()
    for name in ("01_single_cross.png", "02_single_square.png", "05_pair_circle_triangle.png"):
        shutil.copy(SHAPES / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def report_dir(tmp_path_factory):
    """``gradcam explain --report`` over six demo shapes, a file named like markup and a broken file."""
    folder = tmp_path_factory.mktemp("report_in")
    for picture in sorted(SHAPES.glob("*.png"))[:6]:
        shutil.copy(picture, folder / picture.name)
    Image.open(SHAPES / "07_pair_cross_star.png").convert("RGB").save(folder / NASTY)
    (folder / "broken <b>bold.png").write_bytes(b"not an image")
    out = tmp_path_factory.mktemp("report_out")
    result = run("explain", folder, "-o", out, "--top-k", "2", "--report", "-q")
    assert result.exit_code == 1  # the broken file
    return out
