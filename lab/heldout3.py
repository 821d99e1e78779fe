"""A third held-out generator of shape scenes, written blind to the demo's training generator.

What it draws
-------------
Photographs-that-could-be of the five demo classes (``circle``, ``square``, ``triangle``, ``star``,
``cross``) lying on or in front of surfaces a person might photograph them against. Fifteen
background families, none of them a family used by the earlier generators: hexagonal floor tiles in
perspective, leafless branches against sky, wind-rippled sand dunes, a pool floor under water
caustics, a painted plank fence, terrazzo, hexagonal chicken wire before an out-of-focus field, snow
with ski tracks, peeling paint, a night sky over a hill silhouette, cork board, brushed metal,
mountain ridges in haze, tree bark and stained concrete with drip streaks. A minority of objects is
partly hidden by a foreground twig or stem (at most 20 % of the object).
Objects are filled (solid, a mild linear gradient or a mild grain) or outlined with a stroke of 3-6 %
of the image side (only for objects of at least 16 % of the side).

How
---
Every polygon (the objects, their strokes, occluders, terrazzo chips, branches, ridges) is
rasterised by *exact analytic area coverage* with the signed-area accumulation scheme of scanline
font rasterisers (libart, font-rs; R. Levien, "Inside the fastest font renderer in the world",
2016): every edge is cut at all integer x and y lines into pieces that each lie inside one pixel;
a piece of height ``dy`` adds ``dy * (1 - f)`` to its own pixel and ``dy * f`` to the next (``f``
the fractional x of its midpoint, which is exact because x is linear in y along the piece), and a
running sum along each row turns these into the polygon's area inside every pixel (Green's
theorem). Holes (an outline's inside) are rings of the opposite orientation. Circles are regular
180-gons (area error < 0.03 %). An outline's inner ring is the outer ring offset inwards by the
stroke width with mitred corners, ``v' = v + w (n1 + n2) / (1 + n1 . n2)``.
No super-sampling, no distance field, no PIL polygon drawing. A camera pipeline of 2-4 effects
follows: defocus with a disc kernel, short motion blur, white balance, exposure/gamma, vignetting,
a soft shadow edge, a glare veil, downscale-upscale, posterisation, sensor noise, JPEG compression.
No effect moves pixels, so masks stay exact.

Fairness guarantees (checked by tests/test_heldout3.py)
-------------------------------------------------------
- Geometry: squares have four equal sides and right angles, triangles are equilateral, stars have
  five points with inner/outer radius ratio in [0.38, 0.5], crosses four equal arms of width
  0.28-0.4 of the total length; every object's largest extent is 10-70 % of the side (singles);
  the parameters are stored on the object so a test can rebuild the polygon independently.
- Objects lie wholly inside the image with a margin and never overlap (bounding circles apart).
- Occlusion hides at most 20 % of an object, and only of objects of at least 16 % of the side;
  the hidden pixels are removed from ``mask``.
- Contrast, measured on the final uint8 image in CIELAB (see :func:`contrast_report`): the median
  colour of the object's inner pixels differs from the median of a ring 2-4 px outside it by
  Delta E76 >= 30 with a lightness gap |Delta L*| >= 20 (so JPEG's halved chroma resolution and
  colour-blind eyes still see it; 40 and 30 for objects under 20 % of the side, since small
  targets need more contrast), and at least 95 % of the ring's pixels differ from the object's
  colour by Delta E76 >= 15, so the outline is visible all round; a foreground twig touching an
  object differs from it by the same median Delta E; a scene that fails is redrawn (about 6 % of
  attempts at 128 px, background included, so families that fail more appear a little less).
- The generator never looked at the demo model, its predictions or the training generator.

Speed: about 120 scenes/s at 128 px and 48 scenes/s at 224 px on one core (taskset to one CPU of
the shared 2-core build machine while the test suite ran on the other); ``python -m
lab.heldout3 sheet.png`` prints its own figure.
"""

from __future__ import annotations

import colorsys
import io
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

CLASSES = ("circle", "square", "triangle", "star", "cross")
KINDS = ("single", "pair", "same")

STAR_RATIO = (0.38, 0.5)
CROSS_WIDTH_RATIO = (0.28, 0.4)
SINGLE_EXTENT = (0.10, 0.70)
MAX_OCCLUDED = 0.20
OCCLUDABLE_EXTENT = 0.16
CONTRAST_MEDIAN_DE = 30.0
CONTRAST_LIGHTNESS = 20.0
SMALL_OBJECT = 0.20  # objects below this share of the side need more contrast
SMALL_MEDIAN_DE = 40.0
SMALL_LIGHTNESS = 30.0
CONTRAST_RING_DE = 15.0
CONTRAST_RING_SHARE = 0.95


@dataclass
class SceneObject:
    """One drawn object; ``params`` rebuild its polygon (see :func:`object_ring`)."""

    label: int
    mask: np.ndarray
    box: tuple[int, int, int, int]
    center: tuple[float, float]
    extent: float
    angle: float
    ratio: float
    stroke: float
    occluded_fraction: float = 0.0
    ink: np.ndarray | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return CLASSES[self.label]


@dataclass
class Scene:
    image: np.ndarray
    objects: list[SceneObject]
    kind: str
    background: str = ""
    effects: tuple[str, ...] = ()
    occluder: np.ndarray | None = field(default=None, repr=False)


# --------------------------------------------------------------------------------------------
# Exact area-coverage rasteriser
# --------------------------------------------------------------------------------------------


