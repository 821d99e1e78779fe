"""Photo-like JPEGs for the speed benchmarks (throughput.py, backends.py, ray_cluster.py): smooth colour
fields, two demo shapes and sensor-like noise, at any size."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the lab (not installed) imports from the repo root

from lab.shapes import make_scene  # noqa: E402


def photo_like(rng: np.random.Generator, width: int = 640, height: int = 480) -> Image.Image:
    """Smooth colour fields, a few shapes (a third of the height, at least 256 px) and sensor-like
    noise: JPEG-compresses like a photo (a 12 MP one at quality 90 is about 2.6 MB). Built in strips,
    so a 120 MP picture needs no more than its own bytes plus one strip of floats."""
    coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    image = np.array(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))
    side = max(256, height // 3)
    objects = Image.fromarray(make_scene(rng, 256, "pair").image)
    objects = np.asarray(objects if side == 256 else objects.resize((side, side), Image.BICUBIC), np.float32)
    x, y = rng.integers(0, width - side), rng.integers(0, height - side)
    region = image[y : y + side, x : x + side]
    region[...] = 0.5 * region.astype(np.float32) + 0.5 * objects
    for top in range(0, height, 512):
        strip = image[top : top + 512]
        strip[...] = np.clip(strip + rng.normal(0, 6, strip.shape), 0, 255)
    return Image.fromarray(image)


def make_folder(folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (640, 480)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"photo_{i:05d}.jpg"
        photo_like(rng, *size).save(path, quality=90)
        paths.append(path)
    return paths
