"""keras-hub image classifiers (gradcam_cli/models/hub.py): presets offline and online (the
download replaced), and a saved keras-hub classifier loaded as a file. keras-hub is in the test
extra, so these run in CI; they skip only where it is not installed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gradcam_cli.cli import cli
from gradcam_cli.models import resolve_model
from tests.references import TOKEN_SIZE

keras_hub = pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def saved_vit(vit, tmp_path_factory):
    path = tmp_path_factory.mktemp("vit") / "vit.keras"
    vit.save(path)
    return path


@pytest.mark.slow
def test_saved_keras_hub_classifier_loads_and_lists_token_layers(saved_vit, tmp_path):
    from PIL import Image

    spec = resolve_model(str(saved_vit))
    assert spec.head.kind == "softmax" and spec.input_size == (TOKEN_SIZE, TOKEN_SIZE)
    result = CliRunner().invoke(cli, ["layers", "--model", str(saved_vit)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    picked = [line for line in result.output.splitlines() if line.startswith("*") and "tokens" in line]
    assert len(picked) == 1 and "transformer_block_2/ln_1" in picked[0] and "17x32" in picked[0]
    assert any("transformer_block_2 " in line and "tokens in" in line for line in result.output.splitlines())
    Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 90).save(tmp_path / "a.png")
    result = CliRunner().invoke(cli, ["explain", str(tmp_path / "a.png"), "--model", str(saved_vit), "--layer",
                                      "transformer_block_1", "-o", str(tmp_path / "out")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0])
    assert row["layer"].endswith("transformer_block_1") and row["heatmap_shape"] == [4, 4]


def test_hub_presets_fail_offline_with_a_clear_message(monkeypatch):
    """Offline as on this machine; the download is replaced by the failure it raises here, so CI
    machines with internet access never fetch a 330 MB preset."""

    def offline(*args, **kwargs):
        raise ConnectionError("HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries exceeded")

    monkeypatch.setattr(keras_hub.models.ImageClassifier, "from_preset", offline)
    runner = CliRunner()
    unknown = runner.invoke(cli, ["layers", "--model", "hub:vit_base_patch16_224_imagenett"], catch_exceptions=False)
    assert unknown.exit_code == 2 and "unknown keras-hub image classifier preset" in unknown.output
    assert "Did you mean vit_base_patch16_224_imagenet" in unknown.output
    result = runner.invoke(cli, ["layers", "--model", "hub:vit_base_patch16_224_imagenet"], catch_exceptions=False)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "could not get keras-hub preset 'vit_base_patch16_224_imagenet': ConnectionError" in result.output
    assert "needs internet" in result.output and "--model model.keras" in result.output


def test_hub_preset_path_uses_the_preset_converter(vit, monkeypatch):
    """The online path with the download replaced by a classifier built here: the converter's size
    and scale/offset become the spec's input size and preprocessing."""
    converter = keras_hub.layers.ViTImageConverter(image_size=(TOKEN_SIZE, TOKEN_SIZE), scale=1 / 127.5, offset=-1.0)
    vit.preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter)
    monkeypatch.setattr(keras_hub.models.ImageClassifier, "from_preset", lambda preset: vit)
    try:
        spec = resolve_model("hub:vit_base_patch16_224_imagenet")
    finally:
        vit.preprocessor = None
    assert spec.input_size == (TOKEN_SIZE, TOKEN_SIZE) and spec.source == "hub:vit_base_patch16_224_imagenet"
    pixels = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    np.testing.assert_allclose(spec.preprocess(pixels), [[[[-1.0, 0.0, 1.0]]]], atol=1e-6)
    assert spec.head.kind == "softmax" and spec.labels is None