def signed_area(ring: np.ndarray) -> float:
    """Shoelace area (positive when the ring turns clockwise on screen, y pointing down)."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _oriented(ring: np.ndarray, hole: bool) -> np.ndarray:
    ring = np.asarray(ring, dtype=np.float64)
    # Filled rings must run with negative shoelace area for the accumulation below to be positive.
    if (signed_area(ring) > 0) != hole:
        ring = ring[::-1]
    return ring


def _integer_crossings(a0: np.ndarray, a1: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(edge index, parameter t) for every integer k in (min, max) of each edge, k in [0, limit]."""
    delta = a1 - a0
    low = np.maximum(np.floor(np.minimum(a0, a1)) + 1, 0)
    high = np.minimum(np.ceil(np.maximum(a0, a1)) - 1, limit)
    counts = np.maximum(high - low + 1, 0).astype(np.int64)
    counts[delta == 0] = 0
    edge = np.repeat(np.arange(a0.size), counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    k = low[edge] + (np.arange(counts.sum()) - start)
    return edge, (k - a0[edge]) / delta[edge]


def polygon_coverage(
    rings: Sequence[np.ndarray], height: int, width: int, holes: Sequence[np.ndarray] = ()
) -> np.ndarray:
    """Exact fraction of every pixel covered by the filled ``rings`` minus ``holes``.

    Pixel (i, j) is the square [j, j+1] x [i, i+1]. Overlapping filled rings add up (the result is
    clipped to [0, 1]), which is exact for disjoint rings and for a hole inside its ring.
    """
    edges = [
        np.concatenate([r, np.roll(r, -1, axis=0)], axis=1)
        for r in [_oriented(r, False) for r in rings] + [_oriented(h, True) for h in holes]
    ]
    if not edges:
        return np.zeros((height, width), np.float32)
    x0, y0, x1, y1 = np.concatenate(edges).T
    n_edges = x0.size
    ex, tx = _integer_crossings(x0, x1, width)
    ey, ty = _integer_crossings(y0, y1, height)
    edge = np.concatenate([np.arange(n_edges), np.arange(n_edges), ex, ey])
    t = np.concatenate([np.zeros(n_edges), np.ones(n_edges), tx, ty])
    order = np.lexsort((t, edge))
    edge, t = edge[order], t[order]
    same = edge[:-1] == edge[1:]
    piece, ta, tb = edge[:-1][same], t[:-1][same], t[1:][same]
    tm = 0.5 * (ta + tb)
    dy = (tb - ta) * (y1 - y0)[piece]
    xm = x0[piece] + tm * (x1 - x0)[piece]
    ym = y0[piece] + tm * (y1 - y0)[piece]
    row = np.floor(ym).astype(np.int64)
    col = np.floor(xm).astype(np.int64)
    frac = xm - col
    left = col < 0
    col[left], frac[left] = 0, 0.0
    keep = (row >= 0) & (row < height) & (col < width) & (dy != 0)
    row, col, frac, dy = row[keep], col[keep], frac[keep], dy[keep]
    stride = width + 1
    index = row * stride + col
    size = height * stride
    acc = np.bincount(index, dy * (1 - frac), size) + np.bincount(index + 1, dy * frac, size)
    coverage = np.cumsum(acc.reshape(height, stride), axis=1)[:, :width]
    return np.clip(coverage, 0.0, 1.0).astype(np.float32)


def inset_ring(ring: np.ndarray, distance: float) -> np.ndarray:
    """The ring offset inwards by ``distance`` with mitred corners (parallel edges)."""
    ring = np.asarray(ring, dtype=np.float64)
    direction = np.roll(ring, -1, axis=0) - ring
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    inward = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    if signed_area(ring) < 0:
        inward = -inward
    before, after = np.roll(inward, 1, axis=0), inward
    bisector = (before + after) / (1.0 + np.sum(before * after, axis=1, keepdims=True))
    return ring + distance * bisector


# --------------------------------------------------------------------------------------------
# The five shapes
# --------------------------------------------------------------------------------------------

CIRCLE_VERTICES = 180


def object_ring(label: int, center: tuple[float, float], extent: float, angle: float,
                ratio: float) -> np.ndarray:
    """The outer polygon of a class, its largest extent (diameter) equal to ``extent`` pixels.

    ``ratio`` is the star's inner/outer radius ratio or the cross's arm width / total length.
    """
    name = CLASSES[label]
    if name == "circle":
        theta = angle + np.arange(CIRCLE_VERTICES) * (2 * np.pi / CIRCLE_VERTICES)
        radii = np.full(CIRCLE_VERTICES, extent / 2)
    elif name == "square":
        theta = angle + np.pi / 4 + np.arange(4) * (np.pi / 2)
        radii = np.full(4, extent / 2)
    elif name == "triangle":
        theta = angle - np.pi / 2 + np.arange(3) * (2 * np.pi / 3)
        radii = np.full(3, extent / math.sqrt(3))
    elif name == "star":
        outer = extent / (2 * math.sin(math.radians(72)))
        theta = angle - np.pi / 2 + np.arange(10) * (np.pi / 5)
        radii = np.where(np.arange(10) % 2 == 0, outer, outer * ratio)
    else:
        half_length = extent / (2 * math.sqrt(1 + ratio**2))
        a, b = ratio * half_length, half_length
        local = np.array([(a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b),
                          (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a), (-a, -b)])
        c, s = math.cos(angle), math.sin(angle)
        return local @ np.array([[c, s], [-s, c]]) + np.asarray(center)
    return np.stack([center[0] + radii * np.cos(theta), center[1] + radii * np.sin(theta)], axis=1)


def _stroke_fits(label: int, outer: np.ndarray, inner: np.ndarray, center, ratio: float,
                 extent: float, stroke: float) -> bool:
    """An outline keeps a clear hole of the same shape."""
    if signed_area(inner) * signed_area(outer) <= 0:
        return False
    if abs(signed_area(inner)) < 0.15 * abs(signed_area(outer)):
        return False
    radius = np.linalg.norm(inner - np.asarray(center), axis=1)
    if CLASSES[label] == "star":
        return radius[0::2].min() > 1.4 * radius[1::2].max()
    if CLASSES[label] == "cross":
        half_width = ratio * extent / (2 * math.sqrt(1 + ratio**2))
        return half_width - stroke >= 0.3 * half_width
    return True


# --------------------------------------------------------------------------------------------
# Small image helpers
# --------------------------------------------------------------------------------------------


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(coords, coords, indexing="ij")


def _noise(rng: np.random.Generator, size: int, cells_y: float, cells_x: float | None = None
           ) -> np.ndarray:
    """Smooth random field in about [0, 1]: a coarse random grid upsampled bicubically."""
    cells_x = cells_y if cells_x is None else cells_x
    gy, gx = max(1, int(round(cells_y))), max(1, int(round(cells_x)))
    grid = rng.random((gy + 3, gx + 3)).astype(np.float32)
    image = Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC,
                                         box=(1.0, 1.0, gx + 1.0, gy + 1.0))
    return np.asarray(image, dtype=np.float32)


def _octaves(rng: np.random.Generator, size: int, base: float, count: int) -> np.ndarray:
    total = np.zeros((size, size), np.float32)
    weight_sum = 0.0
    for octave in range(count):
        weight = 0.5**octave
        total += weight * _noise(rng, size, base * 2**octave)
        weight_sum += weight
    return total / weight_sum


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(colour * (1 + rng.normal(0, amount, 3)), 0, 1).astype(np.float32)


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * t[..., None]


def _vertical_gradient(size: int, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None].repeat(size, axis=1)
    return _lerp(top, bottom, t)


def _blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Separable box blur applied twice (close to a Gaussian of sigma ~ radius)."""
    out = image
    for axis in (0, 1):
        for _ in range(2):
            padded = np.pad(out, [(radius, radius) if a == axis else (0, 0)
                                  for a in range(out.ndim)], mode="edge")
            csum = np.cumsum(padded, axis=axis, dtype=np.float64)
            csum = np.concatenate([np.zeros_like(np.take(csum, [0], axis=axis)), csum], axis=axis)
            n = out.shape[axis]
            out = ((np.take(csum, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
                    - np.take(csum, np.arange(n), axis=axis)) / (2 * radius + 1)).astype(np.float32)
    return out


def _hex_edge(u: np.ndarray, v: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Pointy-top hexagonal lattice: (distance to own cell edge in [0, 1] (1 on the edge), cell id)."""
    q = (math.sqrt(3) / 3 * u - v / 3) / cell
    r = (2 / 3 * v) / cell
    cx, cz = q, r
    cy = -cx - cz
    rx, ry, rz = np.round(cx), np.round(cy), np.round(cz)
    dx, dy, dz = np.abs(rx - cx), np.abs(ry - cy), np.abs(rz - cz)
    fix_x = (dx > dy) & (dx > dz)
    fix_y = ~fix_x & (dy > dz)
    rx = np.where(fix_x, -ry - rz, rx)
    ry = np.where(fix_y, -rx - rz, ry)
    rz = np.where(~fix_x & ~fix_y, -rx - ry, rz)
    fq, fr, fs = cx - rx, cz - rz, cy - ry
    edge = np.maximum(np.maximum(np.abs(fq - fr), np.abs(fr - fs)), np.abs(fs - fq))
    cell_id = (rx.astype(np.int64) * 7919 + rz.astype(np.int64) * 104729) % 997
    return edge, cell_id


