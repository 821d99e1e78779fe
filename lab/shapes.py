"""A seeded, domain-randomized synthetic world of labelled shapes, with exact ground truth.

Images hold one to three shapes (circle, square, triangle, star, cross) whose extent is 10-80 % of
the side (a lone object may fill most of the frame, as in a close-up photo), at any rotation, filled (solid colour, gradient or texture) or outlined, at low or high
contrast to what lies under them, sometimes partly occluded. Backgrounds come from many families
(flat, gradients, multicolour blocks at several scales, random rectangles, fractal value noise
mapped through random palettes, stripes/checks/plaids at any angle, marble/wood grain, Voronoi
cells, soft blobs, foliage-like clutter) and are sometimes two families blended through a noise
mask; distractor strokes and dots are scattered over them, and decoys: objects of none of the
classes (elongated ellipses, lumpy blobs, bars, crescents, pentagons and hexagons, right-angled
traces with T and L junctions, letters), painted the way objects are, so that "a salient coloured
thing" is not a class; outlines are sometimes dashed. The whole image then gets random blur,
sensor noise, JPEG artefacts and tone changes (domain randomization, Tobin et al., IROS 2017).

Each object comes with its class, a pixel mask (the shape's filled region, outlined shapes
included, minus what an occluder hides) and a bounding box, so heatmaps can be scored against the
truth (pointing game, per-class discrimination, multi-instance coverage). Objects never overlap
one another; an occluder may cover part of one.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CLASSES = ("circle", "square", "triangle", "star", "cross")
KINDS = ("single", "pair", "same")  # one object; two of different classes; 2-3 of one class
SUPERSAMPLE = 2  # shapes are drawn at twice the size and box-filtered down (anti-aliasing)
EXTENT = (0.10, 0.80)  # an object's largest extent, as a fraction of the image side (one object alone)
CROWDED_EXTENT = {2: 0.50, 3: 0.40}  # the largest extent when two or three objects must fit
MIN_VISIBLE = 40.0  # Euclidean RGB distance (0..441) that most of an object's drawn pixels keep from what lies under them
OUTLINE_MIN_EXTENT = 0.16  # smaller shapes are always filled: a thick outline on them reads as a blob
DASHED = 0.3  # share of outlines drawn dashed
DECOY_EXTENT = (0.08, 0.40)  # decoys' largest extent, as a fraction of the side
LETTERS = "BEFGHJKLMNPRSUWYZbdefhkmnprsuwz2345679&?"  # glyphs that look like none of the classes


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


# ---------------------------------------------------------------------------------------------
# Geometry


def _polygon(label: int, cx: float, cy: float, radius: float, angle: float,
             rng: np.random.Generator) -> list[tuple[float, float]]:
    """Vertices of a square, triangle, star or cross whose farthest point is ``radius`` from the
    centre, rotated by ``angle``; proportions (star's inner radius, cross's arm width) and vertex
    positions are jittered so the model learns the class, not one drawing of it."""
    if label == 1:  # square: corners on the circle of `radius`
        points = [(radius * math.cos(a), radius * math.sin(a)) for a in np.radians([45, 135, 225, 315])]
    elif label == 2:  # equilateral triangle
        points = [(radius * math.cos(a), radius * math.sin(a)) for a in np.radians([-90, 30, 150])]
    elif label == 3:  # five-pointed star
        inner = rng.uniform(0.36, 0.55)
        points = []
        for i in range(10):
            r = radius if i % 2 == 0 else radius * inner
            a = math.radians(-90 + 36 * i)
            points.append((r * math.cos(a), r * math.sin(a)))
    elif label == 4:  # cross (plus sign): arms reach `radius` along the axes
        w, r = radius * rng.uniform(0.2, 0.36), radius
        points = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r),
                  (-w, w), (-r, w), (-r, -w), (-w, -w)]
    else:
        raise ValueError(label)
    jitter = radius * 0.04
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + (x + dx) * cos - (y + dy) * sin, cy + (x + dx) * sin + (y + dy) * cos)
            for (x, y), (dx, dy) in zip(points, rng.uniform(-jitter, jitter, (len(points), 2)), strict=True)]


def _shape_alpha(label: int, big: int, cx: float, cy: float, radius: float, angle: float,
                 outline: float, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(alpha of the drawn pixels, filled-region mask), both (size, size) float32 in [0, 1]."""
    filled = Image.new("L", (big, big), 0)
    drawn = Image.new("L", (big, big), 0) if outline else filled
    fill_draw, drawn_draw = ImageDraw.Draw(filled), ImageDraw.Draw(drawn)
    width = max(2, int(round(outline * radius))) if outline else 0
    if label == 0:
        aspect = rng.uniform(0.93, 1.0)
        rx, ry = radius * 0.85, radius * 0.85 * aspect
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        fill_draw.ellipse(box, fill=255)
        if outline:
            drawn_draw.ellipse(box, outline=255, width=width)
    else:
        polygon = _polygon(label, cx, cy, radius, angle, rng)
        fill_draw.polygon(polygon, fill=255)
        if outline:
            drawn_draw.line(polygon + polygon[:2], fill=255, width=width, joint="curve")
            drawn = Image.fromarray(np.minimum(np.asarray(drawn), np.asarray(filled)))
    if outline and rng.random() < DASHED:
        drawn = Image.fromarray(np.where(_dashes(rng, big, cx, cy), np.asarray(drawn), 0).astype(np.uint8))
    if rng.random() < 0.2:  # rounded corners
        smooth = ImageFilter.GaussianBlur(radius * rng.uniform(0.03, 0.1))
        filled = filled.filter(smooth).point(lambda v: 255 if v >= 128 else 0)
        drawn = filled if not outline else Image.fromarray(
            np.minimum(np.asarray(drawn.filter(smooth).point(lambda v: 255 if v >= 128 else 0)),
                       np.asarray(filled)))
    shrink = (size, size)
    alpha = np.asarray((drawn if outline else filled).resize(shrink, Image.BOX), np.float32) / 255
    region = np.asarray(filled.resize(shrink, Image.BOX), np.float32) / 255
    return alpha, region


