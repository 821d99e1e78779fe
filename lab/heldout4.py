"""A fourth held-out scene generator for the demo shapes classifier: shapes as physical things,
photographed.

Every object is a thing lying on a surface and seen by a camera: a cut-out of card or foam (with a
visible edge wall, a lit rim on the side facing the light and a soft drop shadow), a glossy sticker
(a specular streak, a faint shadow), a flat patch of paint (filled or outlined, brush grain, no
shadow) or an outline of tape (a thin shadow and a lit rim). The surface is a place where a person
might photograph such a thing: granite worktop, denim, knitted wool, a lawn, chevron parquet, moss
on stone, a foggy road, a rice paddy, a car bonnet with reflections, leather, rusty steel, leaf
litter, a shag carpet or a beach at the waterline.

How it is drawn (shares no code or method with the training generator or the other held-out ones):

- Pose: each shape is defined in its own plane (outer radius 1). The plane is turned in itself,
  tilted by at most 20 degrees about a random axis, seen from 3.5-8 radii away through a pinhole,
  then scaled and moved in the image. This is one 3x3 homography ``H`` (shape plane -> pixels,
  Hartley & Zisserman, *Multiple View Geometry*, 2nd ed., sec. 2.3: a plane seen by a pinhole camera).
- Coverage: every pixel of the object's box is cut into 3x3 strata, one uniformly jittered sample
  per stratum (stratified sampling, Mitchell 1987 / Cook 1986 "stochastic sampling"); each sample is
  mapped back through ``H^-1`` into the shape's plane and tested there: ``u^2 + v^2 < 1`` for the
  circle, even-odd crossing count over the polygon edges for the others, and for an outline also
  the exact distance to the nearest edge (< stroke). Coverage is the share of the 9 samples inside.
- Shading: the face gets a Lambert factor from its tilted normal and the light direction, a mild
  gradient across its own plane and a texture of its own; the wall, rim and shadow are the face's
  coverage shifted by whole pixels along/against the light, the shadow blurred.
- Camera: white balance, exposure curve, vignetting, sometimes a soft shadow band, glare veil,
  a disc-kernel defocus, a one-pixel colour fringe, a down-up resample, sensor noise and JPEG.

Fairness guarantees (all checked in ``tests/test_heldout4.py``):

- Geometry: squares, equilateral triangles, 5-point stars (inner/outer 0.38-0.5), plus-sign crosses
  (arm width 0.28-0.4 of the length) and discs, any rotation, tilted at most 20 degrees; a lone
  object's largest extent is 10-70 % of the side; outlines are 3-6 % of the side wide and only on
  objects of at least 16 % of the side, and only where a hole stays clearly open inside.
- Objects never overlap (bounding circles kept apart by a gap); at most 20 % of an object is hidden
  by a foreground leaf, and that only in a minority of scenes.
- Clutter is only leaves (pointed, never round, square, triangular, star- or cross-like), kept off
  the objects.
- Contrast, measured on the final image: the mean colour of an object's ink differs from the mean
  of a ring of surface around it by at least ``MIN_MEAN_COLOUR_DISTANCE`` (RGB, 0-255), and at most
  ``MAX_CONFUSABLE_SHARE`` of the ring's pixels are nearer the ink's mean than the ring's own mean
  (and vice versa for the ink). A scene that fails is drawn again, with calmer camera effects after
  a few tries.

``python -m lab.heldout4 sheet.png`` writes a contact sheet and prints the speed.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("circle", "square", "triangle", "star", "cross")
KINDS = ("single", "pair", "same")

MAX_TILT_DEGREES = 20.0
MIN_MEAN_COLOUR_DISTANCE = 60.0
MAX_CONFUSABLE_SHARE = 0.12
MAX_OCCLUDED_SHARE = 0.20
OBJECT_GAP_FRACTION = 0.03  # of the side, between the bounding circles of two objects
STRATA = 3  # 3x3 jittered samples per pixel

PALETTE = np.array([
    (220, 40, 40), (240, 130, 20), (250, 215, 40), (140, 210, 40), (30, 150, 60), (20, 170, 160),
    (60, 200, 240), (40, 80, 210), (25, 30, 90), (130, 50, 180), (220, 50, 170), (250, 160, 190),
    (245, 245, 240), (20, 20, 22), (120, 70, 30), (240, 225, 180),
], np.float32)


@dataclass(frozen=True)
class ShapePose:
    """Where a shape lies: its class, its turn in its own plane, its proportion (star inner/outer
    radius, cross arm width/length; 0 otherwise), the homography from its plane (outer radius 1) to
    image pixels (x right, y down, pixel (row, col) centred at (col + 0.5, row + 0.5)) and its outline
    width in plane units (0 for a filled shape)."""

    label: int
    rotation: float
    proportion: float
    homography: np.ndarray
    stroke: float

    def boundary(self, points: int = 180) -> np.ndarray:
        """The shape's boundary in its own plane, (K, 2)."""
        return shape_boundary(self.label, self.rotation, self.proportion, points)

    def image_boundary(self, points: int = 180) -> np.ndarray:
        """The boundary mapped into image pixel coordinates, (K, 2)."""
        return apply_homography(self.homography, self.boundary(points))


@dataclass
class SceneObject:
    label: int
    mask: np.ndarray  # (H, W) bool: the object, an outline's interior included, minus occlusion
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 exclusive
    ink: np.ndarray  # (H, W) bool: the visible painted/cut material (the stroke of an outline)
    style: str  # cutout, sticker, paint or tape
    outlined: bool
    pose: ShapePose
    occluded_share: float


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    objects: list[SceneObject]
    kind: str
    surface: str
    occluder: np.ndarray  # (H, W) bool: the foreground leaf, if any


# ---------------------------------------------------------------- geometry


def shape_boundary(label: int, rotation: float, proportion: float, points: int = 180) -> np.ndarray:
    """Vertices of the shape in its own plane (outer radius 1); the circle as a ``points``-gon."""
    name = CLASSES[label]
    if name == "circle":
        angles = rotation + np.linspace(0, 2 * np.pi, points, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles)], 1)
    if name == "square":
        angles = rotation + np.pi / 4 + np.arange(4) * np.pi / 2
        radii = np.ones(4)
    elif name == "triangle":
        angles = rotation - np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        radii = np.ones(3)
    elif name == "star":
        angles = rotation - np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, proportion)
    else:  # cross: half-length 1, half arm width = proportion (arm width / total length)
        h = proportion
        corners = np.array([(h, 1), (-h, 1), (-h, h), (-1, h), (-1, -h), (-h, -h), (-h, -1), (h, -1),
                            (h, -h), (1, -h), (1, h), (h, h)], float)
        c, s = math.cos(rotation), math.sin(rotation)
        return corners @ np.array([[c, s], [-s, c]])
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)