# --------------------------------------------------------------------------------------------
# Background families (each returns float32 RGB in [0, 1])
# --------------------------------------------------------------------------------------------


def _bg_hex_floor(rng: np.random.Generator, s: int) -> np.ndarray:
    yy, xx = _grid(s)
    horizon = rng.uniform(-0.8, 0.2) * s
    focal = rng.uniform(0.9, 1.6) * s
    depth = focal / np.maximum(yy - horizon, 1e-3)
    lateral = (xx - s / 2) * depth / focal
    yaw = rng.uniform(0, np.pi)
    u = lateral * math.cos(yaw) + depth * math.sin(yaw)
    v = -lateral * math.sin(yaw) + depth * math.cos(yaw)
    cell = rng.uniform(0.18, 0.4)
    edge, cell_id = _hex_edge(u, v, cell)
    palettes = [
        [(0.72, 0.36, 0.22), (0.62, 0.30, 0.20), (0.78, 0.45, 0.30)],
        [(0.88, 0.88, 0.85), (0.80, 0.82, 0.84), (0.92, 0.90, 0.86)],
        [(0.20, 0.35, 0.55), (0.85, 0.86, 0.88), (0.25, 0.45, 0.60)],
        [(0.35, 0.50, 0.35), (0.42, 0.55, 0.40), (0.30, 0.42, 0.30)],
    ]
    palette = np.array(palettes[rng.integers(len(palettes))], np.float32)
    table = palette[rng.integers(len(palette), size=997)] * rng.uniform(0.9, 1.08, (997, 1))
    colour = table[cell_id].astype(np.float32)
    footprint = depth / focal / cell * 2.5
    grout_width = rng.uniform(0.08, 0.16)
    grout = np.clip((edge - (1 - grout_width)) / np.maximum(footprint, 1e-3) + 0.5, 0, 1)
    grout_colour = np.array(rng.choice([(0.55, 0.53, 0.5), (0.25, 0.24, 0.23), (0.85, 0.84, 0.8)]),
                            np.float32)
    floor = _lerp(colour, grout_colour, grout)
    far = np.clip(footprint * 1.5 - 0.5, 0, 1)
    floor = _lerp(floor, palette.mean(0) * 0.9 + grout_colour * 0.1, far)
    light = 0.85 + 0.3 * _noise(rng, s, 2)
    floor = floor * light[..., None]
    wall = _jitter(rng, np.array((0.8, 0.76, 0.7), np.float32), 0.1)
    wall_img = wall * (0.9 + 0.1 * _noise(rng, s, 3))[..., None]
    return np.where((yy > horizon + 1)[..., None], floor, wall_img)


def _bg_branches(rng: np.random.Generator, s: int) -> np.ndarray:
    skies = [((0.55, 0.7, 0.9), (0.85, 0.9, 0.95)), ((0.7, 0.72, 0.75), (0.88, 0.88, 0.88)),
             ((0.45, 0.5, 0.7), (0.95, 0.75, 0.6))]
    top, bottom = skies[rng.integers(len(skies))]
    sky = _vertical_gradient(s, np.array(top, np.float32), np.array(bottom, np.float32))
    rings: list[np.ndarray] = []

    def grow(x: float, y: float, heading: float, length: float, width: float, depth: int) -> None:
        if depth < 0 or len(rings) > 120:
            return
        x2, y2 = x + math.cos(heading) * length, y + math.sin(heading) * length
        nx, ny = -math.sin(heading), math.cos(heading)
        w2 = width * 0.7
        rings.append(np.array([(x + nx * width, y + ny * width), (x2 + nx * w2, y2 + ny * w2),
                               (x2 - nx * w2, y2 - ny * w2), (x - nx * width, y - ny * width)]))
        for _ in range(rng.integers(2, 4)):
            grow(x2, y2, heading + rng.normal(0, 0.55), length * rng.uniform(0.6, 0.8),
                 w2, depth - 1)

    for _ in range(rng.integers(1, 3)):
        side = rng.integers(3)
        if side == 0:
            x, y, heading = rng.uniform(0, s), s + 2.0, -np.pi / 2 + rng.normal(0, 0.3)
        elif side == 1:
            x, y, heading = -2.0, rng.uniform(0.2, 1) * s, rng.normal(-0.4, 0.3)
        else:
            x, y, heading = s + 2.0, rng.uniform(0.2, 1) * s, np.pi + rng.normal(0.4, 0.3)
        grow(x, y, heading, s * rng.uniform(0.25, 0.4), s * rng.uniform(0.02, 0.035), 5)
    coverage = polygon_coverage(rings, s, s) * rng.uniform(0.75, 0.95)
    bark = _jitter(rng, np.array((0.2, 0.17, 0.15), np.float32), 0.15)
    return _lerp(sky, bark, coverage)


def _bg_dunes(rng: np.random.Generator, s: int) -> np.ndarray:
    yy, xx = _grid(s)
    dune = _octaves(rng, s, 2, 2) * s * 0.25
    heading = rng.uniform(0, np.pi)
    wavelength = rng.uniform(4.0, 8.0)
    phase = (xx * math.cos(heading) + yy * math.sin(heading)) / wavelength + 4 * _noise(rng, s, 2)
    saw = phase - np.floor(phase)
    ripple = np.where(saw < 0.75, saw / 0.75, (1 - saw) / 0.25) * wavelength * 0.18
    height = dune + ripple
    gy, gx = np.gradient(height)
    sun = rng.uniform(0, 2 * np.pi)
    shade = np.clip(0.75 + 0.9 * (gx * math.cos(sun) + gy * math.sin(sun)), 0.35, 1.3)
    sand = _jitter(rng, np.array(rng.choice([(0.86, 0.72, 0.52), (0.82, 0.6, 0.38),
                                              (0.9, 0.84, 0.7)]), np.float32), 0.05)
    return np.clip(sand * shade[..., None], 0, 1)