def _dashes(rng: np.random.Generator, big: int, cx: float, cy: float) -> np.ndarray:
    """(big, big) bool: angular sectors around (cx, cy) that a dashed outline keeps (8-20 dashes,
    40-70 % of the turn drawn)."""
    ys, xs = np.mgrid[0:big, 0:big]
    turn = (np.arctan2(ys - cy, xs - cx) / (2 * math.pi) * int(rng.integers(8, 21)) + rng.random()) % 1.0
    return turn < rng.uniform(0.4, 0.7)


# ---------------------------------------------------------------------------------------------
# Textures: each returns (size, size, 3) float32 in [0, 255]


def _colours(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.uniform(0, 255, (count, 3)).astype(np.float32)


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A random (cells x cells) grid upsampled bicubically: smooth noise of one frequency."""
    grid = rng.random((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((size, size), Image.BICUBIC), np.float32)


def _fractal(rng: np.random.Generator, size: int) -> np.ndarray:
    """Fractal (1/f-like) value noise in [0, 1]: octaves of doubling frequency, Perlin-style."""
    cells = int(rng.integers(2, 6))
    persistence = rng.uniform(0.35, 0.8)
    total = np.zeros((size, size), np.float32)
    amplitude = 1.0
    while cells <= size // 2:
        total += amplitude * _value_noise(rng, size, cells)
        amplitude *= persistence
        cells *= 2
    return _unit(total)


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / max(high - low, 1e-6)


def _palette(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Map t in [0, 1] through a random piecewise-linear palette of 2-5 colours."""
    colours = _colours(rng, int(rng.integers(2, 6)))
    stops = np.linspace(0, 1, len(colours))
    return np.stack([np.interp(t, stops, colours[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def _coordinates(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by a random angle: (u, v), each (size, size)."""
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return xx * math.cos(angle) + yy * math.sin(angle), -xx * math.sin(angle) + yy * math.cos(angle)


def _flat(rng, size):
    return np.broadcast_to(_colours(rng, 1)[0], (size, size, 3)).copy()


def _gradient(rng, size):
    u, v = _coordinates(rng, size)
    if rng.random() < 0.3:  # radial
        cx, cy = rng.uniform(0, size, 2)
        yy, xx = np.mgrid[0:size, 0:size]
        t = _unit(np.hypot(xx - cx, yy - cy).astype(np.float32))
    else:
        t = _unit(u)
    return _palette(rng, t)


def _blocks(rng, size):
    """Multicolour blocks at one or several scales, sometimes rotated."""
    image = None
    for _ in range(int(rng.integers(1, 3))):
        cell = rng.uniform(2, size / 3)
        cells = max(2, int(math.ceil(1.5 * size / cell)))
        grid = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
        layer = Image.fromarray(grid).resize((cells * int(cell + 1),) * 2, Image.NEAREST)
        if rng.random() < 0.5:
            layer = layer.rotate(float(rng.uniform(0, 90)), resample=Image.NEAREST)
        offset = (layer.size[0] - size) // 2
        layer = np.asarray(layer, np.float32)[offset:offset + size, offset:offset + size]
        if image is None:
            image = layer
        else:
            keep = (_value_noise(rng, size, int(rng.integers(2, 8))) > 0.5)[..., None]
            image = np.where(keep, image, layer)
    return image


def _rectangles(rng, size):
    """Random overlapping rectangles and ellipses of random colours (a Mondrian-like collage)."""
    canvas = Image.fromarray(_flat(rng, size).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(5, 40))):
        x0, y0 = rng.uniform(-size / 4, size, 2)
        w = rng.uniform(size / 20, size / 2)
        h = w * rng.choice([-1, 1]) * rng.uniform(0.3, 0.6)  # elongated: never a square or a circle
        w, h = (w, abs(h)) if h > 0 else (abs(h), w)
        colour = tuple(int(c) for c in _colours(rng, 1)[0])
        (draw.rectangle if rng.random() < 0.7 else draw.ellipse)([x0, y0, x0 + w, y0 + h], fill=colour)
    return np.asarray(canvas, np.float32)


def _fractal_colour(rng, size):
    if rng.random() < 0.5:
        return _palette(rng, _fractal(rng, size))
    return np.stack([_fractal(rng, size) for _ in range(3)], axis=-1) * rng.uniform(120, 255) + rng.uniform(0, 100)


def _periodic(rng, size):
    """Stripes, checks or plaid at a random angle and period, hard or soft edged."""
    u, v = _coordinates(rng, size)
    period = rng.uniform(3, size / 4)
    su = np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))
    style = rng.integers(3)
    if style == 0:
        t = su
    elif style == 1:
        t = su * np.sin(2 * np.pi * v / period * rng.uniform(0.7, 1.4))
    else:
        t = 0.5 * su + 0.5 * np.sin(2 * np.pi * v / rng.uniform(3, size / 4))
    t = (t > 0).astype(np.float32) if rng.random() < 0.6 else _unit(t)
    return _palette(rng, t)


def _grain(rng, size):
    """Marble or wood grain: a sine of a coordinate warped by fractal turbulence."""
    u, v = _coordinates(rng, size)
    turbulence = _fractal(rng, size) * rng.uniform(2, 12)
    if rng.random() < 0.5:  # marble
        t = np.sin(2 * np.pi * u / rng.uniform(8, size / 2) + turbulence)
    else:  # wood rings around a random centre
        cx, cy = rng.uniform(-size, 2 * size, 2)
        yy, xx = np.mgrid[0:size, 0:size]
        t = np.sin(2 * np.pi * np.hypot(xx - cx, yy - cy) / rng.uniform(4, 20) + turbulence)
    return _palette(rng, _unit(t.astype(np.float32)))


def _voronoi(rng, size):
    """Voronoi cells (cobblestones, cracked paint): one colour per cell, darker near the borders."""
    count = int(rng.integers(6, 60))
    points = rng.uniform(0, size, (count, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    distances = np.hypot(xx[..., None] - points[:, 0], yy[..., None] - points[:, 1])
    nearest = np.partition(distances, 1, axis=-1)[..., :2]
    cell = np.argmin(distances, axis=-1)
    image = _colours(rng, count)[cell]
    edge = np.clip((nearest[..., 1] - nearest[..., 0]) / rng.uniform(1, 6), 0, 1)[..., None]
    return image * (rng.uniform(0.3, 1) + (1 - rng.uniform(0.3, 1)) * edge)


def _blobs(rng, size):
    """Photo-like: a smooth colour field with soft out-of-focus blobs (bokeh) over it."""
    base = np.stack([_value_noise(rng, size, int(rng.integers(2, 5))) for _ in range(3)], -1) * 255
    canvas = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    layer = Image.new("RGB", (size, size))
    alpha = Image.new("L", (size, size), 0)
    draw, alpha_draw = ImageDraw.Draw(layer), ImageDraw.Draw(alpha)
    for _ in range(int(rng.integers(3, 25))):
        cx, cy = rng.uniform(0, size, 2)
        r = rng.uniform(size / 30, size / 5)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(c) for c in _colours(rng, 1)[0]))
        alpha_draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=int(rng.integers(60, 200)))
    blur = ImageFilter.GaussianBlur(rng.uniform(size / 40, size / 15))  # out of focus: no crisp discs
    canvas.paste(layer.filter(blur), (0, 0), alpha.filter(blur))
    return np.asarray(canvas, np.float32)


def _foliage(rng, size):
    """Photo-like clutter: many small strokes and ellipses in a few related hues (leaves, gravel)."""
    hue = _colours(rng, 1)[0]
    canvas = Image.fromarray(np.clip(_fractal(rng, size)[..., None] * 0.5 * hue + hue * 0.3, 0, 255)
                             .astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(40, 160))):
        colour = tuple(int(c) for c in np.clip(hue * rng.uniform(0.3, 1.4) + rng.normal(0, 30, 3), 0, 255))
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(size / 60, size / 28)
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r * rng.uniform(0.3, 1), x + r, y + r], fill=colour)
        else:
            a = rng.uniform(0, 2 * np.pi)
            draw.line([(x, y), (x + 2 * r * math.cos(a), y + 2 * r * math.sin(a))], fill=colour,
                      width=max(1, int(r / 2)))
    return np.asarray(canvas, np.float32)


TEXTURES = (_flat, _gradient, _blocks, _rectangles, _fractal_colour, _periodic, _grain, _voronoi,
            _blobs, _foliage)
TEXTURE_WEIGHTS = np.array([0.5, 1, 1.6, 1.2, 1.4, 1.2, 1, 1, 1, 1])


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    family = rng.choice(len(TEXTURES), p=TEXTURE_WEIGHTS / TEXTURE_WEIGHTS.sum())
    return np.asarray(TEXTURES[family](rng, size), np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    image = _texture(rng, size)
    if rng.random() < 0.3:  # two families, split by a soft noise mask
        mask = np.clip((_value_noise(rng, size, int(rng.integers(2, 6))) - 0.5) * rng.uniform(4, 30) + 0.5, 0, 1)
        image = image * mask[..., None] + _texture(rng, size) * (1 - mask[..., None])
    if rng.random() < 0.3:  # lower the background's own contrast
        mean = image.mean(axis=(0, 1))
        image = mean + (image - mean) * rng.uniform(0.2, 0.8)
    return np.clip(image, 0, 255)


# ---------------------------------------------------------------------------------------------
# Scene


def _object_paint(rng: np.random.Generator, size: int, under: np.ndarray, difficulty: float) -> np.ndarray:
    """What fills an object: a solid colour, a two-colour gradient or a texture, chosen to stand at
    low (20 % at full difficulty) or high contrast to ``under`` (the mean colour beneath the object)."""
    low = rng.random() < 0.2 * difficulty
    for _ in range(60):
        colour = _colours(rng, 1)[0]
        distance = np.abs(colour - under).sum()
        if (70 <= distance <= 140) if low else distance >= 200:
            break
    style = rng.random()
    if style < 0.7:
        return np.broadcast_to(colour, (size, size, 3))
    if style < 0.85:
        u, _ = _coordinates(rng, size)
        other = np.clip(colour + rng.normal(0, 40, 3), 0, 255)
        t = _unit(u)[..., None]
        return colour * (1 - t) + other * t
    texture = _texture(rng, size)
    texture = (texture - texture.mean(axis=(0, 1))) * rng.uniform(0.2, 0.6)
    return np.clip(colour + texture, 0, 255)


def _distractors(rng: np.random.Generator, image: np.ndarray, size: int, difficulty: float) -> np.ndarray:
    """Strokes, arcs and dots well under the smallest object size."""
    canvas = Image.fromarray(image.astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 1 + round(6 * difficulty)))):
        colour = tuple(int(c) for c in _colours(rng, 1)[0])
        x0, y0, x1, y1 = rng.uniform(0, size, 4)
        choice = rng.random()
        if choice < 0.5:
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=max(1, int(size * rng.uniform(0.005, 0.025))))
        elif choice < 0.75:
            r = size * rng.uniform(0.05, 0.3)
            start = rng.uniform(0, 360)
            draw.arc([x0 - r, y0 - r, x0 + r, y0 + r], start, start + rng.uniform(30, 160), fill=colour,
                     width=max(1, int(size * rng.uniform(0.005, 0.02))))
        else:
            r = size * rng.uniform(0.005, 0.02)
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)
    return np.asarray(canvas, np.float32)


def _decoy_alpha(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) float32 alpha of one object of none of the classes: an elongated ellipse, a lumpy
    blob, a bar, a crescent, a pentagon or hexagon, a right-angled trace (T and L junctions) or a
    letter, sometimes outlined; drawn at :data:`SUPERSAMPLE` x like the objects."""
    big = size * SUPERSAMPLE
    radius = big * rng.uniform(*DECOY_EXTENT) / 2
    cx, cy = rng.uniform(0, big, 2)
    angle = rng.uniform(0, 2 * math.pi)
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    outline = int(round(radius * rng.uniform(0.15, 0.3))) if rng.random() < 0.3 else 0

    def rotated(points):
        cos, sin = math.cos(angle), math.sin(angle)
        return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in points]

    def closed(points):
        if outline:
            draw.line(points + points[:2], fill=255, width=outline, joint="curve")
        else:
            draw.polygon(points, fill=255)

    kind = rng.choice(["ellipse", "blob", "bar", "crescent", "polygon", "trace", "letter"])
    turn = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    if kind == "ellipse":  # at most 0.6 as wide as long: no one calls it a circle
        aspect = rng.uniform(0.25, 0.6)
        closed(rotated([(radius * math.cos(t), radius * aspect * math.sin(t)) for t in turn]))
    elif kind == "blob":
        lumps = 1 + sum(rng.uniform(0.15, 0.3) * np.cos(k * turn + rng.uniform(0, 2 * math.pi))
                        for k in rng.choice([2, 3, 4], 2, replace=False))
        closed(rotated([(radius * r * math.cos(t), radius * r * math.sin(t)) for r, t in zip(lumps, turn, strict=True)]))
    elif kind == "bar":
        w = radius * rng.uniform(0.12, 0.4)
        closed(rotated([(-radius, -w), (radius, -w), (radius, w), (-radius, w)]))
    elif kind == "polygon":
        sides = int(rng.choice([5, 6]))
        closed(rotated([(radius * math.cos(t), radius * math.sin(t))
                        for t in np.linspace(0, 2 * math.pi, sides, endpoint=False)]))
    elif kind == "crescent":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
        shift = radius * rng.uniform(0.35, 0.7)
        ox, oy = cx + shift * math.cos(angle), cy + shift * math.sin(angle)
        draw.ellipse([ox - radius, oy - radius, ox + radius, oy + radius], fill=0)
    elif kind == "trace":  # a circuit-like path: right-angled turns and a branch
        step = radius * rng.uniform(0.6, 1.2)
        points = [(0.0, 0.0)]
        for _ in range(int(rng.integers(2, 5))):
            x, y = points[-1]
            points.append((x + step * rng.choice([-1, 1]), y) if len(points) % 2 else (x, y + step * rng.choice([-1, 1])))
        width = max(2, int(radius * rng.uniform(0.1, 0.25)))
        draw.line(rotated(points), fill=255, width=width, joint="curve")
        x, y = points[len(points) // 2]
        draw.line(rotated([(x, y), (x, y + step * rng.choice([-1, 1]))]), fill=255, width=width)
    else:
        font = ImageFont.load_default(size=max(8, int(radius * 2)))
        glyph = Image.new("L", (big, big), 0)
        ImageDraw.Draw(glyph).text((cx, cy), str(rng.choice(list(LETTERS))), font=font, fill=255, anchor="mm")
        canvas = glyph.rotate(math.degrees(angle), center=(cx, cy))
    return np.asarray(canvas.resize((size, size), Image.BOX), np.float32) / 255


def _decoys(rng: np.random.Generator, image: np.ndarray, size: int, difficulty: float) -> np.ndarray:
    """Up to three objects of none of the classes, painted the way objects are (so paint says nothing
    about class): the model must learn the five shapes, not "a salient thing"."""
    if rng.random() >= 0.6 * difficulty:
        return image
    for _ in range(int(rng.integers(1, 4))):
        alpha = _decoy_alpha(rng, size)
        drawn = alpha >= 0.5
        if not drawn.any():
            continue
        paint = _object_paint(rng, size, image[drawn].mean(axis=0), difficulty)
        image = image * (1 - alpha[..., None]) + paint * alpha[..., None]
    return image


def _camera(rng: np.random.Generator, image: np.ndarray, difficulty: float) -> np.ndarray:
    """Tone, blur, sensor noise and JPEG artefacts, each with its own probability (times ``difficulty``)."""
    if rng.random() < 0.3:
        mean = image.mean()
        image = (image - mean) * rng.uniform(0.6, 1.3) + mean + rng.uniform(-30, 30)
    if rng.random() < 0.3:
        image = image * rng.uniform(0.8, 1.2, 3)  # colour cast
    image = np.clip(image, 0, 255)
    if rng.random() < 0.25 * difficulty:
        image = np.asarray(Image.fromarray(image.astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * image.shape[0] / 96)), np.float32)
    if rng.random() < 0.4 * difficulty:
        sigma = rng.choice([rng.uniform(2, 12), rng.uniform(12, 35)])
        shape = image.shape if rng.random() < 0.7 else image.shape[:2] + (1,)  # colour or luma noise
        image = image + rng.normal(0, sigma, shape).astype(np.float32)
    if rng.random() < 0.05 * difficulty:  # salt and pepper
        flips = rng.random(image.shape[:2]) < rng.uniform(0.005, 0.03)
        image[flips] = rng.choice([0.0, 255.0], (int(flips.sum()), 1))
    image = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < 0.3 * difficulty:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=int(rng.integers(8, 60)))
        image = np.asarray(Image.open(buffer).convert("RGB"))
    return image


def _place(rng: np.random.Generator, count: int, size: int, difficulty: float) -> list[tuple[float, float, float]]:
    """(cx, cy, radius) for ``count`` non-overlapping objects, in image pixels; easier scenes have
    no objects under 10 % + 12 % x (1 - difficulty) of the side."""
    high = (EXTENT[1] if count == 1 else CROWDED_EXTENT[min(count, 3)]) / 2
    low = min(EXTENT[0] / 2 + 0.06 * (1 - difficulty), high)
    placed: list[tuple[float, float, float]] = []
    for _ in range(count):
        for _ in range(300):
            radius = size * rng.uniform(low, high)
            margin = radius * 0.7  # up to about a third may leave the frame
            cx, cy = rng.uniform(margin, size - margin, 2)
            if all(math.hypot(cx - x, cy - y) > radius + r + size * 0.02 for x, y, r in placed):
                break
        placed.append((cx, cy, radius))
    return placed


def _visible_fraction(paint: np.ndarray, under: np.ndarray, alpha: np.ndarray) -> float:
    """Fraction of an object's drawn pixels (alpha >= 0.5) whose colour is at least
    :data:`MIN_VISIBLE` from the background under them (RGB Euclidean distance)."""
    drawn = alpha >= 0.5
    if not drawn.any():
        return 0.0
    return float(np.mean(np.linalg.norm(paint[drawn] - under[drawn], axis=-1) >= MIN_VISIBLE))


def make_scene(rng: np.random.Generator, size: int = 96, kind: str = "single", difficulty: float = 1.0,
               labels: list[int] | None = None) -> Scene:
    """One image with its objects. ``kind``: 'single', 'pair' (two classes) or 'same' (2-3 of one);
    ``labels`` fixes the objects' classes instead of drawing them (they must fit ``kind``).

    ``difficulty`` in [0, 1] scales the odds of everything that makes a scene hard (busy
    backgrounds, distractors, outlines, low contrast, small sizes, occlusion, camera effects):
    1 is the full randomization, 0 a large filled shape on a flat or gradient background. A training
    set mixes difficulties so that the easy images give the first gradients a signal."""
    if kind not in KINDS:
        raise ValueError(f"unknown scene kind {kind!r}: one of {KINDS}")
    if labels is not None:
        labels = [int(label) for label in labels]
    elif kind == "single":
        labels = [int(rng.integers(len(CLASSES)))]
    elif kind == "pair":
        labels = [int(v) for v in rng.choice(len(CLASSES), 2, replace=False)]
    elif kind == "same":
        labels = [int(rng.integers(len(CLASSES)))] * int(rng.integers(2, 4))
    big = size * SUPERSAMPLE
    simple = rng.random() >= difficulty
    background = (_flat if rng.random() < 0.5 else _gradient)(rng, size) if simple else _background(rng, size)
    image = _decoys(rng, _distractors(rng, background, size, difficulty), size, difficulty)
    regions = []
    for label, (cx, cy, radius) in zip(labels, _place(rng, len(labels), size, difficulty), strict=True):
        outlined = 2 * radius >= OUTLINE_MIN_EXTENT * size and rng.random() < 0.4 * difficulty
        outline = rng.uniform(0.08, 0.3) if outlined else 0.0
        alpha, region = _shape_alpha(label, big, cx * SUPERSAMPLE, cy * SUPERSAMPLE, radius * SUPERSAMPLE,
                                     rng.uniform(0, 2 * math.pi), outline, rng, size)
        under = image[region >= 0.5].mean(axis=0) if (region >= 0.5).any() else image.mean(axis=(0, 1))
        for _ in range(20):  # a person must see it: up to 20 paints, until most drawn pixels stand out from what is under them
            paint = _object_paint(rng, size, under, difficulty)
            if _visible_fraction(paint, image, alpha) >= 0.7:
                break
        image = image * (1 - alpha[..., None]) + paint * alpha[..., None]
        regions.append(region >= 0.5)
    for index in range(len(regions)):  # partial occlusion by a bar or blob of foreign texture
        if rng.random() < 0.15 * difficulty:
            ys, xs = np.nonzero(regions[index])
            if not len(ys):
                continue
            span = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
            occluder = Image.new("L", (size, size), 0)
            cx, cy = xs.mean() + rng.normal(0, span / 3), ys.mean() + rng.normal(0, span / 3)
            r = span * rng.uniform(0.12, 0.3)
            if rng.random() < 0.5:
                a = rng.uniform(0, np.pi)
                dx, dy = math.cos(a) * span, math.sin(a) * span
                ImageDraw.Draw(occluder).line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=int(r))
            else:
                ImageDraw.Draw(occluder).ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
            hidden = np.asarray(occluder) >= 128
            if (regions[index] & ~hidden).sum() < 0.65 * regions[index].sum():
                continue  # keep at least about two thirds of the object visible
            image = np.where(hidden[..., None], _texture(rng, size), image)
            regions = [region & ~hidden for region in regions]
    image = _camera(rng, image, difficulty)
    objects = []
    for label, region in zip(labels, regions, strict=True):
        ys, xs = np.nonzero(region)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else (0, 0, 0, 0)
        objects.append(ShapeObject(label, region, box))
    return Scene(image=image, objects=objects, kind=kind)


def soft_target(scene: Scene) -> np.ndarray:
    """The training target: probability spread evenly over the classes present."""
    target = np.zeros(len(CLASSES), np.float32)
    target[sorted(set(scene.labels))] = 1.0
    return target / target.sum()


def make_dataset(seed: int, count: int, size: int = 96, mix: dict[str, float] | None = None,
                 with_scenes: bool = True, difficulty: tuple[float, float] = (1.0, 1.0)):
    """``count`` scenes as (images uint8 (N, S, S, 3), soft targets (N, classes), scenes), where
    ``scenes`` (with their masks) is None when ``with_scenes`` is False, to save memory. Each
    scene's difficulty is drawn uniformly from the ``difficulty`` range."""
    mix = mix or {"single": 0.6, "pair": 0.25, "same": 0.15}
    rng = np.random.default_rng(seed)
    kinds = rng.choice(list(mix), size=count, p=np.array(list(mix.values())) / sum(mix.values()))
    images = np.empty((count, size, size, 3), np.uint8)
    targets = np.zeros((count, len(CLASSES)), np.float32)
    scenes = []
    for i, kind in enumerate(kinds):
        scene = make_scene(rng, size, str(kind), float(rng.uniform(*difficulty)))
        images[i] = scene.image
        targets[i] = soft_target(scene)
        if with_scenes:
            scenes.append(scene)
    return images, targets, (scenes if with_scenes else None)
