"""The options of a run and their defaults, shared by the command line, the API, the callback, evaluate and
both runners (no heavy imports: ``--help`` stays quick)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OVERLAY_SIZE = 1000
"""Longest side of an overlay in pixels (``--overlay-size``). 1000 px fills a laptop screen and keeps an
overlay JPEG near 200 KB; 12 MP phone photos (4000-4080 px wide) reach it by decoding at 1/4 scale in the
DCT domain, 48 MP ones at 1/8. ``original`` (None in the API) keeps the input's own size."""

DEFAULT_ALPHA = 0.4
"""Opacity of the heatmap in an overlay (``--alpha``, ``alpha=``), the same for every command, the API and
the callback: ``out = alpha * jet(h) + (1 - alpha) * image``."""

DEFAULT_MAX_MEGAPIXELS = 100.0
"""Largest decode allowed (``--max-megapixels``), also the cap on full-resolution pixels being decoded
at once across threads: about 300 MB as 8-bit RGB."""


@dataclass
class RunOptions:
    method: str = "gradcam"
    layer: str | None = None
    classes: list[str | int] | None = None
    top_k: int = 1
    batch_size: int = 16
    output_dir: Path | str = Path("gradcam_out")  # a folder, or an object-store URI (storage.py)
    alpha: float = DEFAULT_ALPHA
    colormap: str = "jet"
    overwrite: bool = False
    xla: bool = False
    smooth: str | None = None
    chunk_size: int | None = None  # None: the method default (32), refused by methods without chunks
    max_channels: int | None = None
    region: str | None = None  # segmentation: 'pred' (default), 'all' or a mask file
    overlay_size: int | None = DEFAULT_OVERLAY_SIZE  # longest side; None: the original's size
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS  # largest decode allowed (and held at once)
    workers: int = max(1, min(4, os.cpu_count() or 1))  # decode and write threads, each pool