def _bg_caustics(rng: np.random.Generator, s: int) -> np.ndarray:
    """Pool floor lit through a wavy surface: light rays bent by the surface slope pile up in
    bright lines; their density is gathered by forward-mapping a 2x grid of rays (a histogram)."""
    yy, _ = _grid(s)
    deep = _jitter(rng, np.array((0.1, 0.45, 0.55), np.float32), 0.15)
    shallow = _jitter(rng, np.array((0.45, 0.78, 0.8), np.float32), 0.1)
    base = _lerp(shallow, deep, np.clip(yy / s * 0.6 + 0.5 * _noise(rng, s, 2) - 0.1, 0, 1))
    margin = s // 4
    ray_y, ray_x = np.mgrid[0:2 * (s + 2 * margin), 0:2 * (s + 2 * margin)].astype(np.float32)
    ray_y, ray_x = ray_y / 2 + 0.25 - margin, ray_x / 2 + 0.25 - margin
    # surface h = sum of plane waves; a ray's landing point moves by c * grad h, and the weights
    # are set so that c * (second derivative of h) reaches about 2, past the focusing point 1
    waves = int(rng.integers(6, 10))
    focus = rng.uniform(1.6, 2.6) / math.sqrt(waves)
    land_x, land_y = ray_x.copy(), ray_y.copy()
    for _ in range(waves):
        heading = rng.uniform(0, 2 * np.pi)
        wavenumber = 2 * np.pi / (s * rng.uniform(0.12, 0.45))
        kx, ky = wavenumber * math.cos(heading), wavenumber * math.sin(heading)
        shift = focus / wavenumber * np.cos(kx * ray_x + ky * ray_y + rng.uniform(0, 2 * np.pi))
        land_x += shift * math.cos(heading)
        land_y += shift * math.sin(heading)
    inside = (land_x >= 0) & (land_x < s) & (land_y >= 0) & (land_y < s)
    cells = land_y[inside].astype(np.int64) * s + land_x[inside].astype(np.int64)
    density = np.bincount(cells, minlength=s * s).reshape(s, s) / 4.0
    density = _blur(density.astype(np.float32), 1)
    light = np.clip(density - 0.6, 0, 2.5)
    return np.clip(base * (0.8 + 0.15 * density.clip(0, 2))[..., None]
                   + 0.22 * light[..., None] * np.array((0.9, 1.0, 0.95), np.float32), 0, 1)


def _bg_fence(rng: np.random.Generator, s: int) -> np.ndarray:
    yy, xx = _grid(s)
    tilt = rng.normal(0, 0.12)
    u = xx * math.cos(tilt) + yy * math.sin(tilt) + rng.uniform(0, s)
    plank = s * rng.uniform(0.11, 0.2)
    gap = rng.uniform(1.0, 2.5)
    index = np.floor(u / plank).astype(np.int64)
    within = u - index * plank
    paint = np.array(rng.choice([(0.55, 0.3, 0.2), (0.85, 0.85, 0.82), (0.3, 0.45, 0.35),
                                 (0.6, 0.5, 0.38), (0.35, 0.45, 0.6)]), np.float32)
    table = np.clip(paint * rng.uniform(0.85, 1.1, (64, 1)), 0, 1).astype(np.float32)
    colour = table[index % 64]
    streaks = 0.85 + 0.25 * _noise(rng, s, 2, s / 3)
    bevel = 1 - 0.15 * np.exp(-np.minimum(within, plank - within) / 1.5)
    image = colour * (streaks * bevel)[..., None]
    dark = np.clip((gap - within) + 0.5, 0, 1)
    return _lerp(image, np.array((0.08, 0.08, 0.06), np.float32), dark)


def _bg_terrazzo(rng: np.random.Generator, s: int) -> np.ndarray:
    base = _jitter(rng, np.array(rng.choice([(0.85, 0.83, 0.78), (0.6, 0.6, 0.6),
                                             (0.82, 0.72, 0.65)]), np.float32), 0.05)
    image = base * (0.95 + 0.08 * _noise(rng, s, s / 6))[..., None] * np.ones((s, s, 1), np.float32)
    chip_colours = [(0.2, 0.2, 0.22), (0.75, 0.4, 0.3), (0.95, 0.95, 0.92), (0.45, 0.5, 0.45),
                    (0.6, 0.55, 0.5)]
    count = int(s * s / rng.uniform(60, 110))
    groups: list[list[np.ndarray]] = [[] for _ in chip_colours]
    for _ in range(count):
        n = rng.integers(5, 8)
        theta = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(0.8, 2.6) * rng.uniform(0.5, 1.0, n)
        cx, cy = rng.uniform(0, s, 2)
        groups[rng.integers(len(groups))].append(
            np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1))
    for colour, rings in zip(chip_colours, groups, strict=True):
        if rings:
            image = _lerp(image, np.array(colour, np.float32), polygon_coverage(rings, s, s))
    return image


def _bg_chicken_wire(rng: np.random.Generator, s: int) -> np.ndarray:
    yy, xx = _grid(s)
    greens = np.array(rng.choice([(0.3, 0.45, 0.2), (0.5, 0.45, 0.3), (0.35, 0.4, 0.45)]),
                      np.float32)
    field_ = _lerp(greens * 0.6, _jitter(rng, greens * 1.4, 0.1), _noise(rng, s, 4))
    field_ = _blur(np.clip(field_, 0, 1), 3)
    rotation = rng.uniform(-0.3, 0.3)
    u = xx * math.cos(rotation) - yy * math.sin(rotation)
    v = (xx * math.sin(rotation) + yy * math.cos(rotation)) * rng.uniform(0.8, 1.2)
    cell = s * rng.uniform(0.06, 0.1)
    edge, _ = _hex_edge(u, v, cell)
    wire_width = 1.1 / cell
    wire = np.clip((edge - (1 - wire_width)) / (1.2 / cell) + 0.5, 0, 1)
    metal = np.array((0.75, 0.76, 0.74), np.float32) * rng.uniform(0.8, 1.1)
    return _lerp(field_, np.clip(metal, 0, 1), wire * 0.9)


def _bg_snow(rng: np.random.Generator, s: int) -> np.ndarray:
    yy, xx = _grid(s)
    white = np.array((0.95, 0.96, 0.98), np.float32)
    shadow = np.array((0.7, 0.76, 0.88), np.float32)
    image = _lerp(white, shadow, np.clip(_octaves(rng, s, 2, 3) * 1.2 - 0.3, 0, 1))
    for _ in range(rng.integers(1, 3)):
        a, b, c = rng.normal(0, 1.5 / s), rng.normal(0, 0.6), rng.uniform(0.1, 0.9) * s
        centre = a * (xx - s / 2) ** 2 + b * (xx - s / 2) + c
        spacing = rng.uniform(5, 9)
        for offset in (-spacing / 2, spacing / 2):
            distance = (yy - centre - offset) / math.sqrt(1 + b * b)
            groove = np.exp(-(distance / 1.4) ** 2)
            side = np.tanh(distance)
            image = image * (1 - 0.12 * groove * (1 + 0.6 * side))[..., None]
    sparkle = rng.random((s, s)) > 0.995
    image[sparkle] = 1.0
    return np.clip(image, 0, 1)


def _bg_peeling_paint(rng: np.random.Generator, s: int) -> np.ndarray:
    paint = _jitter(rng, np.array(rng.choice([(0.3, 0.5, 0.6), (0.75, 0.65, 0.3),
                                              (0.7, 0.3, 0.25), (0.85, 0.85, 0.8)]), np.float32),
                    0.08)
    under = np.array(rng.choice([(0.55, 0.42, 0.3), (0.62, 0.6, 0.57), (0.5, 0.3, 0.2)]),
                     np.float32)
    rough = _octaves(rng, s, 3, 4)
    threshold = np.quantile(rough, rng.uniform(0.55, 0.8))
    bare = np.clip((rough - threshold) * 40, 0, 1)
    lip = np.exp(-(((rough - threshold) * 30) ** 2))
    image = _lerp(paint * (0.92 + 0.1 * _noise(rng, s, 6))[..., None], under, bare)
    image = image * (1 - 0.35 * lip)[..., None]
    return np.clip(image * (0.9 + 0.15 * _noise(rng, s, s / 3))[..., None], 0, 1)


