"""The options of a run and their defaults, shared by the command line, the API, the callback, evaluate and
both runners (no heavy imports: ``--help`` stays quick)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_OVERLAY_SIZE = 1000
"""Longest side of an overlay in pixels (``--overlay-size``). 1000 px fills a laptop screen and keeps an
overlay JPEG near 200 KB; 12 MP phone photos (4000-4080 px wide) reach it by decoding at 1/4 scale in the
DCT domain, 48 MP ones at 1/8. ``original`` (None in the API) keeps the input's own size."""

COLORMAP_NAMES = ("jet", "turbo", "hot", "gray")
"""The colour maps :mod:`gradcam_cli.render` draws (named here so ``--help`` needs no NumPy)."""

DEFAULT_ALPHA = 0.4
"""Opacity of the heatmap in an overlay (``--alpha``, ``alpha=``), the same for every command, the API and
the callback: ``out = alpha * jet(h) + (1 - alpha) * image``."""

DEFAULT_MAX_MEGAPIXELS = 100.0
"""Largest decode allowed (``--max-megapixels``), also the cap on full-resolution pixels being decoded
at once across threads: about 300 MB as 8-bit RGB."""


DEFAULT_MIN_SCORE = 0.5
"""A detector's boxes scoring at least this are explained (``--min-score``): keras-hub's decoder keeps
boxes from 0.5 by default too."""


EXPLAINER_FIELDS = ("method", "layer", "batch_size", "xla", "smooth", "chunk_size", "max_channels", "region",
                    "counterfactual", "combine", "tuning")
"""The options that make an explainer (its compiled graphs); the rest say what a run does with the maps."""

TUNING_FIELDS = {
    "finer_comparisons": "Finer-CAM: how many of the most similar classes the class is compared with (3)",
    "finer_alpha": "Finer-CAM: comparison strength in [0, 1] (1; 0 is Grad-CAM)",
    "kpca_kernel": "KPCA-CAM: sigmoid (default), rbf or linear (which is Eigen-CAM)",
    "kpca_gamma": "KPCA-CAM: the kernel's gamma (1 / channels)",
    "fem_sigmas": "FEM: a position counts when above the channel's mean + K standard deviations (2)",
}
"""The keys of ``tuning``: options that tune one method each (:attr:`CamMethod.tunables` says which), with
what they set and their default; the command line spells them ``--finer-comparisons`` ... ."""


@dataclass
class RunOptions:
    """The options of a run, one name and one default each, whoever starts the run: the command line
    builds one from its flags, :func:`gradcam_cli.explain` from its keywords, the Keras callback from
    its arguments; the explainer (:meth:`gradcam_cli.explainer.Explainer.from_options`), both runners and
    ``evaluate`` (:class:`gradcam_cli.evaluate.EvaluateOptions` extends it) read it.

    Args:
        method: a method name or alias (``gradcam methods`` lists them).
        layer: the target layer's name or nested path, or a list of them (each layer's map computed in
            the same forward pass and combined, see ``combine``); None: the automatic pick.
        classes: class indices or labels explained for every image; None: each image's ``top_k`` best.
        top_k: how many of each image's best classes to explain (not with ``classes``).
        batch_size: images per compiled step.
        output_dir: where a run writes: a folder or an object-store URI.
        alpha: heatmap opacity in overlays.
        colormap: jet, turbo, hot or gray.
        overwrite: redo inputs a previous run in ``output_dir`` finished (default: resume).
        xla: compile with XLA.
        smooth: None, 'aug' (flips and brightness) or 'eigen' (first principal component).
        chunk_size: channels per extra pass of Score-CAM and Ablation-CAM (None: 32).
        max_channels: Score-CAM keeps the N channels of highest variance.
        region: segmentation models: 'pred' (default), 'all' or a mask image.
        counterfactual: counterfactual maps (Selvaraju et al. 2017, section 3.3): the gradients of
            the explained score are negated, so a map shows what lowers the class's score; gradient
            methods only (refused for gradient-free and class-agnostic ones).
        combine: several layers only: 'mean' (the default) or 'product' of their maps, each upsampled
            to the finest grid and scaled to [0, 1] first.
        tuning: options that tune one method, by :data:`TUNING_FIELDS` key (``{"fem_sigmas": 3}``); one
            that tunes another method than ``method`` is refused.
        overlay_size: longest side of an overlay; None: the original's size.
        max_megapixels: largest decode allowed, also the pixels decoded at once across threads.
        workers: decode and write threads, each pool.
        min_score: a detector (``task='detect'``): explain the boxes its decoder kept that score at
            least this (the class probability the decoder ranks them by).
        boxes: a detector: explain only these of each image's boxes above ``min_score``, by number
            (0: the best); None: all of them.
        reference: an embedding model: the references whose cosine similarity is explained (a
            :class:`gradcam_cli.reference.Reference`; the API also takes an image or folder path,
            or a list of them); None: the model's own classes.
    """

    method: str = "gradcam"
    layer: str | list[str] | None = None
    classes: list[str | int] | None = None
    top_k: int = 1
    batch_size: int = 16
    output_dir: Path | str = Path("gradcam_out")
    alpha: float = DEFAULT_ALPHA
    colormap: str = "jet"
    overwrite: bool = False
    xla: bool = False
    smooth: str | None = None
    chunk_size: int | None = None
    max_channels: int | None = None
    region: str | None = None
    counterfactual: bool = False
    combine: str | None = None
    tuning: dict[str, float | int | str] | None = None
    overlay_size: int | None = DEFAULT_OVERLAY_SIZE
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS
    workers: int = max(1, min(4, os.cpu_count() or 1))
    min_score: float = DEFAULT_MIN_SCORE
    boxes: list[int] | None = None
    reference: Any = None

    def explainer_arguments(self, **overrides) -> dict:
        """The keywords of :class:`~gradcam_cli.explainer.Explainer` these options give (``overrides`` win)."""
        return {**{name: getattr(self, name) for name in EXPLAINER_FIELDS}, **overrides}
