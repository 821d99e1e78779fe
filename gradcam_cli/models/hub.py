"""``--model hub:PRESET``: a keras-hub image classifier (ViT, DeiT, Swin, ResNet, EfficientNet, ...).

keras-hub is an optional extra (``pip install 'gradcam-cli[hub]'``). A preset is downloaded once
(from Kaggle or Hugging Face) into keras-hub's cache; offline, save the classifier on a machine with
internet access (``classifier.save("model.keras")``) and pass the file, which loads like any other.
The preset's own image converter gives the input size and the scale/offset preprocessing.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelNotFound, WeightsUnavailable, param
from .labels import imagenet_labels
from .spec import ModelSpec, suggest


def _keras_hub():
    try:
        import keras_hub
    except ImportError:
        raise ModelNotFound(
            f"{param('model', 'hub:PRESET')} needs keras-hub: pip install 'gradcam-cli[hub]'."
        ) from None
    return keras_hub


def _converter_preprocess(converter):
    """``x * scale + offset`` on [0, 255] RGB batches, as the preset's ImageConverter computes it
    (resizing is done by the tool's own decoder, at the converter's size)."""
    scale = getattr(converter, "scale", None)
    offset = getattr(converter, "offset", None)
    scale_array = None if scale is None else np.asarray(scale, np.float32)
    offset_array = None if offset is None else np.asarray(offset, np.float32)

    def preprocess(batch: np.ndarray) -> np.ndarray:
        if scale_array is not None:
            batch = batch * scale_array
        if offset_array is not None:
            batch = batch + offset_array
        return batch

    return preprocess


def load_hub_preset(preset: str, input_size: tuple[int, int] | None = None) -> ModelSpec:
    """Build ``keras_hub.models.ImageClassifier.from_preset(preset)`` (downloads on first use)."""
    keras_hub = _keras_hub()
    known = keras_hub.models.ImageClassifier.presets
    is_handle = "://" in preset
    if preset not in known and not is_handle:
        raise ModelNotFound(
            f"unknown keras-hub image classifier preset '{preset}'.{suggest(preset, list(known))} "
            "keras_hub.models.ImageClassifier.presets lists them; a kaggle:// or hf:// handle works too."
        )
    try:
        classifier = keras_hub.models.ImageClassifier.from_preset(preset)
    except Exception as error:  # network and cache failures surface as many types
        detail = str(error).strip().splitlines()[0] if str(error).strip() else "no detail"
        raise WeightsUnavailable(
            f"could not get keras-hub preset '{preset}': {type(error).__name__}: {detail[:200]}. "
            "keras-hub downloads a preset once into its cache (KAGGLEHUB_CACHE), which needs internet "
            "access the first time. Offline: on a machine with internet run "
            f"keras_hub.models.ImageClassifier.from_preset('{preset}').save('model.keras') and pass "
            f"{param('model', 'model.keras')}."
        ) from None
    converter = getattr(getattr(classifier, "preprocessor", None), "image_converter", None)
    size = tuple(int(d) for d in (getattr(converter, "image_size", None) or ()) if d)
    shape = classifier.input_shape[1:3]
    if all(shape):
        size = (int(shape[0]), int(shape[1]))
    size = tuple(input_size) if input_size and not all(shape) else size
    if len(size) != 2:
        size = (224, 224)
    units = classifier.output_shape[-1]
    return ModelSpec(
        model=classifier,
        name=preset,
        preprocess=_converter_preprocess(converter),
        input_size=(int(size[0]), int(size[1])),
        labels=imagenet_labels() if units == 1000 else None,
        preprocess_name=f"keras-hub:{preset}",
        source=f"hub:{preset}",
        extra={"weights": preset},
    )