def _bg_night_sky(rng: np.random.Generator, s: int) -> np.ndarray:
    yy, xx = _grid(s)
    image = _vertical_gradient(s, np.array((0.02, 0.03, 0.1), np.float32),
                               _jitter(rng, np.array((0.12, 0.15, 0.3), np.float32), 0.2))
    band = np.exp(-((yy - xx * rng.uniform(-1, 1) - rng.uniform(0, s)) / (0.15 * s)) ** 2)
    image = image + (0.08 * band * _noise(rng, s, 5))[..., None]
    stars = rng.random((s, s)) > 0.985
    brightness = rng.exponential(0.25, (s, s)) * stars
    image = image + np.clip(brightness, 0, 0.8)[..., None]
    ridge_x = np.linspace(-2, s + 2, 40)
    ridge_y = s * (rng.uniform(0.75, 0.95) - 0.08 * np.interp(ridge_x, np.linspace(-2, s + 2, 7),
                                                              rng.random(7)))
    hill = np.concatenate([np.stack([ridge_x, ridge_y], axis=1), [(s + 2, s + 2), (-2, s + 2)]])
    coverage = polygon_coverage([hill], s, s)
    return np.clip(_lerp(image, np.array((0.01, 0.01, 0.02), np.float32), coverage), 0, 1)


def _bg_cork(rng: np.random.Generator, s: int) -> np.ndarray:
    light = _jitter(rng, np.array((0.75, 0.58, 0.4), np.float32), 0.06)
    dark = np.array((0.45, 0.3, 0.18), np.float32)
    grain = 0.5 * _noise(rng, s, s / 2.5) + 0.3 * _noise(rng, s, s / 5) + 0.2 * _noise(rng, s, 4)
    image = _lerp(light, dark, np.clip((grain - 0.25) * 1.6, 0, 1))
    pits = rng.random((s, s)) > 0.985
    image[pits] *= 0.55
    return image


def _bg_brushed_metal(rng: np.random.Generator, s: int) -> np.ndarray:
    yy, xx = _grid(s)
    streaks = 0.6 * _noise(rng, s, s / 1.2, 2) + 0.4 * _noise(rng, s, s / 2, 6)
    tint = _jitter(rng, np.array(rng.choice([(0.72, 0.73, 0.75), (0.78, 0.7, 0.55),
                                             (0.6, 0.62, 0.66)]), np.float32), 0.04)
    direction = rng.uniform(0, np.pi)
    across = (xx * math.cos(direction) + yy * math.sin(direction)) / s
    sheen = np.exp(-((across - rng.uniform(0, 1)) / 0.2) ** 2) * 0.18
    image = tint * (0.85 + 0.2 * streaks)[..., None] + sheen[..., None]
    if rng.random() < 0.5:
        image = np.transpose(image, (1, 0, 2))
    return np.clip(image, 0, 1)


def _bg_mountains(rng: np.random.Generator, s: int) -> np.ndarray:
    sky = _vertical_gradient(s, _jitter(rng, np.array((0.55, 0.68, 0.85), np.float32), 0.08),
                             np.array((0.9, 0.88, 0.85), np.float32))
    haze = np.array((0.78, 0.8, 0.85), np.float32)
    near = _jitter(rng, np.array(rng.choice([(0.2, 0.3, 0.2), (0.3, 0.25, 0.22),
                                             (0.25, 0.27, 0.35)]), np.float32), 0.1)
    layers = rng.integers(3, 6)
    image = sky
    xs = np.linspace(-2, s + 2, 65)
    for layer in range(layers):
        t = (layer + 1) / layers
        base = s * (0.3 + 0.55 * t + rng.uniform(-0.05, 0.05))
        profile = sum(np.interp(xs, np.linspace(-2, s + 2, 3 * 2**o + 1),
                                rng.random(3 * 2**o + 1)) * 0.5**o for o in range(4))
        ridge = base - s * 0.18 * (profile - 0.9)
        ring = np.concatenate([np.stack([xs, ridge], axis=1), [(s + 2, s + 2), (-2, s + 2)]])
        colour = _lerp(haze, near, np.array(t * t, np.float32))
        image = _lerp(image, colour, polygon_coverage([ring], s, s))
    return image


def _bg_bark(rng: np.random.Generator, s: int) -> np.ndarray:
    """Tree bark: long vertical ridges of varying width between dark furrows, with short
    horizontal cracks across the ridges."""
    _, xx = _grid(s)
    warp = 0.08 * s * (_noise(rng, s, 2, 3) - 0.5)
    spacing = s * rng.uniform(0.07, 0.14)
    across = (xx + warp) / spacing + 0.8 * _noise(rng, s, 4, 2)
    sharpness = 0.3 + 0.8 * _noise(rng, s, s / 12, 3)
    ridge = np.abs(np.sin(np.pi * across)) ** sharpness
    cracks = np.clip((_noise(rng, s, s / 2.5, s / 14) - 0.82) * 8, 0, 1)
    light = _jitter(rng, np.array(rng.choice([(0.5, 0.46, 0.42), (0.45, 0.36, 0.28),
                                              (0.62, 0.6, 0.57)]), np.float32), 0.04)
    shade = 0.3 + 0.75 * ridge * (1 - 0.6 * cracks) + 0.1 * _noise(rng, s, s / 3)
    return np.clip(light * shade[..., None], 0, 1)


def _bg_concrete(rng: np.random.Generator, s: int) -> np.ndarray:
    yy, xx = _grid(s)
    grey = _jitter(rng, np.array((0.66, 0.65, 0.62), np.float32), 0.05)
    image = grey * (0.9 + 0.1 * _noise(rng, s, s / 2) + 0.08 * _noise(rng, s, 3))[..., None]
    stains = np.zeros((s, s), np.float32)
    for _ in range(rng.integers(4, 12)):
        x0, width = rng.uniform(0, s), rng.uniform(1.5, 5)
        start, length = rng.uniform(-0.2, 0.6) * s, rng.uniform(0.2, 0.9) * s
        along = np.clip((yy - start) / length, 0, 1)
        wobble = 1.5 * np.sin(yy / rng.uniform(6, 14) + rng.uniform(0, 6))
        profile = np.exp(-((xx - x0 - wobble) / (width * (1 - 0.6 * along))) ** 2)
        stains += profile * (yy > start) * (1 - along) * rng.uniform(0.2, 0.45)
    image = image * (1 - np.clip(stains, 0, 0.6))[..., None]
    if rng.random() < 0.6:
        seam = rng.uniform(0.1, 0.9) * s
        image = image * (1 - 0.3 * np.exp(-((yy - seam) / 0.8) ** 2))[..., None]
    return np.clip(image, 0, 1)


