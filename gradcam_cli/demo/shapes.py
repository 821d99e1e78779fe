"""A seeded synthetic world of labelled shapes, with exact ground truth for every object.

Images hold one or more shapes (circle, square, triangle, star, cross) of random size, colour,
rotation and position on a plain, gradient, noisy or striped background, with distractor strokes.
Each object comes with its class, a pixel mask and a bounding box, so heatmaps can be scored
against the truth (pointing game, per-class discrimination, multi-instance coverage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "star", "cross")
KINDS = ("single", "pair", "same")  # one object; two of different classes; 2-3 of one class
SUPERSAMPLE = 2


@dataclass
class ShapeObject:
    label: int
    mask: np.ndarray  # (H, W) bool, at the image's size
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)

    @property
    def name(self) -> str:
        return CLASSES[self.label]


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    objects: list[ShapeObject]
    kind: str

    @property
    def labels(self) -> list[int]:
        return [o.label for o in self.objects]


def _polygon(label: int, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    def rotated(points):
        cos, sin = math.cos(angle), math.sin(angle)
        return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in points]

    if label == 1:  # square, corners on the circle of `radius`
        side = radius / math.sqrt(2)
        return rotated([(-side, -side), (side, -side), (side, side), (-side, side)])
    if label == 2:  # equilateral triangle
        return rotated([(radius * math.cos(a), radius * math.sin(a)) for a in np.radians([-90, 30, 150])])
    if label == 3:  # five-pointed star, inner radius 0.42
        points = []
        for i in range(10):
            r = radius if i % 2 == 0 else radius * 0.42
            a = math.radians(-90 + 36 * i)
            points.append((r * math.cos(a), r * math.sin(a)))
        return rotated(points)
    if label == 4:  # cross (plus sign), arm half-width 0.3
        w, r = radius * 0.3, radius
        return rotated([(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r),
                        (-w, w), (-r, w), (-r, -w), (-w, -w)])
    raise ValueError(label)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    style = rng.integers(4)
    base = rng.uniform(0, 255, 3)
    if style == 0:  # plain
        image = np.broadcast_to(base, (size, size, 3)).copy()
    elif style == 1:  # linear gradient
        other = rng.uniform(0, 255, 3)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / size
        t = (np.cos(angle) * xx + np.sin(angle) * yy)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        image = base * (1 - t[..., None]) + other * t[..., None]
    elif style == 2:  # noise
        image = base + rng.normal(0, rng.uniform(10, 40), (size, size, 3))
    else:  # stripes
        other = rng.uniform(0, 255, 3)
        period = rng.uniform(size / 16, size / 5)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:size, 0:size]
        t = (np.sin((np.cos(angle) * xx + np.sin(angle) * yy) / period * 2 * np.pi) > 0)[..., None]
        image = np.where(t, base, base * 0.6 + other * 0.4)
    return np.clip(image, 0, 255)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    mean = background.reshape(-1, 3).mean(axis=0)
    for _ in range(50):
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - mean).sum() > 200:
            break
    return tuple(int(c) for c in colour)


def _draw_distractors(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int) -> None:
    for _ in range(rng.integers(0, 4)):
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        x0, y0, x1, y1 = rng.uniform(0, size, 4)
        if rng.random() < 0.6:
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=max(1, int(size * rng.uniform(0.005, 0.02))))
        else:  # a small dot, well below object size
            r = size * rng.uniform(0.01, 0.03)
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)


def make_scene(rng: np.random.Generator, size: int = 64, kind: str = "single") -> Scene:
    """One image with its objects. ``kind``: 'single', 'pair' (two classes) or 'same' (2-3 of one)."""
    big = size * SUPERSAMPLE
    if kind == "single":
        labels = [int(rng.integers(len(CLASSES)))]
    elif kind == "pair":
        labels = [int(v) for v in rng.choice(len(CLASSES), 2, replace=False)]
    elif kind == "same":
        labels = [int(rng.integers(len(CLASSES)))] * int(rng.integers(2, 4))
    else:
        raise ValueError(f"unknown scene kind {kind!r}: one of {KINDS}")
    background = _background(rng, big)
    canvas = Image.fromarray(background.astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    _draw_distractors(rng, draw, big)
    scale = 1.0 if len(labels) == 1 else 0.7
    placed: list[tuple[float, float, float]] = []
    objects: list[ShapeObject] = []
    for label in labels:
        for _ in range(200):  # rejection sampling: objects never overlap
            radius = big * rng.uniform(0.13, 0.28) * scale
            cx, cy = rng.uniform(radius, big - radius, 2)
            if all(math.hypot(cx - x, cy - y) > radius + r + big * 0.03 for x, y, r in placed):
                break
        placed.append((cx, cy, radius))
        colour = _contrasting_colour(rng, background[int(cy) - 1:int(cy) + 2, int(cx) - 1:int(cx) + 2])
        mask_image = Image.new("L", (big, big), 0)
        mask_draw = ImageDraw.Draw(mask_image)
        angle = rng.uniform(0, 2 * math.pi)
        if label == 0:
            box = [cx - radius * 0.85, cy - radius * 0.85, cx + radius * 0.85, cy + radius * 0.85]
            draw.ellipse(box, fill=colour)
            mask_draw.ellipse(box, fill=255)
        else:
            polygon = _polygon(label, cx, cy, radius, angle)
            draw.polygon(polygon, fill=colour)
            mask_draw.polygon(polygon, fill=255)
        mask = np.asarray(mask_image.resize((size, size), Image.BILINEAR)) >= 128
        ys, xs = np.nonzero(mask)
        bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else (0, 0, 0, 0)
        objects.append(ShapeObject(label, mask, bbox))
    image = np.asarray(canvas.resize((size, size), Image.BILINEAR), dtype=np.uint8)
    return Scene(image=image, objects=objects, kind=kind)


def make_dataset(seed: int, count: int, size: int = 64, mix: dict[str, float] | None = None):
    """``count`` scenes as (images uint8 (N, S, S, 3), soft targets (N, classes), scenes)."""
    mix = mix or {"single": 0.7, "pair": 0.15, "same": 0.15}
    rng = np.random.default_rng(seed)
    kinds = rng.choice(list(mix), size=count, p=np.array(list(mix.values())) / sum(mix.values()))
    images = np.empty((count, size, size, 3), np.uint8)
    targets = np.zeros((count, len(CLASSES)), np.float32)
    scenes = []
    for i, kind in enumerate(kinds):
        scene = make_scene(rng, size, str(kind))
        images[i] = scene.image
        for label in set(scene.labels):
            targets[i, label] = 1.0
        targets[i] /= targets[i].sum()
        scenes.append(scene)
    return images, targets, scenes
