"""gradcam-cli: class activation maps for Keras image classifiers, from the shell or Python.

``import gradcam_cli`` is cheap: TensorFlow loads on the first call that needs it.

>>> import gradcam_cli                                              # doctest: +SKIP
>>> result = gradcam_cli.explain("demo", ["sample_images/shapes"], method="gradcam++")
>>> result.heatmaps.shape   # (images, targets, h, w), raw maps at the layer's resolution
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Explanation", "__version__", "explain"]


def __getattr__(name: str):
    if name in ("explain", "Explanation"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'gradcam_cli' has no attribute {name!r}")