BACKGROUNDS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "hex_floor": _bg_hex_floor,
    "branches": _bg_branches,
    "dunes": _bg_dunes,
    "caustics": _bg_caustics,
    "fence": _bg_fence,
    "terrazzo": _bg_terrazzo,
    "chicken_wire": _bg_chicken_wire,
    "snow": _bg_snow,
    "peeling_paint": _bg_peeling_paint,
    "night_sky": _bg_night_sky,
    "cork": _bg_cork,
    "brushed_metal": _bg_brushed_metal,
    "mountains": _bg_mountains,
    "bark": _bg_bark,
    "concrete": _bg_concrete,
}


# --------------------------------------------------------------------------------------------
# Camera effects (none moves pixels)
# --------------------------------------------------------------------------------------------


def _fx_defocus(rng: np.random.Generator, image: np.ndarray, smallest: float) -> np.ndarray:
    radius = rng.uniform(0.7, float(np.clip(smallest / 14, 0.8, 1.5)))
    span = int(math.ceil(radius))
    size = 2 * span + 1
    disc = np.stack([np.cos(np.linspace(0, 2 * np.pi, 64, endpoint=False)),
                     np.sin(np.linspace(0, 2 * np.pi, 64, endpoint=False))], axis=1)
    kernel = polygon_coverage([disc * radius + span + 0.5], size, size)
    kernel /= kernel.sum()
    padded = np.pad(image, ((span, span), (span, span), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    for dy in range(size):
        for dx in range(size):
            if kernel[dy, dx] > 0:
                out += kernel[dy, dx] * padded[dy:dy + h, dx:dx + w]
    return out


def _fx_motion(rng: np.random.Generator, image: np.ndarray, smallest: float) -> np.ndarray:
    length = int(rng.integers(2, 4 if smallest >= 20 else 3))
    dx, dy = rng.choice([(1, 0), (0, 1), (1, 1), (1, -1)])
    out = image.copy()
    for step in range(1, length):
        out += np.roll(image, (step * dy, step * dx), axis=(0, 1))
    return out / length


def _fx_white_balance(rng: np.random.Generator, image: np.ndarray, smallest: float) -> np.ndarray:
    gains = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return image * (gains / gains.mean())


def _fx_exposure(rng: np.random.Generator, image: np.ndarray, smallest: float) -> np.ndarray:
    return np.clip(image, 0, 1) ** rng.uniform(0.8, 1.25) * rng.uniform(0.9, 1.1)


def _fx_vignette(rng: np.random.Generator, image: np.ndarray, smallest: float) -> np.ndarray:
    yy, xx = _grid(image.shape[0])
    r2 = ((yy / image.shape[0] - 0.5) ** 2 + (xx / image.shape[1] - 0.5) ** 2) * 2
    return image * (1 - rng.uniform(0.15, 0.35) * r2)[..., None]


def _fx_shadow(rng: np.random.Generator, image: np.ndarray, smallest: float) -> np.ndarray:
    yy, xx = _grid(image.shape[0])
    angle = rng.uniform(0, 2 * np.pi)
    across = (xx - image.shape[1] / 2) * math.cos(angle) + (yy - image.shape[0] / 2) * math.sin(angle)
    edge = 1 / (1 + np.exp(-(across - rng.uniform(-0.3, 0.3) * image.shape[0]) / rng.uniform(3, 8)))
    return image * (1 - rng.uniform(0.2, 0.4) * edge)[..., None]


def _fx_glare(rng: np.random.Generator, image: np.ndarray, smallest: float) -> np.ndarray:
    yy, xx = _grid(image.shape[0])
    cy, cx = rng.uniform(0, image.shape[0], 2)
    veil = rng.uniform(0.1, 0.25) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2)
                                           / (0.3 * image.shape[0]) ** 2)
    return 1 - (1 - np.clip(image, 0, 1)) * (1 - veil[..., None])


def _fx_resample(rng: np.random.Generator, image: np.ndarray, smallest: float) -> np.ndarray:
    h, w = image.shape[:2]
    # the smallest object keeps at least 12 px across at the reduced resolution
    factor = rng.uniform(min(max(0.5, 12 / smallest), 0.75), 0.75)
    small = Image.fromarray(_to_uint8(image)).resize((max(8, int(w * factor)), max(8, int(h * factor))),
                                                     Image.Resampling.BILINEAR)
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255


def _fx_posterize(rng: np.random.Generator, image: np.ndarray, smallest: float) -> np.ndarray:
    levels = rng.integers(10, 24)
    return np.round(np.clip(image, 0, 1) * (levels - 1)) / (levels - 1)


def _fx_noise(rng: np.random.Generator, image: np.ndarray, smallest: float) -> np.ndarray:
    sigma = rng.uniform(0.01, 0.03)
    shot = np.sqrt(np.clip(image, 0, 1)) * rng.uniform(0.01, 0.03)
    return image + rng.normal(0, 1, image.shape).astype(np.float32) * (sigma + shot)


def _fx_jpeg(rng: np.random.Generator, image: np.ndarray, smallest: float) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(_to_uint8(image)).save(buffer, "JPEG", quality=int(rng.integers(35, 85)))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"), np.float32) / 255