def apply_homography(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (K, 2) points through a 3x3 homography (homogeneous coordinates, divide by w)."""
    mapped = np.c_[points, np.ones(len(points))] @ homography.T
    return mapped[:, :2] / mapped[:, 2:3]


def _tilted_plane_homography(tilt: float, axis_angle: float, distance: float) -> np.ndarray:
    """Plane (u, v, 0) turned by ``tilt`` about the in-plane axis at ``axis_angle``, placed
    ``distance`` radii in front of a pinhole whose focal length equals ``distance`` (so the scale at
    the centre is 1): (u, v, 1) -> (f X, f Y, Z) with (X, Y, Z) = R (u, v, 0) + (0, 0, d)."""
    axis = np.array([math.cos(axis_angle), math.sin(axis_angle), 0.0])
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + math.sin(tilt) * cross + (1 - math.cos(tilt)) * cross @ cross  # Rodrigues
    f = distance
    return np.array([[f * rotation[0, 0], f * rotation[0, 1], 0.0],
                     [f * rotation[1, 0], f * rotation[1, 1], 0.0],
                     [rotation[2, 0], rotation[2, 1], distance]])


def _inside_polygon(u: np.ndarray, v: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: a point is inside when a ray towards +u crosses the boundary an odd number
    of times."""
    inside = np.zeros(u.shape, bool)
    for (u1, v1), (u2, v2) in zip(polygon, np.roll(polygon, -1, 0), strict=True):
        if v1 == v2:
            continue
        straddles = (v1 > v) != (v2 > v)
        crossing_u = u1 + (v - v1) * (u2 - u1) / (v2 - v1)
        inside ^= straddles & (u < crossing_u)
    return inside


def _distance_to_edges(u: np.ndarray, v: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Euclidean distance from each point to the nearest polygon edge (point-segment distance)."""
    nearest = np.full(u.shape, np.inf)
    for (u1, v1), (u2, v2) in zip(polygon, np.roll(polygon, -1, 0), strict=True):
        du, dv = u2 - u1, v2 - v1
        t = np.clip(((u - u1) * du + (v - v1) * dv) / (du * du + dv * dv), 0, 1)
        nearest = np.minimum(nearest, np.hypot(u - u1 - t * du, v - v1 - t * dv))
    return nearest


def _plane_test(pose: ShapePose) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(u, v) -> (inside the filled shape, on its ink), tested in the shape's own plane."""
    if CLASSES[pose.label] == "circle":
        def test(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            radius = np.hypot(u, v)
            inside = radius < 1
            return inside, inside & (radius > 1 - pose.stroke) if pose.stroke else inside
        return test
    polygon = shape_boundary(pose.label, pose.rotation, pose.proportion)

    def test(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = _inside_polygon(u, v, polygon)
        if not pose.stroke:
            return inside, inside
        return inside, inside & (_distance_to_edges(u, v, polygon) < pose.stroke)
    return test


def _open_hole_width(label: int, proportion: float) -> float:
    """Half the narrowest inner width of the shape in plane units: an outline narrower than about
    half of it leaves a plainly visible hole."""
    name = CLASSES[label]
    return {"circle": 1.0, "square": math.sqrt(0.5), "triangle": 0.5,
            "star": proportion * math.cos(math.pi / 5), "cross": proportion}[name]


def _stratified_coverage(rng: np.random.Generator, box: tuple[int, int, int, int],
                         to_plane: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                         test: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                         strata: int = STRATA) -> tuple[np.ndarray, np.ndarray]:
    """Share of ``strata`` x ``strata`` jittered samples per pixel of ``box`` that ``test`` finds
    inside, after mapping each sample into the object's plane; returns (filled, ink) coverage."""
    x0, y0, x1, y1 = box
    count = strata * strata
    jitter = rng.random((2, count, y1 - y0, x1 - x0))
    cells = np.arange(count)
    xs = x0 + np.arange(x1 - x0)[None, None, :] + ((cells % strata)[:, None, None] + jitter[0]) / strata
    ys = y0 + np.arange(y1 - y0)[None, :, None] + ((cells // strata)[:, None, None] + jitter[1]) / strata
    filled, ink = test(*to_plane(xs, ys))
    return filled.mean(0), ink.mean(0)


def _homography_map(inverse: np.ndarray) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    def to_plane(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = inverse[2, 0] * x + inverse[2, 1] * y + inverse[2, 2]
        return ((inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]) / w,
                (inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]) / w)
    return to_plane


def _leaf_map(centre: tuple[float, float], length: float, angle: float
              ) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    c, s, half = math.cos(angle), math.sin(angle), length / 2

    def to_leaf(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - centre[0], y - centre[1]
        return (dx * c + dy * s) / half, (-dx * s + dy * c) / half
    return to_leaf


def _leaf_test(width: float, fullness: float) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A pointed leaf along a in [-1, 1] (half width ``width`` (1 - a^2)^fullness) with a stalk."""
    def test(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        blade = np.abs(b) < width * np.clip(1 - a * a, 0, 1) ** fullness
        stalk = (a < -0.9) & (a > -1.3) & (np.abs(b) < 0.03)
        leaf = blade | stalk
        return leaf, leaf
    return test


# ---------------------------------------------------------------- image helpers


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Random values on a (cells+1)^2 lattice, bicubically enlarged to (size, size), about [0, 1]."""
    lattice = rng.random((cells + 1, cells + 1)).astype(np.float32)
    enlarged = Image.fromarray(lattice, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(enlarged, np.float32)


def _shift(array: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """out[y, x] = array[y - dy, x - dx], zero outside."""
    out = np.zeros_like(array)
    h, w = array.shape[:2]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        array[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def _blur(array: np.ndarray, radius: float) -> np.ndarray:
    image = Image.fromarray(np.clip(array * 255, 0, 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), np.float32) / 255


def _grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate a bool mask by a (2 pixels + 1) square: a running maximum along rows, then columns."""
    out = mask.copy()
    for axis in (0, 1):
        source = out.copy()
        for step in range(1, pixels + 1):
            if axis == 0:
                out[step:] |= source[:-step]
                out[:-step] |= source[step:]
            else:
                out[:, step:] |= source[:, :-step]
                out[:, :-step] |= source[:, step:]
    return out


def _shrink(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Erode a bool mask by a (2 pixels + 1) square; outside the image counts as outside the mask."""
    padded = np.pad(~mask, pixels, constant_values=True)
    return ~_grow(padded, pixels)[pixels:-pixels, pixels:-pixels]


def _mix(image: np.ndarray, colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    weight = weight[..., None]
    return image * (1 - weight) + colour * weight


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x + 0.5, y + 0.5


# ---------------------------------------------------------------- surfaces


def _granite(rng: np.random.Generator, s: int) -> np.ndarray:
    stones = [((45, 44, 48), [(10, 10, 12), (150, 150, 155), (95, 70, 60)]),
              ((200, 188, 170), [(60, 55, 50), (235, 230, 220), (150, 110, 80)]),
              ((160, 115, 105), [(40, 35, 35), (210, 190, 180), (110, 60, 55)]),
              ((95, 100, 105), [(25, 25, 30), (200, 200, 205), (70, 90, 80)])]
    base, minerals = stones[rng.integers(len(stones))]
    image = np.full((s, s, 3), base, np.float32) * (0.9 + 0.2 * _smooth_noise(rng, s, 4))[..., None]
    for mineral in minerals:
        grains = np.clip((_smooth_noise(rng, s, max(8, s // 2)) - rng.uniform(0.74, 0.84)) * 10, 0, 1)
        grains *= np.clip((_smooth_noise(rng, s, 6) - 0.2) * 3, 0, 1)  # crystals cluster in veins
        image = _mix(image, np.array(mineral, np.float32), grains)
    mica = (rng.random((s, s)) > 0.985).astype(np.float32) * 0.6
    image = _mix(image, np.array((250, 250, 250), np.float32), mica)
    x, y = _coords(s)
    angle = rng.uniform(0, 2 * np.pi)
    sheen = np.exp(-(((x * math.cos(angle) + y * math.sin(angle)) / s - rng.uniform(0.3, 1.0)) / 0.2) ** 2)
    return _mix(image, np.array((255, 255, 255), np.float32), 0.15 * sheen)


def _denim(rng: np.random.Generator, s: int) -> np.ndarray:
    x, y = _coords(s)
    angle = math.radians(rng.uniform(55, 70)) * rng.choice([-1, 1])
    period = rng.uniform(2.6, 3.6) * s / 128
    position = (x * math.cos(angle) + y * math.sin(angle)) / period
    thread = rng.random(int(np.abs(position).max()) + 3)[np.floor(np.abs(position)).astype(int)]
    twill = 0.5 + 0.5 * np.sin(2 * np.pi * position)
    fade = _smooth_noise(rng, s, 3)
    weft = 0.1 + 0.35 * twill * (0.5 + thread) * (0.4 + fade) + 0.1 * rng.random((s, s))
    indigo = np.array([(35, 55, 110), (50, 75, 130), (25, 35, 70), (80, 105, 150)][rng.integers(4)], np.float32)
    return _mix(np.full((s, s, 3), indigo), np.array((205, 210, 220), np.float32), np.clip(weft, 0, 1))


def _knit(rng: np.random.Generator, s: int) -> np.ndarray:
    x, y = _coords(s)
    width = rng.uniform(6, 9) * s / 128
    height = width * rng.uniform(0.6, 0.8)
    across = (x / width) % 1 - 0.5
    loop = np.sin(np.pi * ((y / height - 1.4 * np.abs(across)) % 1)) ** 0.6
    valley = 1 - 0.55 * np.exp(-((np.abs(across) - 0.5) / 0.08) ** 2)
    fuzz = 1 + 0.08 * rng.standard_normal((s, s))
    light = 0.85 + 0.3 * _smooth_noise(rng, s, 3)
    wool = np.array([(170, 40, 45), (200, 190, 170), (60, 90, 130), (110, 130, 70), (150, 120, 160),
                     (90, 80, 75)][rng.integers(6)], np.float32)
    return wool * ((0.45 + 0.55 * loop) * valley * fuzz * light)[..., None]


def _lawn(rng: np.random.Generator, s: int) -> np.ndarray:
    dark = np.array((25, 55, 20)) * rng.uniform(0.8, 1.2)
    canvas = Image.new("RGB", (s, s), tuple(int(c) for c in dark))
    draw = ImageDraw.Draw(canvas)
    count = s * s // 10
    starts = rng.random((count, 2)) * [s, s + s * 0.15]
    starts = starts[np.argsort(starts[:, 1])]
    lengths = rng.uniform(5, 16, count) * s / 128
    angles = -np.pi / 2 + rng.normal(0, 0.35, count)
    greens = np.array([(45, 95, 30), (70, 130, 40), (100, 150, 50), (130, 160, 70), (60, 110, 45)])
    picks = greens[rng.integers(len(greens), size=count)] * rng.uniform(0.75, 1.15, (count, 1))
    shade = 0.6 + 0.4 * starts[:, 1] / (s * 1.15)
    for (x, y), length, angle, colour, light in zip(starts, lengths, angles, picks, shade, strict=True):
        bend = rng.normal(0, 0.25)
        mid = (x + 0.5 * length * math.cos(angle), y + 0.5 * length * math.sin(angle))
        tip = (mid[0] + 0.5 * length * math.cos(angle + bend), mid[1] + 0.5 * length * math.sin(angle + bend))
        fill = tuple(int(min(255, c * light)) for c in colour)
        draw.line([(x, y), mid, tip], fill=fill, width=max(1, round(s / 100)))
    return np.asarray(canvas, np.float32)


def _parquet(rng: np.random.Generator, s: int) -> np.ndarray:
    x, y = _coords(s)
    if rng.random() < 0.5:
        x, y = y, x
    plank = rng.uniform(6, 10) * s / 128
    column_width = plank * rng.uniform(2.5, 3.5)
    column = np.floor(x / column_width).astype(int)
    slope = np.where(column % 2 == 0, 1.0, -1.0)
    along = (y + slope * x) / (plank * math.sqrt(2))
    index = np.floor(along).astype(int)
    tones = rng.uniform(0.75, 1.15, 997)
    tone = tones[(column * 131 + index * 37) % 997]
    seam = np.minimum(along % 1, 1 - along % 1) * plank * math.sqrt(2) < 0.6
    seam |= np.minimum((x / column_width) % 1, 1 - (x / column_width) % 1) * column_width < 0.6
    grain = 1 + 0.06 * np.sin((y - slope * x) * rng.uniform(0.8, 1.6) + 3 * _smooth_noise(rng, s, 8))
    wood = np.array([(185, 135, 80), (110, 70, 40), (215, 185, 140), (150, 95, 55)][rng.integers(4)], np.float32)
    return wood * (tone * grain * np.where(seam, 0.55, 1.0))[..., None]


def _mossy_stone(rng: np.random.Generator, s: int) -> np.ndarray:
    grey = rng.uniform(100, 150)
    stone = grey * (0.7 + 0.25 * _smooth_noise(rng, s, 5) + 0.15 * _smooth_noise(rng, s, s // 6))
    image = np.stack([stone, stone * 0.98, stone * 0.95], -1)
    patches = _smooth_noise(rng, s, 5) * 0.6 + _smooth_noise(rng, s, s // 8) * 0.4
    moss = np.clip((patches - rng.uniform(0.45, 0.6)) * 8, 0, 1)
    tuft = 0.75 + 0.5 * rng.random((s, s))
    green = np.array((70, 105, 35), np.float32) * rng.uniform(0.8, 1.2) * tuft[..., None]
    return image * (1 - moss[..., None]) + green * moss[..., None]


def _foggy_road(rng: np.random.Generator, s: int) -> np.ndarray:
    horizon = s * rng.uniform(0.28, 0.42)
    vanish = s * rng.uniform(0.35, 0.65)
    fog = np.array((200, 205, 208), np.float32) * rng.uniform(0.9, 1.05)
    canvas = Image.new("RGB", (s, s), tuple(int(c) for c in (np.array((85, 95, 60)) * rng.uniform(0.8, 1.2))))
    draw = ImageDraw.Draw(canvas)
    spread = s * rng.uniform(0.55, 0.9)
    draw.polygon([(vanish - 0.5, horizon), (vanish + 0.5, horizon), (vanish + spread, s), (vanish - spread, s)],
                 fill=(70, 72, 75))
    for side in (-1, 1):
        edge = spread * 0.93 * side
        draw.line([(vanish, horizon), (vanish + edge, s)], fill=(220, 220, 215), width=max(1, s // 90))
    depth = 1.0
    while depth < 40:
        near, far = horizon + (s - horizon) / depth, horizon + (s - horizon) / (depth + 0.6)
        width = 0.02 * spread / depth
        draw.polygon([(vanish - width, near), (vanish + width, near), (vanish + width * 0.6, far),
                      (vanish - width * 0.6, far)], fill=(225, 215, 150))
        depth *= 1.7
    image = np.asarray(canvas, np.float32) * (0.92 + 0.16 * rng.random((s, s)))[..., None]
    x, y = _coords(s)
    treeline = horizon - s * (0.02 + 0.08 * _smooth_noise(rng, s, 10)[0])
    trees = (y < horizon) & (y > treeline[None, :])
    image[trees] = (40, 50, 40)
    image[y < treeline[None, :]] = fog * 1.02
    thickness = np.exp(-np.clip(y - horizon, 0, None) / (s * rng.uniform(0.18, 0.4)))
    return _mix(image, fog, np.clip(thickness * rng.uniform(0.7, 0.95), 0, 1))


def _rice_paddy(rng: np.random.Generator, s: int) -> np.ndarray:
    horizon = s * rng.uniform(0.15, 0.3)
    x, y = _coords(s)
    sky = np.array((185, 200, 215), np.float32)
    water = sky * (0.6 + 0.35 * ((y - horizon) / s))[..., None] * (0.95 + 0.1 * _smooth_noise(rng, s, 6))[..., None]
    hills = horizon - s * 0.1 * _smooth_noise(rng, s, 4)[0]
    image = np.where((y < horizon)[..., None], np.where((y > hills[None, :])[..., None], (75, 100, 95), sky), water)
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    rows = 11
    for row in range(1, rows + 1):
        near = (row / rows) ** 1.8
        row_y = horizon + (s - horizon) * near
        gap = 3 + 9 * near * s / 128
        height = 2 + 9 * near * s / 128
        start = rng.uniform(0, gap)
        for tuft_x in np.arange(start, s, gap):
            tuft_x += rng.normal(0, gap * 0.1)
            green = tuple(int(c) for c in np.array((70, 140, 45)) * rng.uniform(0.7, 1.2))
            for lean in (-0.35, 0.0, 0.35):
                draw.line([(tuft_x, row_y), (tuft_x + lean * height, row_y - height)], fill=green, width=1)
            draw.line([(tuft_x, row_y + 1), (tuft_x, row_y + 1 + 0.6 * height)], fill=(60, 90, 70), width=1)
    return np.asarray(canvas, np.float32)


def _car_bonnet(rng: np.random.Generator, s: int) -> np.ndarray:
    x, y = _coords(s)
    paint = np.array([(170, 20, 25), (25, 50, 120), (20, 20, 22), (170, 175, 180), (235, 235, 232),
                      (30, 90, 60)][rng.integers(6)], np.float32)
    centre = s * rng.uniform(0.2, 0.8)
    horizon = s * rng.uniform(0.3, 0.6) + rng.uniform(-0.8, 0.8) * (x - centre) ** 2 / s
    horizon += s * 0.02 * np.sin(x / s * rng.uniform(4, 9))
    above = 1 / (1 + np.exp(np.clip((y - horizon) / 1.2, -50, 50)))
    sky = np.array((215, 225, 240), np.float32)
    reflection = _mix(np.broadcast_to(paint, (s, s, 3)), sky, above * rng.uniform(0.45, 0.7) * (0.7 + 0.3 * y / s))
    treeline = np.exp(-np.clip(y - horizon, 0, None) / (s * 0.06)) * (1 - above)
    reflection = reflection * (1 - 0.45 * treeline)[..., None]
    for _ in range(rng.integers(1, 3)):
        angle = rng.uniform(0, np.pi)
        offset = rng.uniform(0.1, 0.9) * s
        band = np.exp(-(((x - s / 2) * math.cos(angle) + (y - s / 2) * math.sin(angle) + s / 2 - offset)
                        / (s * rng.uniform(0.01, 0.03))) ** 2)
        reflection = _mix(reflection, np.array((255, 255, 255), np.float32), 0.5 * band)
    flakes = 1 + 0.05 * rng.standard_normal((s, s))
    return reflection * flakes[..., None]


def _random_walks(rng: np.random.Generator, s: int, count: int, steps: int, step: float) -> list[list[tuple[float, float]]]:
    walks = []
    for _ in range(count):
        point = rng.random(2) * s
        heading = rng.uniform(0, 2 * np.pi)
        walk = [tuple(point)]
        for _ in range(steps):
            heading += rng.normal(0, 0.5)
            point = point + step * np.array([math.cos(heading), math.sin(heading)])
            walk.append(tuple(point))
        walks.append(walk)
    return walks


def _leather(rng: np.random.Generator, s: int) -> np.ndarray:
    hide = np.array([(150, 95, 55), (90, 50, 30), (35, 30, 28), (110, 30, 30), (190, 150, 110)][rng.integers(5)],
                    np.float32)
    pebble = 0.88 + 0.2 * _smooth_noise(rng, s, s // 4) + 0.12 * _smooth_noise(rng, s, 3)
    creases = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(creases)
    for walk in _random_walks(rng, s, rng.integers(15, 35), 8, 3 * s / 128):
        draw.line(walk, fill=255, width=1)
    crease = np.asarray(creases.filter(ImageFilter.GaussianBlur(0.6)), np.float32) / 255
    pores = (rng.random((s, s)) > 0.99) * 0.2
    return hide * (pebble * (1 - 0.4 * crease) * (1 - pores))[..., None]


def _rusty_steel(rng: np.random.Generator, s: int) -> np.ndarray:
    steel = rng.uniform(105, 150) * (0.85 + 0.2 * _smooth_noise(rng, s, 4))
    image = np.stack([steel * 0.95, steel, steel * 1.05], -1)
    rust = np.clip((0.6 * _smooth_noise(rng, s, 6) + 0.4 * _smooth_noise(rng, s, s // 6) - rng.uniform(0.5, 0.62)) * 5,
                   0, 1)
    decay = rng.uniform(0.9, 0.98, s)
    streak = rust.copy()
    for row in range(1, s):
        streak[row] = np.maximum(streak[row], streak[row - 1] * decay)
    amount = np.clip(np.maximum(rust, 0.6 * streak), 0, 1)
    colour = np.array((150, 70, 30), np.float32) * (0.7 + 0.5 * rng.random((s, s)))[..., None]
    return _mix(image, colour, amount)


def _leaf_polygon(centre: np.ndarray, length: float, angle: float, width: float) -> list[tuple[float, float]]:
    along = np.linspace(-1, 1, 11)
    half = width * np.clip(1 - along ** 2, 0, 1) ** 0.7
    outline = np.r_[np.c_[along, half], np.c_[along[::-1], -half[::-1]]] * length / 2
    c, sn = math.cos(angle), math.sin(angle)
    points = outline @ np.array([[c, sn], [-sn, c]]) + centre
    return [tuple(p) for p in points]


def _leaf_litter(rng: np.random.Generator, s: int) -> np.ndarray:
    canvas = Image.new("RGB", (s, s), (55, 40, 28))
    draw = ImageDraw.Draw(canvas)
    autumn = np.array([(180, 90, 30), (200, 150, 40), (140, 50, 30), (120, 85, 45), (170, 120, 60), (100, 110, 40)])
    for _ in range(s * s // 90):
        length = rng.uniform(0.08, 0.2) * s
        angle = rng.uniform(0, 2 * np.pi)
        colour = autumn[rng.integers(len(autumn))] * rng.uniform(0.7, 1.1)
        centre = rng.random(2) * s
        draw.polygon(_leaf_polygon(centre, length, angle, rng.uniform(0.25, 0.4)),
                     fill=tuple(int(c) for c in colour), outline=tuple(int(c * 0.6) for c in colour))
        tip = centre + 0.45 * length * np.array([math.cos(angle), math.sin(angle)])
        draw.line([tuple(2 * centre - tip), tuple(tip)], fill=tuple(int(c * 0.75) for c in colour), width=1)
    return np.asarray(canvas, np.float32) * (0.85 + 0.3 * _smooth_noise(rng, s, 3))[..., None]


def _shag_carpet(rng: np.random.Generator, s: int) -> np.ndarray:
    base = np.array([(120, 100, 80), (60, 70, 110), (150, 140, 130), (110, 50, 60), (80, 100, 80)][rng.integers(5)])
    canvas = Image.new("RGB", (s, s), tuple(int(c * 0.6) for c in base))
    draw = ImageDraw.Draw(canvas)
    pile = _smooth_noise(rng, s, 3) * 2 * np.pi
    for _ in range(s * s // 6):
        x, y = rng.random(2) * s
        angle = pile[int(y), int(x)] + rng.normal(0, 0.6)
        length = rng.uniform(2, 5) * s / 128
        colour = tuple(int(min(255, c * rng.uniform(0.7, 1.3))) for c in base)
        draw.line([(x, y), (x + length * math.cos(angle), y + length * math.sin(angle))], fill=colour, width=1)
    return np.asarray(canvas, np.float32) * (0.85 + 0.3 * _smooth_noise(rng, s, 4))[..., None]


def _shoreline(rng: np.random.Generator, s: int) -> np.ndarray:
    x, y = _coords(s)
    angle = rng.uniform(-0.6, 0.6) + (np.pi / 2 if rng.random() < 0.3 else 0)
    across = ((x - s / 2) * math.sin(angle) + (y - s / 2) * math.cos(angle)) / s + 0.5
    wave = 0.06 * np.sin((x * math.cos(angle) - y * math.sin(angle)) / s * rng.uniform(6, 14) + rng.uniform(0, 6))
    line = rng.uniform(0.35, 0.65) + wave
    sand = np.array((215, 195, 160), np.float32) * (0.9 + 0.12 * rng.random((s, s)))[..., None]
    wet = sand * 0.7
    sea = np.array((40, 110, 130), np.float32) * (0.85 + 0.3 * _smooth_noise(rng, s, 5))[..., None]
    image = np.where((across < line)[..., None], sea, np.where((across < line + 0.12)[..., None], wet, sand))
    lace = np.abs(_smooth_noise(rng, s, s // 10) - 0.5) < 0.06
    foam = lace & (np.abs(across - line) < 0.05) | (np.abs(across - line) < 0.008)
    return _mix(image, np.array((245, 245, 240), np.float32), foam * 0.85)


SURFACES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "granite": _granite, "denim": _denim, "knitted wool": _knit, "lawn": _lawn,
    "chevron parquet": _parquet, "moss on stone": _mossy_stone, "foggy road": _foggy_road,
    "rice paddy": _rice_paddy, "car bonnet": _car_bonnet, "leather": _leather,
    "rusty steel": _rusty_steel, "leaf litter": _leaf_litter, "shag carpet": _shag_carpet,
    "shoreline": _shoreline,
}


# ---------------------------------------------------------------- objects


@dataclass
class _Placed:
    pose: ShapePose
    filled: np.ndarray  # coverage (H, W) in [0, 1]
    ink: np.ndarray
    plane_u: np.ndarray  # plane coordinates of pixel centres
    plane_v: np.ndarray
    style: str
    normal_z: float
    radius_px: float
    centre: tuple[float, float]


def _extent_limits(kind_count: int) -> tuple[float, float]:
    return {1: (0.10, 0.70), 2: (0.10, 0.45), 3: (0.10, 0.34)}[kind_count]


def _make_pose(rng: np.random.Generator, label: int, extent_px: float, size: int,
               outline_ok: bool) -> tuple[ShapePose, np.ndarray, str]:
    name = CLASSES[label]
    rotation = rng.uniform(0, 2 * np.pi)
    proportion = {"star": rng.uniform(0.38, 0.5), "cross": rng.uniform(0.28, 0.4)}.get(name, 0.0)
    plane = _tilted_plane_homography(math.radians(rng.uniform(0, MAX_TILT_DEGREES)), rng.uniform(0, np.pi),
                                     rng.uniform(3.5, 8.0))
    boundary = apply_homography(plane, shape_boundary(label, rotation, proportion))
    span = (boundary.max(0) - boundary.min(0)).max()
    scale = extent_px / span
    placed = np.diag([scale, scale, 1.0]) @ plane
    outlined = outline_ok and extent_px >= 0.16 * size and rng.random() < 0.3
    stroke = 0.0
    if outlined:
        stroke_px = rng.uniform(0.03, 0.06) * size
        room = 0.5 * _open_hole_width(label, proportion) * scale
        stroke_px = min(stroke_px, room)
        if stroke_px >= 0.03 * size:
            stroke = stroke_px / scale
    style = rng.choice(["paint", "tape"]) if stroke else rng.choice(["cutout", "cutout", "sticker", "paint"])
    pose = ShapePose(label, rotation, proportion, placed, stroke)
    return pose, apply_homography(placed, shape_boundary(label, rotation, proportion)), str(style)


def _place(rng: np.random.Generator, labels: list[int], size: int) -> list[tuple[ShapePose, str]] | None:
    low, high = _extent_limits(len(labels))
    gap = OBJECT_GAP_FRACTION * size
    margin = 2.0
    for _ in range(12):
        chosen: list[tuple[ShapePose, str]] = []
        circles: list[tuple[np.ndarray, float]] = []
        for label in labels:
            pose, boundary, style = _make_pose(rng, label, rng.uniform(low, high) * size, size, True)
            lo, hi = boundary.min(0), boundary.max(0)
            if (hi - lo >= size - 2 * margin).any():
                break
            for _ in range(60):
                offset = rng.uniform(margin - lo, size - margin - hi)
                centre = apply_homography(pose.homography, np.zeros((1, 2)))[0] + offset
                radius = np.linalg.norm(boundary + offset - centre, axis=1).max()
                if all(np.linalg.norm(centre - c) >= radius + r + gap for c, r in circles):
                    moved = np.array([[1, 0, offset[0]], [0, 1, offset[1]], [0, 0, 1.0]]) @ pose.homography
                    chosen.append((ShapePose(label, pose.rotation, pose.proportion, moved, pose.stroke), style))
                    circles.append((centre, radius))
                    break
            else:
                break
        if len(chosen) == len(labels):
            return chosen
        high = max(low * 1.05, high * 0.9)
    return None


def _render_coverage(rng: np.random.Generator, pose: ShapePose, style: str, size: int) -> _Placed:
    boundary = pose.image_boundary()
    x0, y0 = np.floor(boundary.min(0)).astype(int) - 1
    x1, y1 = np.ceil(boundary.max(0)).astype(int) + 1
    box = (max(x0, 0), max(y0, 0), min(x1, size), min(y1, size))
    inverse = np.linalg.inv(pose.homography)
    to_plane = _homography_map(inverse)
    filled = np.zeros((size, size), np.float32)
    ink = np.zeros((size, size), np.float32)
    part_filled, part_ink = _stratified_coverage(rng, box, to_plane, _plane_test(pose))
    filled[box[1]:box[3], box[0]:box[2]] = part_filled
    ink[box[1]:box[3], box[0]:box[2]] = part_ink
    x, y = _coords(size)
    u, v = to_plane(x, y)
    normal_z = _facing(pose.homography)
    centre = apply_homography(pose.homography, np.zeros((1, 2)))[0]
    radius = float(np.linalg.norm(boundary - centre, axis=1).max())
    return _Placed(pose, filled, ink, u.astype(np.float32), v.astype(np.float32), style, normal_z, radius,
                   (float(centre[0]), float(centre[1])))


def _facing(homography: np.ndarray) -> float:
    """How squarely the plane faces the camera (1 = head on): the ratio of the smaller to the larger
    singular value of the homography's linear part at the shape's centre."""
    centre = homography[:, 2]
    jacobian = (homography[:2, :2] * centre[2] - np.outer(centre[:2], homography[2, :2])) / centre[2] ** 2
    singular = np.linalg.svd(jacobian, compute_uv=False)
    return float(singular[-1] / singular[0])


def _pick_colour(rng: np.random.Generator, surface: np.ndarray, region: np.ndarray) -> np.ndarray:
    ring = surface[region]
    mean = ring.mean(0)
    candidates = PALETTE[rng.permutation(len(PALETTE))[:8]] + rng.uniform(-15, 15, (8, 3))
    distances = np.linalg.norm(candidates - mean, axis=1)
    near = np.linalg.norm(ring[None, :, :] - candidates[:, None, :], axis=2)
    confusable = (near < np.linalg.norm(ring - mean, axis=1)[None, :]).mean(1)
    good = (distances > 130) & (confusable < 0.03)
    pick = rng.choice(np.flatnonzero(good)) if good.any() else int(np.argmax(distances - 200 * confusable))
    return np.clip(candidates[pick], 0, 255)


def _light_direction(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return np.array([math.cos(angle), math.sin(angle)])


def _composite(rng: np.random.Generator, image: np.ndarray, placed: _Placed, colour: np.ndarray,
               light: np.ndarray, size: int) -> np.ndarray:
    """Draw one object onto ``image``: shadow, edge wall, face, lit rim, by its style."""
    ink = placed.ink
    away = -light
    unit = size / 128
    if placed.style in ("cutout", "sticker", "tape"):
        drop = {"cutout": rng.uniform(2, 4), "sticker": rng.uniform(0.8, 1.6), "tape": rng.uniform(0.8, 1.5)}[placed.style]
        dx, dy = (away * drop * unit).round().astype(int)
        shadow = _blur(_shift(ink, dx, dy), rng.uniform(1.0, 2.5) * unit)
        strength = {"cutout": rng.uniform(0.3, 0.5), "sticker": 0.25, "tape": 0.25}[placed.style]
        image = image * (1 - strength * shadow)[..., None]
    if placed.style == "cutout":
        thickness = max(1, round(rng.uniform(1, 2.5) * unit))
        down = np.array([rng.uniform(-0.4, 0.4), 1.0])
        wall = np.zeros_like(ink)
        for step in range(1, thickness + 1):
            dx, dy = (down * step).round().astype(int)
            wall = np.maximum(wall, _shift(ink, dx, dy))
        image = _mix(image, colour * 0.55, wall)
    u, v = placed.plane_u, placed.plane_v
    lambert = 0.8 + 0.2 * placed.normal_z ** 4 + rng.uniform(-0.05, 0.05)
    tilt = rng.uniform(0, 2 * np.pi)
    gradient = 1 + rng.uniform(0.0, 0.1) * (u * math.cos(tilt) + v * math.sin(tilt))
    texture = 1 + {"cutout": 0.03, "sticker": 0.01, "paint": 0.05, "tape": 0.04}[placed.style] * (
        _smooth_noise(rng, size, size // 3) - 0.5) * 2
    face = colour * (lambert * gradient * texture)[..., None]
    if placed.style == "sticker":
        angle = rng.uniform(0, np.pi)
        streak = np.exp(-((u * math.cos(angle) + v * math.sin(angle) - rng.uniform(-0.5, 0.5)) / 0.12) ** 2)
        face = _mix(face, np.array((255, 255, 255), np.float32), 0.35 * streak)
    opacity = rng.uniform(0.9, 1.0) if placed.style == "paint" else 1.0
    image = _mix(image, face, ink * opacity)
    if placed.style in ("cutout", "tape"):
        dx, dy = light.round().astype(int)
        rim = np.clip(ink - _shift(ink, -dx, -dy), 0, 1) * 0.45
        image = _mix(image, np.array((255, 255, 255), np.float32), rim)
    return image


def _leaf_colour(rng: np.random.Generator) -> np.ndarray:
    leaves = np.array([(60, 120, 40), (110, 150, 50), (170, 110, 40), (140, 70, 35), (190, 160, 60)], np.float32)
    return leaves[rng.integers(len(leaves))] * rng.uniform(0.85, 1.1)


def _leaf_coverage(rng: np.random.Generator, centre: np.ndarray, length: float, angle: float,
                   size: int) -> tuple[np.ndarray, np.ndarray]:
    """Coverage of an analytic pointed leaf and its midrib weight, full-size."""
    width, fullness = rng.uniform(0.22, 0.38), rng.uniform(0.6, 1.0)
    reach = length * 0.7
    box = (max(int(centre[0] - reach), 0), max(int(centre[1] - reach), 0),
           min(int(centre[0] + reach) + 1, size), min(int(centre[1] + reach) + 1, size))
    coverage = np.zeros((size, size), np.float32)
    if box[0] >= box[2] or box[1] >= box[3]:
        return coverage, coverage
    to_leaf = _leaf_map((float(centre[0]), float(centre[1])), length, angle)
    part, _ = _stratified_coverage(rng, box, to_leaf, _leaf_test(width, fullness), strata=2)
    coverage[box[1]:box[3], box[0]:box[2]] = part
    a, b = to_leaf(*_coords(size))
    midrib = (np.abs(b) < 0.03) & (np.abs(a) < 0.9)
    return coverage, midrib.astype(np.float32) * coverage


def _draw_leaf(image: np.ndarray, coverage: np.ndarray, midrib: np.ndarray, colour: np.ndarray,
               light: np.ndarray, size: int) -> np.ndarray:
    dx, dy = (-light * 1.5 * size / 128).round().astype(int)
    image = image * (1 - 0.35 * _blur(_shift(coverage, dx, dy), 1.2 * size / 128))[..., None]
    image = _mix(image, colour, coverage)
    return _mix(image, np.clip(colour * 1.35, 0, 255), midrib * 0.7)


# ---------------------------------------------------------------- camera


def _disc_blur(image: np.ndarray, radius: float) -> np.ndarray:
    reach = int(math.ceil(radius))
    offsets = [(dx, dy) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
               if dx * dx + dy * dy <= radius * radius]
    padded = np.pad(image, ((reach, reach), (reach, reach), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    total = sum(padded[reach + dy:reach + dy + h, reach + dx:reach + dx + w] for dx, dy in offsets)
    return total / len(offsets)


def _camera(rng: np.random.Generator, image: np.ndarray, calm: bool) -> np.ndarray:
    size = image.shape[0]
    x, y = _coords(size)
    image = image * rng.uniform(0.92, 1.08, 3)  # white balance
    image = 255 * (np.clip(image, 0, 255) / 255) ** rng.uniform(0.85, 1.15)  # exposure curve
    radius2 = ((x - size / 2) ** 2 + (y - size / 2) ** 2) / (size * size / 2)
    image = image * (1 - rng.uniform(0, 0.25) * radius2)[..., None]  # vignetting
    if not calm and rng.random() < 0.25:  # a soft shadow band cast by something out of frame
        angle = rng.uniform(0, 2 * np.pi)
        edge = ((x - size / 2) * math.cos(angle) + (y - size / 2) * math.sin(angle)) / (size * rng.uniform(0.03, 0.1))
        image = image * (1 - rng.uniform(0.15, 0.3) / (1 + np.exp(-(edge - rng.uniform(-3, 3)))))[..., None]
    if not calm and rng.random() < 0.2:  # glare veil (screen blend of a soft bright spot)
        spot = rng.random(2) * size
        veil = np.exp(-((x - spot[0]) ** 2 + (y - spot[1]) ** 2) / (2 * (size * rng.uniform(0.1, 0.25)) ** 2))
        image = 255 - (255 - np.clip(image, 0, 255)) * (1 - rng.uniform(0.2, 0.4) * veil)[..., None]
    if not calm and rng.random() < 0.3:
        image = _disc_blur(image, rng.uniform(1.0, 1.6) * size / 128)
    if rng.random() < 0.25:  # a one-pixel colour fringe
        image[..., 0] = np.roll(image[..., 0], 1, axis=1)
        image[..., 2] = np.roll(image[..., 2], -1, axis=1)
    if not calm and rng.random() < 0.2:  # down and up again
        small = max(8, int(size * rng.uniform(0.6, 0.8)))
        frame = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        image = np.asarray(frame.resize((small, small), Image.Resampling.BILINEAR)
                           .resize((size, size), Image.Resampling.BILINEAR), np.float32)
    image = image + rng.normal(0, rng.uniform(1.0, 4.0), image.shape)  # sensor noise
    frame = Image.fromarray(np.clip(image, 0, 255).round().astype(np.uint8))
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        frame.save(buffer, format="JPEG", quality=int(rng.integers(55 if not calm else 75, 92)))
        frame = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return np.asarray(frame, np.uint8)


# ---------------------------------------------------------------- contrast guarantee


def contrast_report(image: np.ndarray, ink: np.ndarray, outside: np.ndarray) -> tuple[float, float]:
    """(distance between the mean colours of ``ink`` and ``outside``, the larger share of either
    region's pixels that lie nearer the other region's mean than their own)."""
    inner = image[ink].astype(np.float64)
    outer = image[outside].astype(np.float64)
    inner_mean, outer_mean = inner.mean(0), outer.mean(0)
    distance = float(np.linalg.norm(inner_mean - outer_mean))
    outer_stray = (np.linalg.norm(outer - inner_mean, axis=1) < np.linalg.norm(outer - outer_mean, axis=1)).mean()
    inner_stray = (np.linalg.norm(inner - outer_mean, axis=1) < np.linalg.norm(inner - inner_mean, axis=1)).mean()
    return distance, float(max(outer_stray, inner_stray))


def contrast_regions(scene: Scene, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixels the guarantee compares for object ``index``: its visible ink shrunk by a pixel
    (edges are mixed), and a ring 2-5 pixels (at 128 px) around its filled shape that belongs to no
    other object or to the foreground leaf."""
    size = scene.image.shape[0]
    near, far = max(1, round(2 * size / 128)), max(2, round(5 * size / 128))
    obj = scene.objects[index]
    core = _shrink(obj.ink, 1)
    if core.sum() < 8:
        core = obj.ink
    filled = obj.mask | (scene.occluder & _grow(obj.mask, 2))
    others = np.zeros_like(obj.mask)
    for other_index, other in enumerate(scene.objects):
        if other_index != index:
            others |= _grow(other.mask, near)
    ring = _grow(filled, far) & ~_grow(filled, near) & ~others & ~_grow(scene.occluder, near)
    return core, ring


def is_legible(scene: Scene) -> bool:
    """The contrast guarantee for every object of ``scene`` (see the module docstring)."""
    for index in range(len(scene.objects)):
        core, ring = contrast_regions(scene, index)
        if core.sum() < 4 or ring.sum() < 8:
            return False
        distance, stray = contrast_report(scene.image, core, ring)
        if distance < MIN_MEAN_COLOUR_DISTANCE or stray > MAX_CONFUSABLE_SHARE:
            return False
    return True


# ---------------------------------------------------------------- scenes


def _labels_for(rng: np.random.Generator, kind: str) -> list[int]:
    if kind == "single":
        return [int(rng.integers(len(CLASSES)))]
    if kind == "pair":
        return [int(c) for c in rng.choice(len(CLASSES), 2, replace=False)]
    if kind == "same":
        return [int(rng.integers(len(CLASSES)))] * int(rng.integers(2, 4))
    raise ValueError(f"unknown scene kind {kind!r}; use one of {', '.join(KINDS)}")


def _attempt(rng: np.random.Generator, size: int, kind: str, labels: list[int], calm: bool) -> Scene | None:
    poses = _place(rng, labels, size)
    if poses is None:
        return None
    placed = [_render_coverage(rng, pose, style, size) for pose, style in poses]
    surface_name = str(rng.choice(list(SURFACES)))
    image = SURFACES[surface_name](rng, size).astype(np.float32)
    light = _light_direction(rng)
    keep_out = np.zeros((size, size), bool)
    for item in placed:
        keep_out |= _grow(item.filled > 0, max(2, round(4 * size / 128)))
    for _ in range(int(rng.integers(0, 3))):  # clutter: leaves lying on the surface, off the objects
        length = rng.uniform(0.1, 0.22) * size
        coverage, midrib = _leaf_coverage(rng, rng.random(2) * size, length, rng.uniform(0, 2 * np.pi), size)
        if not (coverage > 0).any() or (_grow(coverage > 0, 2) & keep_out).any():
            continue
        image = _draw_leaf(image, coverage, midrib, _leaf_colour(rng), light, size)
    ring_width = max(2, round(6 * size / 128))
    for item in placed:
        inside = item.filled > 0.5
        region = _grow(inside, ring_width) & ~inside
        colour = _pick_colour(rng, np.clip(image, 0, 255), region if region.any() else ~inside)
        image = _composite(rng, image, item, colour, light, size)
    occluder = np.zeros((size, size), bool)
    if not calm and rng.random() < 0.15:
        image, occluder = _occlude(rng, image, placed, light, size)
    objects = []
    for item in placed:
        filled = item.filled >= 0.5
        mask = filled & ~occluder
        ink = (item.ink >= 0.5) & ~occluder
        if not mask.any():
            return None
        ys, xs = np.nonzero(mask)
        share = float((filled & occluder).sum() / max(filled.sum(), 1))
        objects.append(SceneObject(item.pose.label, mask, (int(xs.min()), int(ys.min()), int(xs.max()) + 1,
                                                           int(ys.max()) + 1),
                                   ink, item.style, bool(item.pose.stroke), item.pose, share))
    scene = Scene(_camera(rng, image, calm), objects, kind, surface_name, occluder)
    return scene if is_legible(scene) else None


def _occlude(rng: np.random.Generator, image: np.ndarray, placed: list[_Placed], light: np.ndarray,
             size: int) -> tuple[np.ndarray, np.ndarray]:
    """A foreground leaf over the edge of one object, hiding 4-20 % of it and at most 20 % of any."""
    target = placed[int(rng.integers(len(placed)))]
    if target.radius_px < 0.1 * size:
        return image, np.zeros((size, size), bool)
    filled = [item.filled >= 0.5 for item in placed]
    for _ in range(12):
        direction = rng.uniform(0, 2 * np.pi)
        reach = target.radius_px * rng.uniform(0.8, 1.3)
        centre = np.array(target.centre) + reach * np.array([math.cos(direction), math.sin(direction)])
        length = target.radius_px * rng.uniform(0.8, 1.4)
        coverage, midrib = _leaf_coverage(rng, centre, length, direction + rng.uniform(-0.6, 0.6), size)
        hidden = coverage >= 0.5
        shares = [float((mask & hidden).sum() / max(mask.sum(), 1)) for mask in filled]
        own = shares[placed.index(target)]
        if 0.04 <= own <= MAX_OCCLUDED_SHARE and max(shares) <= MAX_OCCLUDED_SHARE:
            return _draw_leaf(image, coverage, midrib, _leaf_colour(rng), light, size), hidden
    return image, np.zeros((size, size), bool)


def _scene(rng: np.random.Generator, size: int, kind: str, labels: list[int]) -> Scene:
    attempt = 0
    while True:
        scene = _attempt(rng, size, kind, labels, calm=attempt >= 4)
        if scene is not None:
            return scene
        attempt += 1
        if attempt > 200:
            raise RuntimeError(f"no legible {kind} scene of {size} px after 200 tries; use a larger size")


def make_scene(rng: np.random.Generator, size: int = 128, kind: str = "single") -> Scene:
    """One photographed scene: ``single`` (one object), ``pair`` (two of different classes) or
    ``same`` (2-3 of one class)."""
    return _scene(rng, size, kind, _labels_for(rng, kind))


def make_scenes(seed: int, per_kind: int, size: int = 128) -> dict[str, list[Scene]]:
    """``per_kind`` scenes of each kind, each kind from its own stream of ``seed``."""
    return {kind: [make_scene(rng, size, kind) for _ in range(per_kind)]
            for index, kind in enumerate(KINDS) for rng in [np.random.default_rng([seed, index])]}


def make_dataset(seed: int, count: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``count`` single-object images with classes balanced (``count // 5`` each, the remainder
    one more for the first classes), shuffled: (uint8 (N, size, size, 3), int64 (N,))."""
    rng = np.random.default_rng([seed, 99])
    labels = np.concatenate([np.full(count // len(CLASSES) + (index < count % len(CLASSES)), index)
                             for index in range(len(CLASSES))]).astype(np.int64)
    labels = labels[rng.permutation(count)]
    images = np.stack([_scene(rng, size, "single", [int(label)]).image for label in labels]) if count else \
        np.zeros((0, size, size, 3), np.uint8)
    return images, labels


def _outlined(scene: Scene) -> np.ndarray:
    image = scene.image.copy()
    for obj in scene.objects:
        edge = obj.mask & ~_shrink(obj.mask, 1)
        image[edge] = (255, 0, 255)
    return image


def main(argv: list[str] | None = None) -> int:
    from gradcam_cli.render import caption, tile_grid

    args = sys.argv[1:] if argv is None else argv
    out = args[0] if args else "heldout4_sheet.png"
    scenes = make_scenes(2024, 16)
    tiles = []
    for kind in KINDS:
        for scene in scenes[kind]:
            names = ",".join(CLASSES[obj.label] for obj in scene.objects)
            tile = Image.fromarray(_outlined(scene)).resize((256, 256), Image.Resampling.NEAREST)
            tiles.append(np.asarray(caption(tile, f"{names} | {scene.surface}")))
    Image.fromarray(tile_grid(tiles, columns=8)).save(out)
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    count = 60
    for index in range(count):
        make_scene(rng, 128, KINDS[index % 3])
    elapsed = time.perf_counter() - started
    print(f"wrote {out}; {count / elapsed:.1f} scenes/s at 128 px ({elapsed / count * 1000:.1f} ms each, one core)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