EFFECTS: dict[str, Callable[[np.random.Generator, np.ndarray, float], np.ndarray]] = {
    "white_balance": _fx_white_balance,
    "exposure": _fx_exposure,
    "vignette": _fx_vignette,
    "shadow": _fx_shadow,
    "glare": _fx_glare,
    "defocus": _fx_defocus,
    "motion": _fx_motion,
    "resample": _fx_resample,
    "posterize": _fx_posterize,
    "noise": _fx_noise,
    "jpeg": _fx_jpeg,
}


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Colour and contrast
# --------------------------------------------------------------------------------------------


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values in [0, 1] (CIE 15:2004 formulas)."""
    rgb = np.clip(np.asarray(rgb, np.float32), 0, 1)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    matrix = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                       [0.0193, 0.1192, 0.9505]], np.float32)
    xyz = linear @ matrix.T / np.array([0.95047, 1.0, 1.08883], np.float32)
    delta = 6 / 29
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    # heldout2 has the same few lines: kept apart on purpose, the held-out generators share no code
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    return ~_dilate(~mask, steps)


@dataclass
class Contrast:
    median_delta_e: float
    lightness_gap: float
    ring_share: float
    ok: bool


def contrast_report(image: np.ndarray, obj: SceneObject, others: Sequence[SceneObject] = (),
                    occluder: np.ndarray | None = None) -> Contrast:
    """The contrast guarantee of one object on the final image (see the module docstring).

    Object pixels: its ink (fill or stroke) eroded by one pixel, minus occluded pixels. Ring: the
    pixels 2-4 px outside its mask, minus other objects and the occluder. An occluder touching the
    object must differ from it as much as the ring does (its median colour, Delta E).
    """
    lab = srgb_to_lab(image.astype(np.float32) / 255)
    ink = obj.ink if obj.ink is not None else obj.mask
    core = _erode(ink, 1) & obj.mask
    if core.sum() < 4:
        core = ink & obj.mask
    full = obj.mask if occluder is None else obj.mask | (_dilate(obj.mask, 1) & occluder)
    ring = _dilate(full, 4) & ~_dilate(full, 1)
    blocked = np.zeros_like(ring) if occluder is None else _dilate(occluder, 1)
    for other in others:
        blocked |= _dilate(other.mask, 2)
    ring &= ~blocked
    if core.sum() == 0 or ring.sum() == 0:
        return Contrast(0.0, 0.0, 0.0, False)
    object_colour = np.median(lab[core], axis=0)
    ring_colour = np.median(lab[ring], axis=0)
    median_delta = float(np.linalg.norm(object_colour - ring_colour))
    lightness_gap = float(abs(object_colour[0] - ring_colour[0]))
    if occluder is not None:
        touching = _erode(occluder, 1) & _dilate(obj.mask, 3)
        if touching.sum() >= 3:
            occluder_colour = np.median(lab[touching], axis=0)
            median_delta = min(median_delta, float(np.linalg.norm(object_colour - occluder_colour)))
    share = float(np.mean(np.linalg.norm(lab[ring] - object_colour, axis=1) >= CONTRAST_RING_DE))
    small = obj.extent < SMALL_OBJECT * image.shape[0]
    ok = (median_delta >= (SMALL_MEDIAN_DE if small else CONTRAST_MEDIAN_DE)
          and lightness_gap >= (SMALL_LIGHTNESS if small else CONTRAST_LIGHTNESS)
          and share >= CONTRAST_RING_SHARE)
    return Contrast(median_delta, lightness_gap, share, ok)


def _pick_colour(rng: np.random.Generator, local_lab: np.ndarray) -> np.ndarray:
    """A colour far (Delta E >= 45, with a lightness gap) from the local background colours."""
    best, best_score = None, -1.0
    centre = np.median(local_lab, axis=0)
    low, high = np.percentile(local_lab, [10, 90], axis=0)
    for _ in range(40):
        if rng.random() < 0.25:
            colour = np.full(3, rng.choice([rng.uniform(0.02, 0.15), rng.uniform(0.85, 1.0),
                                            rng.uniform(0.4, 0.6)]), np.float32)
        else:
            colour = _hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.3, 1.0))
        lab = srgb_to_lab(colour)
        spread = min(np.linalg.norm(lab - low), np.linalg.norm(lab - high))
        score = min(float(np.linalg.norm(lab - centre)), float(spread))
        lightness_gap = abs(lab[0] - centre[0])
        if score >= 45 and lightness_gap >= 30:
            return colour
        if score + lightness_gap > best_score:
            best, best_score = colour, score + lightness_gap
    return best


# --------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    label: int
    center: tuple[float, float]
    extent: float
    angle: float
    ratio: float
    radius: float


def _bounding_radius(label: int, extent: float, ratio: float) -> float:
    ring = object_ring(label, (0.0, 0.0), extent, 0.0, ratio)
    return float(np.linalg.norm(ring, axis=1).max())


def _shape_ratio(rng: np.random.Generator, label: int) -> float:
    if CLASSES[label] == "star":
        return float(rng.uniform(*STAR_RATIO))
    if CLASSES[label] == "cross":
        return float(rng.uniform(*CROSS_WIDTH_RATIO))
    return 0.0


def _place(rng: np.random.Generator, size: int, labels: Sequence[int], extent_range: tuple[float, float]
           ) -> list[_Plan]:
    margin = max(2.0, 0.02 * size)
    gap = max(3.0, 0.04 * size)
    low, high = extent_range
    for _ in range(60):
        plans: list[_Plan] = []
        for label in labels:
            ratio = _shape_ratio(rng, label)
            extent = size * rng.uniform(low, high)
            radius = _bounding_radius(label, extent, ratio)
            for _ in range(80):
                center = tuple(rng.uniform(radius + margin, size - radius - margin, 2))
                if all(math.dist(center, p.center) >= radius + p.radius + gap for p in plans):
                    plans.append(_Plan(label, (float(center[0]), float(center[1])), extent,
                                       float(rng.uniform(0, 2 * np.pi)), ratio, radius))
                    break
            else:
                break
        if len(plans) == len(labels):
            return plans
        high = max(low, high * 0.9)
    raise RuntimeError("could not place the objects")  # pragma: no cover - sizes always fit


def _object_fill(rng: np.random.Generator, size: int, colour: np.ndarray, plan: _Plan) -> np.ndarray:
    style = rng.choice(["solid", "gradient", "grain"], p=[0.5, 0.3, 0.2])
    if style == "solid":
        return np.broadcast_to(colour, (size, size, 3))
    yy, xx = _grid(size)
    if style == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        along = ((xx - plan.center[0]) * math.cos(angle) + (yy - plan.center[1]) * math.sin(angle))
        shade = 1 + 0.12 * np.clip(along / max(plan.extent / 2, 1), -1, 1)
    else:
        shade = 0.94 + 0.12 * _noise(rng, size, max(2, size / 10))
    return np.clip(colour * shade[..., None], 0, 1)


def _occluder_ring(rng: np.random.Generator, size: int, plan: _Plan) -> np.ndarray:
    heading = rng.uniform(0, np.pi)
    direction = np.array([math.cos(heading), math.sin(heading)])
    normal = np.array([-direction[1], direction[0]])
    offset = plan.radius * rng.uniform(0.55, 1.0) * rng.choice([-1, 1])
    thickness = max(2.0, plan.extent * rng.uniform(0.1, 0.2))
    along = np.linspace(-1.5 * size, 1.5 * size, 24)
    bend = size * 0.05 * np.sin(along / size * rng.uniform(1, 3) + rng.uniform(0, 6))
    spine = np.asarray(plan.center) + along[:, None] * direction + (offset + bend)[:, None] * normal
    half = thickness / 2 * (1 + 0.3 * np.sin(along / size * 5))
    return np.concatenate([spine + half[:, None] * normal, (spine - half[:, None] * normal)[::-1]])


def _occluder_colour(rng: np.random.Generator, object_colours: Sequence[np.ndarray]
                     ) -> np.ndarray | None:
    """A twig or stem colour far (Delta E >= 40) from every object's colour, else None."""
    candidates = [(0.3, 0.22, 0.15), (0.25, 0.45, 0.2), (0.15, 0.15, 0.15), (0.8, 0.75, 0.6)]
    objects_lab = srgb_to_lab(np.array(object_colours, np.float32))
    for index in rng.permutation(len(candidates)):
        stem = np.array(candidates[index], np.float32)
        if np.linalg.norm(objects_lab - srgb_to_lab(stem), axis=1).min() >= 40:
            return stem
    return None


def _labels_for(rng: np.random.Generator, kind: str) -> list[int]:
    if kind == "single":
        return [int(rng.integers(len(CLASSES)))]
    if kind == "pair":
        return [int(c) for c in rng.choice(len(CLASSES), 2, replace=False)]
    if kind == "same":
        return [int(rng.integers(len(CLASSES)))] * int(rng.integers(2, 4))
    raise ValueError(f"unknown scene kind {kind!r}; expected one of {KINDS}")


def _extent_range(count: int) -> tuple[float, float]:
    return {1: SINGLE_EXTENT, 2: (0.12, 0.42), 3: (0.12, 0.34)}[count]


def _attempt(rng: np.random.Generator, size: int, kind: str, labels: Sequence[int],
             mild: bool) -> Scene:
    background = str(rng.choice(list(BACKGROUNDS)))
    image = BACKGROUNDS[background](rng, size).astype(np.float32)
    image = np.clip(image, 0, 1)
    plans = _place(rng, size, labels, _extent_range(len(labels)))
    lab_background = srgb_to_lab(image)
    yy, xx = _grid(size)
    objects: list[SceneObject] = []
    colours: list[np.ndarray] = []
    for plan in plans:
        outer = object_ring(plan.label, plan.center, plan.extent, plan.angle, plan.ratio)
        stroke = 0.0
        if plan.extent >= 0.16 * size and rng.random() < 0.35:
            stroke = size * rng.uniform(0.03, 0.06)
            while stroke >= 0.03 * size:
                inner = inset_ring(outer, stroke)
                if _stroke_fits(plan.label, outer, inner, plan.center, plan.ratio, plan.extent,
                                stroke):
                    break
                stroke *= 0.85
            else:
                stroke = 0.0
        filled = polygon_coverage([outer], size, size)
        ink = polygon_coverage([outer], size, size, holes=[inset_ring(outer, stroke)]) \
            if stroke else filled
        near = ((yy - plan.center[1]) ** 2 + (xx - plan.center[0]) ** 2) <= (plan.radius + 4) ** 2
        colour = _pick_colour(rng, lab_background[near])
        colours.append(colour)
        fill = _object_fill(rng, size, colour, plan)
        image = image * (1 - ink[..., None]) + fill * ink[..., None]
        objects.append(SceneObject(
            label=plan.label, mask=filled >= 0.5, box=(0, 0, 0, 0), center=plan.center,
            extent=plan.extent, angle=plan.angle, ratio=plan.ratio, stroke=stroke,
            ink=ink >= 0.5))

    occluder = None
    # only objects of at least 16 % of the side may be partly hidden; small ones stay whole
    large = [plan for plan in plans if plan.extent >= OCCLUDABLE_EXTENT * size]
    if large and rng.random() < 0.15:
        target = large[int(rng.integers(len(large)))]
        for _ in range(8):
            ring = _occluder_ring(rng, size, target)
            coverage = polygon_coverage([ring], size, size)
            hidden = coverage >= 0.5
            fractions = [float((o.mask & hidden).sum() / o.mask.sum()) for o in objects]
            small_hit = any(f > 0 and o.extent < OCCLUDABLE_EXTENT * size
                            for o, f in zip(objects, fractions, strict=True))
            stem = _occluder_colour(rng, colours)
            if stem is not None and not small_hit and MAX_OCCLUDED >= max(fractions) >= 0.03:
                shade = 0.85 + 0.3 * _noise(rng, size, 6)
                image = _lerp(image, stem * shade[..., None], coverage)
                occluder = hidden
                for obj, fraction in zip(objects, fractions, strict=True):
                    obj.mask = obj.mask & ~hidden
                    obj.ink = obj.ink & ~hidden
                    obj.occluded_fraction = fraction
                break

    smallest = min(plan.extent for plan in plans)
    names = list(EFFECTS)
    # downscale-upscale only where the smallest object keeps >= 12 px across at 0.75x
    optional = [n for n in names[:-1] if n != "resample" or smallest >= 16]
    chosen: list[str] = []
    if not mild:
        count = int(rng.integers(2, 5))
        chosen = sorted(rng.choice(optional, count - 1, replace=False).tolist(), key=names.index)
        if rng.random() < 0.6:
            chosen.append("jpeg")
    for name in chosen:
        image = EFFECTS[name](rng, image, smallest)
    final = _to_uint8(image)
    for obj in objects:
        rows, cols = np.nonzero(obj.mask)
        obj.box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
    return Scene(final, objects, kind, background, tuple(chosen), occluder)


def scene_contrast_ok(scene: Scene) -> bool:
    """Every object of the scene meets the contrast guarantee."""
    return all(
        contrast_report(scene.image, obj, [o for o in scene.objects if o is not obj],
                        scene.occluder).ok
        for obj in scene.objects
    )


def _make_scene(rng: np.random.Generator, size: int, kind: str, labels: Sequence[int] | None
                ) -> Scene:
    if kind not in KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {KINDS}")
    for attempt in range(40):
        chosen = list(labels) if labels is not None else _labels_for(rng, kind)
        scene = _attempt(rng, size, kind, chosen, mild=attempt >= 20)
        if scene_contrast_ok(scene):
            return scene
    raise RuntimeError("no scene met the contrast guarantee")  # pragma: no cover


def make_scene(rng: np.random.Generator, size: int = 128, kind: str = "single") -> Scene:
    """One scene: ``single`` (one object), ``pair`` (two classes), ``same`` (2-3 of one class)."""
    return _make_scene(rng, size, kind, None)


def make_scenes(seed: int, per_kind: int, size: int = 128) -> dict[str, list[Scene]]:
    rng = np.random.default_rng(seed)
    return {kind: [make_scene(rng, size, kind) for _ in range(per_kind)] for kind in KINDS}


def make_dataset(seed: int, count: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Single-object images and labels, ``count // 5`` per class and the rest spread over classes."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.repeat(np.arange(len(CLASSES)), count // len(CLASSES)),
                             rng.permutation(len(CLASSES))[: count % len(CLASSES)]])
    labels = rng.permutation(labels).astype(np.int64)
    images = np.zeros((count, size, size, 3), np.uint8)
    for index, label in enumerate(labels):
        images[index] = _make_scene(rng, size, "single", [int(label)]).image
    return images, labels


# --------------------------------------------------------------------------------------------
# Contact sheet
# --------------------------------------------------------------------------------------------


def contact_sheet(scenes: Sequence[Scene], columns: int = 8, outline: bool = True) -> Image.Image:
    from PIL import ImageDraw

    size = scenes[0].image.shape[0]
    rows = math.ceil(len(scenes) / columns)
    label_height = 12
    sheet = Image.new("RGB", (columns * size, rows * (size + label_height)), "white")
    draw = ImageDraw.Draw(sheet)
    for index, scene in enumerate(scenes):
        tile = scene.image.copy()
        if outline:
            for obj in scene.objects:
                edge = obj.mask & ~_erode(obj.mask, 1)
                tile[edge] = (255, 0, 255)
        x, y = (index % columns) * size, (index // columns) * (size + label_height)
        sheet.paste(Image.fromarray(tile), (x, y))
        text = f"{scene.kind[:2]} {scene.background[:9]} " + ",".join(o.name[:3] for o in scene.objects)
        draw.text((x + 2, y + size), text, fill=(0, 0, 0))
    return sheet


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    path = args[0] if args else "heldout3_sheet.png"
    scenes = make_scenes(seed=2026, per_kind=16)
    sheet = contact_sheet([s for kind in KINDS for s in scenes[kind]])
    sheet.save(path)
    started = time.perf_counter()
    timed = make_scenes(seed=7, per_kind=20)
    elapsed = time.perf_counter() - started
    count = sum(len(v) for v in timed.values())
    print(f"wrote {path}; {count} scenes at 128 px in {elapsed:.2f} s = {count / elapsed:.1f} scenes/s")


if __name__ == "__main__":
    main()
