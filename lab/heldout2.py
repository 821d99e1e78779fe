"""A second, independent held-out test set of shape scenes, with per-object ground-truth masks.

What it draws
-------------
Five shape classes (``CLASSES``: disc, square, equilateral triangle, five-pointed star, plus-sign
cross with four equal arms) at any rotation, filled (solid, two-colour gradient, speckled or banded)
or outlined (a 2-6 % stroke, sometimes dashed), on eleven photographic background families kept
apart from those the project's other shape generators use (flat colours, gradients, blocks, value
noise, stripes/checks, marble, wood, Voronoi cells, bokeh, foliage, ripples, halftone,
hatching, salt-and-pepper): brick walls with mortar, woven fabric, gravel, sky with clouds over a horizon, paper fibres, camouflage, text-like glyph clutter,
circuit boards, a one-point-perspective room, a light-leaked photo, and cracked asphalt. Random
photo post-effects follow: exposure/contrast/gamma, colour temperature, vignetting, gaussian or
motion blur, chromatic aberration, gaussian or signal-dependent (Poisson-like) sensor noise and
low-quality JPEG recompression.

Why this way
------------
The point is a test generator written without reading the one the model was trained on, sharing
no code and not its drawing method (signed-distance compositing), so that a score on it measures
generalisation rather than memorised rendering artefacts. Shapes are rasterised by supersampling: every pixel is split into 5 x 5 subsamples, each
subsample is tested exactly against the shape (half-plane tests for the convex polygons, a folded
wedge test for the star, two rectangles for the cross, a radius test for the disc) and the coverage
is the mean, which anti-aliases the edges. Outlines are the set difference of the shape offset
outward and inward by half the stroke (offsetting each edge line, i.e. mitred joins).

Ground truth. An object's ``mask`` is where the filled shape (an outline's enclosed interior
included, grown by half the stroke) covers at least half a pixel, minus pixels hidden by the
optional occluder (a plank crossing at most 25 % of an object). Objects never overlap, and at
least 85 % of each object's mask lies inside the image.

Fairness. Each object's colour is chosen against the clean background under its painted pixels:
the 20th percentile of the RGB Euclidean distance between the composited object and the background
is either 50-90 (low contrast, about a third of objects; filled shapes with a circumradius of at
least 10 % of the side only, since a faint thin outline or a faint speck on clutter is unfair) or
at least 110. The object's mean colour must also differ by >= 40 from 75 % of the background in
a 3-pixel ring around it (no faint blue cross on blue text). After the post-effects the median
Euclidean change the object causes (final image vs. the same scene rendered without it, same
effect parameters and noise) must stay >= 25; otherwise the effects, then the scene, are redrawn.
:func:`make_scene_with_evidence` returns the intermediate images so tests can re-check these
guarantees.

``python -m lab.heldout2 sheet.png`` prints the speed and writes a contact sheet.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
KINDS = ("single", "pair", "same")

_SUBSAMPLES = 5  # per pixel and axis: 25 exact inside-tests per pixel, no ties at 0.5
_LOW_CONTRAST = (50.0, 90.0)
_HIGH_CONTRAST = 110.0
_MIN_VISIBLE_CHANGE = 25.0
_MIN_INSIDE = 0.85
_MAX_HIDDEN = 0.25
# an object's mean colour differs by >= _RING_DISTANCE from >= _RING_SHARE of the background in
# a ring _RING_WIDTH pixels wide around it
_RING_WIDTH = 3
_RING_DISTANCE = 40.0
_RING_SHARE = 0.75


@dataclass
class Heldout2Object:
    label: int
    mask: np.ndarray  # (H, W) bool
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    radius: float = 0.0  # circumradius in pixels
    centre: tuple[float, float] = (0.0, 0.0)  # (y, x) in pixels, pixel (i, j) spans [i, i+1)
    angle: float = 0.0  # rotation in radians: first vertex (star: first tip) at this angle
    shape_ratio: float = 0.0  # star: inner/outer radius; cross: bar width / bar length
    stroke: float = 0.0  # outline width in pixels (0 for filled shapes)
    style: str = "filled"  # filled | outline | dashed
    fill: str = "solid"  # solid | gradient | speckle | bands (filled shapes)
    contrast: float = 0.0  # 20th percentile of the object-vs-background RGB distance
    visibility: float = 0.0  # median RGB change the object causes in the final image
    hidden: float = 0.0  # fraction of the mask hidden by an occluder


@dataclass
class Heldout2Scene:
    image: np.ndarray  # (H, W, 3) uint8
    objects: list[Heldout2Object]
    kind: str
    texture: str
    effects: tuple[str, ...] = ()


@dataclass
class Heldout2Evidence:
    """Intermediate images of one scene, for checking the fairness guarantees."""

    background: np.ndarray  # (H, W, 3) float32, clean background
    clean: np.ndarray  # (H, W, 3) float32, objects and occluders composited, before post-effects
    without: list[np.ndarray] = field(default_factory=list)  # final uint8 image without object i
    painted: list[np.ndarray] = field(default_factory=list)  # visible pixels object i painted


# ----------------------------------------------------------------------------------------------
# small numeric helpers


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _upsample(small: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of an (h, w[, c]) array to (size, size[, c])."""

    def axis_weights(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(size, dtype=np.float32) + 0.5) * n / size - 0.5, 0, n - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, (src - lo).astype(np.float32)

    lo, hi, f = axis_weights(small.shape[0])
    shape = (-1,) + (1,) * (small.ndim - 1)
    rows = small[lo] * (1 - f.reshape(shape)) + small[hi] * f.reshape(shape)
    lo, hi, f = axis_weights(small.shape[1])
    shape = (1, -1) + (1,) * (small.ndim - 2)
    return (rows[:, lo] * (1 - f.reshape(shape)) + rows[:, hi] * f.reshape(shape)).astype(
        np.float32
    )


def _smooth_field(rng: np.random.Generator, size: int, cells: int, channels: int = 0) -> np.ndarray:
    """One octave of smooth random variation (unit std): coarse gaussian noise, blurred, upsampled."""
    shape = (cells, cells) if channels == 0 else (cells, cells, channels)
    coarse = _blur(rng.standard_normal(shape).astype(np.float32), 0.8)
    out = _upsample(coarse, size)
    return (out - out.mean()) / (out.std() + 1e-6)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable gaussian blur with edge padding, on the first two axes."""
    if sigma <= 0:
        return img
    radius = max(1, int(math.ceil(2.5 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    out = img
    for axis in (0, 1):
        pad = [(0, 0)] * img.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for k, w in enumerate(taps):
            acc += w * np.take(padded, np.arange(k, k + n), axis=axis)
        out = acc
    return out


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate by whole pixels, repeating the edge."""
    h, w = img.shape[:2]
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return img[ys][:, xs]


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _splat(ys: np.ndarray, xs: np.ndarray, weights: np.ndarray | float, size: int) -> np.ndarray:
    """Bilinear splat of weighted points into a (size, size) layer."""
    ys = np.asarray(ys, np.float32)
    weights = np.broadcast_to(np.asarray(weights, np.float32), ys.shape).ravel()
    ys = ys.ravel() - 0.5
    xs = np.asarray(xs, np.float32).ravel() - 0.5
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    fy = ys - y0
    fx = xs - x0
    layer = np.zeros(size * size, np.float32)
    for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)),
                      (1, 1, fy * fx)):
        yy = y0 + dy
        xx = x0 + dx
        ok = (yy >= 0) & (yy < size) & (xx >= 0) & (xx < size)
        layer += np.bincount(yy[ok] * size + xx[ok], weights=(w * weights)[ok],
                             minlength=size * size).astype(np.float32)
    return layer.reshape(size, size)


def _segments_layer(segments: np.ndarray, size: int, spacing: float = 0.5) -> np.ndarray:
    """Ink density of thin line segments (S, 4: y0, x0, y1, x1), about one unit per pixel of line."""
    if len(segments) == 0:
        return np.zeros((size, size), np.float32)
    lengths = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1])
    count = max(2, int(math.ceil(lengths.max() / spacing)) + 1)
    t = np.linspace(0.0, 1.0, count, dtype=np.float32)[None, :]
    ys = segments[:, :1] + (segments[:, 2:3] - segments[:, :1]) * t
    xs = segments[:, 1:2] + (segments[:, 3:4] - segments[:, 1:2]) * t
    weights = (lengths / count)[:, None] * np.ones_like(t)
    return _splat(ys, xs, weights, size)


def _pick(rng: np.random.Generator, palette: list) -> np.ndarray:
    return np.asarray(palette[rng.integers(len(palette))], np.float32)


def _rotated(size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = _grid(size)
    c, s = math.cos(angle), math.sin(angle)
    return yy * c + xx * s, xx * c - yy * s


# ----------------------------------------------------------------------------------------------
# background families: each returns a clean (size, size, 3) float32 image in [0, 255]


def _bg_brick(rng: np.random.Generator, n: int) -> np.ndarray:
    course = n * rng.uniform(0.07, 0.13)
    length = course * rng.uniform(1.9, 2.7)
    mortar = max(1.0, course * rng.uniform(0.1, 0.2))
    y, x = _rotated(n, rng.uniform(-0.12, 0.12))
    y = y + rng.uniform(0, course)
    row = np.floor(y / course).astype(int)
    shifted = x + (row % 2) * length * 0.5 + rng.uniform(0, length)
    col = np.floor(shifted / length).astype(int)
    base = _pick(rng, [(150, 62, 45), (120, 55, 40), (196, 160, 110), (125, 120, 115),
                       (214, 208, 196), (92, 60, 48)])
    joint = _pick(rng, [(190, 186, 176), (70, 66, 60), (150, 146, 140), (40, 38, 36)])
    table = rng.standard_normal((64, 64, 4)).astype(np.float32)
    cell = table[row % 64, col % 64]
    bricks = base * (1 + 0.12 * cell[..., :1]) + 9 * cell[..., 1:]
    in_joint = ((y % course) < mortar) | ((shifted % length) < mortar)
    img = np.where(in_joint[..., None], joint, bricks)
    grain = rng.normal(0, 7, (n, n, 1)).astype(np.float32)
    return img + grain


def _bg_weave(rng: np.random.Generator, n: int) -> np.ndarray:
    pitch = n * rng.uniform(0.028, 0.055)
    v, u = _rotated(n, rng.uniform(0, math.pi))
    i = np.floor(u / pitch).astype(int)
    j = np.floor(v / pitch).astype(int)
    fu = u / pitch - i
    fv = v / pitch - j
    twill = rng.random() < 0.5
    warp_on_top = ((i + j) % 4 < 2) if twill else ((i + j) % 2 == 0)
    warp = _pick(rng, [(40, 62, 110), (110, 30, 35), (60, 80, 50), (150, 120, 80), (70, 70, 75)])
    weft = _pick(rng, [(200, 196, 185), (230, 225, 205), (120, 110, 100), (180, 150, 90)])
    slub = rng.normal(0, 0.07, 512).astype(np.float32)
    warp_shade = (0.62 + 0.38 * np.sin(np.pi * fu)) * (1 + slub[i % 512])
    weft_shade = (0.62 + 0.38 * np.sin(np.pi * fv)) * (1 + slub[(j + 7) % 512])
    img = np.where(warp_on_top[..., None], warp * warp_shade[..., None], weft * weft_shade[..., None])
    return img + rng.normal(0, 4, (n, n, 1)).astype(np.float32)


def _bg_gravel(rng: np.random.Generator, n: int) -> np.ndarray:
    scale = n / 128
    mean_radius = rng.uniform(2.4, 3.4) * scale  # largest pebble < the smallest object
    count = int(n * n / (math.pi * mean_radius**2) * 1.5)
    count = min(count, 4000)
    radius = mean_radius * rng.uniform(0.6, 1.4, count)
    a = (radius * rng.uniform(1.0, 1.3, count)).astype(np.float32)
    b = (radius * rng.uniform(0.6, 1.0, count)).astype(np.float32)
    cy = rng.uniform(0, n, count)
    cx = rng.uniform(0, n, count)
    theta = rng.uniform(0, math.pi, count)
    phase = rng.uniform(0, 2 * math.pi, count)
    reach = np.ceil(a * 1.09).astype(int) + 1
    zbuf = np.full(n * n, -1, np.int64)
    for r in np.unique(reach):  # pebbles grouped by window size, each group vectorised
        ids = np.flatnonzero(reach == r)
        offsets = np.arange(-r, r + 1)
        oy, ox = np.meshgrid(offsets, offsets, indexing="ij")
        py = np.floor(cy[ids]).astype(int)[:, None] + oy.ravel()[None, :]
        px = np.floor(cx[ids]).astype(int)[:, None] + ox.ravel()[None, :]
        dy = (py + 0.5 - cy[ids, None]).astype(np.float32)
        dx = (px + 0.5 - cx[ids, None]).astype(np.float32)
        cos_t = np.cos(theta[ids]).astype(np.float32)[:, None]
        sin_t = np.sin(theta[ids]).astype(np.float32)[:, None]
        u = dx * cos_t + dy * sin_t
        v = dy * cos_t - dx * sin_t
        # lumpy outline: radius modulated by cos(3 phi + phase), written without arctan2
        rho3 = (u * u + v * v) ** 1.5 + 1e-6
        cos3 = (u * u * u - 3 * u * v * v) / rho3
        sin3 = (3 * u * u * v - v * v * v) / rho3
        lump = 1 + 0.15 * (cos3 * np.cos(phase[ids, None]) - sin3 * np.sin(phase[ids, None]))
        height = 1 - ((u / a[ids, None]) ** 2 + (v / b[ids, None]) ** 2) * lump
        ok = (height > 0) & (py >= 0) & (py < n) & (px >= 0) & (px < n)
        code = (height[ok] * 1000).astype(np.int64) * 8192 + np.broadcast_to(ids[:, None], ok.shape)[ok]
        np.maximum.at(zbuf, py[ok] * n + px[ok], code)
    covered = zbuf >= 0
    winner = np.where(covered, zbuf % 8192, 0)
    top = np.where(covered, (zbuf // 8192) / 1000.0, 0.0)
    palette = np.array([(150, 145, 138), (118, 104, 90), (180, 170, 150), (95, 92, 90),
                        (160, 130, 100), (205, 200, 190), (70, 66, 62)], np.float32)
    stone = palette[rng.integers(len(palette), size=count)] * rng.uniform(0.8, 1.15, (count, 1))
    shade = 0.5 + 0.5 * np.sqrt(top)
    gap = _pick(rng, [(35, 32, 30), (60, 52, 44)])
    img = np.where(covered[:, None], stone[winner] * shade[:, None], gap)
    return img.reshape(n, n, 3).astype(np.float32)


def _bg_sky(rng: np.random.Generator, n: int) -> np.ndarray:
    yy, xx = _grid(n)
    horizon = n * rng.uniform(0.55, 0.9)
    if rng.random() < 0.7:
        top, low = np.array([40, 90, 170], np.float32), np.array([170, 200, 230], np.float32)
    else:
        top, low = np.array([70, 60, 120], np.float32), np.array([240, 150, 90], np.float32)
    t = np.clip(yy / horizon, 0, 1)[..., None]
    sky = top * (1 - t) + low * t
    cells = 32
    cy, cx = np.mgrid[0:cells, 0:cells].astype(np.float32)
    density = np.zeros((cells, cells), np.float32)
    for _ in range(rng.integers(2, 6)):
        oy, ox = rng.uniform(0, cells * 0.75), rng.uniform(-4, cells + 4)
        for _ in range(rng.integers(5, 12)):
            py, px = oy + rng.normal(0, 2), ox + rng.normal(0, 4.5)
            sigma = rng.uniform(1.2, 3.2)
            density += np.exp(-((cy - py) ** 2 + (cx - px) ** 2) / (2 * sigma**2))
    density = _upsample(density, n) * (1 + 0.25 * _smooth_field(rng, n, 24))
    cover = 1 - np.exp(-1.6 * np.clip(density, 0, None))
    underside = np.clip(_shift(density, -2, 0) - density, 0, None)
    cloud = 245 - 70 * np.clip(underside, 0, 1)[..., None]
    img = sky * (1 - cover[..., None]) + cloud * cover[..., None]
    ridge = horizon + sum(
        rng.uniform(1, 5) * np.sin(xx[0] * rng.uniform(0.02, 0.12) + rng.uniform(0, 6.3))
        for _ in range(3)
    )
    ground_colour = _pick(rng, [(60, 85, 45), (90, 80, 60), (40, 60, 85), (110, 100, 70)])
    depth = np.clip((yy - ridge[None, :]) / (n - horizon + 1), 0, 1)[..., None]
    ground = ground_colour * (0.75 + 0.45 * depth) * (
        1 + 0.12 * _smooth_field(rng, n, 40)[..., None]
    )
    below = (yy >= ridge[None, :])[..., None]
    return np.where(below, ground, img).astype(np.float32)


def _bg_paper(rng: np.random.Generator, n: int) -> np.ndarray:
    base = _pick(rng, [(236, 230, 214), (245, 244, 238), (178, 144, 104), (200, 196, 188),
                       (222, 206, 170)])
    tone = 7 * _smooth_field(rng, n, 6)[..., None]
    count = n * n // 30
    start_y = rng.uniform(0, n, count)
    start_x = rng.uniform(0, n, count)
    angle = rng.uniform(0, math.pi, count)
    bend = rng.normal(0, 0.08, count)
    length = rng.uniform(3, 12, count) * n / 128
    steps = np.arange(8)[None, :]
    heading = angle[:, None] + bend[:, None] * steps
    step_len = (length / 8)[:, None]
    ys = start_y[:, None] + np.cumsum(np.sin(heading) * step_len, axis=1)
    xs = start_x[:, None] + np.cumsum(np.cos(heading) * step_len, axis=1)
    sign = np.where(rng.random(count) < 0.6, -1.0, 1.0)[:, None] * np.ones_like(ys)
    fibres = _blur(_splat(ys, xs, sign, n), 0.5)
    specks = _splat(rng.uniform(0, n, n // 3), rng.uniform(0, n, n // 3), -3.0, n)
    img = base + tone + 26 * (fibres + specks)[..., None]
    return img + rng.normal(0, 3, (n, n, 1)).astype(np.float32)


def _bg_camouflage(rng: np.random.Generator, n: int) -> np.ndarray:
    palettes = [
        [(84, 96, 56), (122, 100, 68), (38, 38, 30), (160, 150, 108)],  # woodland
        [(196, 172, 128), (160, 128, 88), (120, 100, 70), (220, 200, 160)],  # desert
        [(120, 122, 126), (80, 82, 88), (170, 170, 172), (40, 42, 46)],  # urban
        [(40, 50, 80), (70, 90, 130), (20, 24, 36), (110, 130, 160)],  # navy
    ]
    colours = np.array(palettes[rng.integers(len(palettes))], np.float32)
    cells = int(n / rng.uniform(10, 18))
    warp_y = 3 * _smooth_field(rng, n, max(3, cells // 2))
    warp_x = 3 * _smooth_field(rng, n, max(3, cells // 2))
    yy, xx = _grid(n)
    field_ = _smooth_field(rng, n, cells)
    ys = np.clip(yy + warp_y, 0, n - 1).astype(int)
    xs = np.clip(xx + warp_x, 0, n - 1).astype(int)
    field_ = field_[ys, xs]
    cuts = np.quantile(field_, np.sort(rng.uniform(0.2, 0.8, 3)))
    index = np.searchsorted(cuts, field_)
    img = colours[rng.permutation(4)][index]
    return img + rng.normal(0, 5, (n, n, 1)).astype(np.float32)


# a glyph is 2-4 strokes between nodes of a 3 x 3 grid (row, col in 0..2)
_GLYPH_STROKES = np.array(
    [(0, 0, 2, 0), (0, 2, 2, 2), (0, 1, 2, 1), (0, 0, 0, 2), (1, 0, 1, 2), (2, 0, 2, 2),
     (0, 0, 2, 2), (0, 2, 2, 0), (0, 0, 1, 2), (1, 0, 2, 2), (0, 1, 2, 0), (0, 1, 2, 2),
     (1, 0, 0, 2), (2, 1, 1, 2)], np.float32)


def _bg_glyphs(rng: np.random.Generator, n: int) -> np.ndarray:
    dark_on_light = rng.random() < 0.6
    if dark_on_light:
        paper = _pick(rng, [(235, 232, 222), (250, 250, 245), (220, 226, 236)])
        ink = _pick(rng, [(20, 20, 25), (30, 40, 120), (90, 20, 20)])
    else:
        paper = _pick(rng, [(30, 60, 45), (25, 25, 28), (40, 40, 70)])
        ink = _pick(rng, [(230, 230, 225), (240, 220, 120)])
    line_height = n * rng.uniform(0.055, 0.1)
    glyph_w = line_height * rng.uniform(0.45, 0.6)
    glyph_h = line_height * rng.uniform(0.55, 0.7)
    segments = []
    y = rng.uniform(0, line_height)
    while y < n:
        x = rng.uniform(-glyph_w, glyph_w * 2)
        while x < n:
            for _ in range(rng.integers(2, 9)):
                strokes = _GLYPH_STROKES[rng.choice(len(_GLYPH_STROKES), rng.integers(2, 5),
                                                    replace=False)]
                seg = strokes / 2 * [glyph_h, glyph_w, glyph_h, glyph_w] + [y, x, y, x]
                segments.append(seg)
                x += glyph_w * 1.35
            x += glyph_w * rng.uniform(1.0, 1.8)
        y += line_height
    segs = np.concatenate(segments).astype(np.float32)
    tilt = rng.uniform(-0.08, 0.08)
    c, s = math.cos(tilt), math.sin(tilt)
    ys, xs = segs[:, [0, 2]] - n / 2, segs[:, [1, 3]] - n / 2
    segs = np.stack([ys[:, 0] * c + xs[:, 0] * s, xs[:, 0] * c - ys[:, 0] * s,
                     ys[:, 1] * c + xs[:, 1] * s, xs[:, 1] * c - ys[:, 1] * s], 1) + n / 2
    weight = np.clip(_blur(_segments_layer(segs, n), 0.45) * rng.uniform(1.4, 2.2), 0, 1)
    img = paper * (1 - weight[..., None]) + ink * weight[..., None]
    return img + rng.normal(0, 3, (n, n, 1)).astype(np.float32)


def _bg_circuit(rng: np.random.Generator, n: int) -> np.ndarray:
    board = _pick(rng, [(28, 92, 44), (22, 50, 110), (24, 24, 26), (120, 28, 30)])
    copper = _pick(rng, [(196, 150, 80), (190, 190, 180), (70, 170, 80), (220, 190, 90)])
    pitch = n * rng.uniform(0.03, 0.05)
    directions = np.array([(0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)],
                          np.float32)
    segments, ends = [], []
    for _ in range(int(n * n / (pitch * pitch) / 18)):
        pos = np.floor(rng.uniform(0, n, 2) / pitch) * pitch
        heading = int(rng.integers(0, 8, dtype=np.int64)) // 2 * 2
        ends.append(pos.copy())
        for _ in range(rng.integers(3, 14)):
            if rng.random() < 0.25:
                heading = (heading + (1 if rng.random() < 0.5 else -1)) % 8
            step = directions[heading] * pitch * rng.integers(1, 4)
            segments.append((pos[0], pos[1], pos[0] + step[0], pos[1] + step[1]))
            pos = pos + step
        ends.append(pos.copy())
    traces = _segments_layer(np.array(segments, np.float32), n) > 0.25
    traces = _dilate(traces, int(rng.integers(0, 2)))
    pads = np.zeros((n, n), bool)
    ends_arr = np.array(ends)
    for py, px in ends_arr[(ends_arr >= 0).all(1) & (ends_arr < n).all(1)].astype(int):
        pads[max(0, py - 1):py + 2, max(0, px - 1):px + 2] = True
    img = np.broadcast_to(board, (n, n, 3)).copy()
    img *= (1 + 0.08 * _smooth_field(rng, n, 8))[..., None]
    img[traces] = copper * 0.85
    img[pads] = copper
    yy, xx = _grid(n)
    for _ in range(rng.integers(0, 3)):  # elongated chips with pin rows, never square
        h, w = n * rng.uniform(0.07, 0.12), n * rng.uniform(0.22, 0.35)
        if rng.random() < 0.5:
            h, w = w, h
        y0, x0 = rng.uniform(-h / 2, n - h / 2), rng.uniform(-w / 2, n - w / 2)
        body = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)
        pins = ((yy >= y0 - 2) & (yy < y0 + h + 2) & (xx >= x0 - 2) & (xx < x0 + w + 2)
                & ~body & (((xx if w > h else yy) % 3) < 1.5))
        img[pins] = copper
        img[body] = (30, 30, 32)
    return img + rng.normal(0, 4, (n, n, 1)).astype(np.float32)


def _bg_room(rng: np.random.Generator, n: int) -> np.ndarray:
    yy, xx = _grid(n)
    vy, vx = n * rng.uniform(0.3, 0.55), n * rng.uniform(0.3, 0.7)
    left, right = n * rng.uniform(0.12, 0.3), n * rng.uniform(0.12, 0.3)
    up, down = n * rng.uniform(0.1, 0.25), n * rng.uniform(0.08, 0.2)
    dy, dx = yy - vy, xx - vx
    tx = np.where(dx > 0, dx / right, -dx / left)
    ty = np.where(dy > 0, dy / down, -dy / up)
    t = np.maximum(np.maximum(tx, ty), 1.0)
    wall = _pick(rng, [(200, 190, 170), (170, 190, 200), (210, 200, 190), (150, 160, 140),
                       (190, 160, 150)])
    floor_colour = _pick(rng, [(140, 100, 65), (170, 130, 90), (110, 80, 55), (160, 160, 160)])
    img = np.broadcast_to(wall, (n, n, 3)).astype(np.float32).copy()
    side = (tx >= ty) & (t > 1)
    img[side] *= np.where(dx[side] > 0, 0.8, 0.9)[:, None]
    ceiling = (ty > tx) & (dy < 0)
    img[ceiling] = np.minimum(wall * 1.12, 255)
    floor = (ty > tx) & (dy > 0)
    u = dx / t  # lateral floor coordinate, constant along lines to the vanishing point
    depth = 1.0 / t
    plank_w = rng.uniform(6, 12) * n / 128
    lane = np.floor(u / plank_w).astype(int)
    seam = (np.abs(((u / plank_w) % 1.0) - 0.5) > 0.5 - 0.07 * t)
    joint = (((depth * rng.uniform(6, 10) + (lane % 3) * 0.33) % 1.0) < 0.05)
    plank = floor_colour * (1 + 0.1 * np.sin(lane * 12.9898)[..., None])
    floor_img = np.where((seam | joint)[..., None], floor_colour * 0.55, plank)
    img[floor] = floor_img[floor]
    base_band = side & (dy / t > down * 0.8)
    img[base_band] = (235, 232, 225)
    if rng.random() < 0.6:  # a door or tall window on the back wall (2:1, not square)
        dw = min(left, right) * rng.uniform(0.5, 0.8)
        x0 = vx + rng.uniform(-left, right - dw)
        door = (t <= 1) & (xx >= x0) & (xx < x0 + dw) & (yy > vy + down - 2 * dw) & (yy < vy + down)
        img[door] = _pick(rng, [(90, 60, 40), (230, 240, 250), (60, 70, 80)])
    light = 1 - 0.3 * np.clip(((xx - vx) ** 2 + (yy - vy) ** 2) / n**2 * 2, 0, 1)
    return img * light[..., None] + rng.normal(0, 3, (n, n, 1)).astype(np.float32)


def _bg_light_leak(rng: np.random.Generator, n: int) -> np.ndarray:
    mood = rng.uniform(50, 130)
    scene = mood + 35 * _smooth_field(rng, n, int(rng.integers(3, 6)), 3)
    yy, xx = _grid(n)
    angle = rng.uniform(0, 2 * math.pi)
    along = ((xx - n / 2) * math.cos(angle) + (yy - n / 2) * math.sin(angle)) / n + 0.5
    glow = np.exp(-np.clip(1 - along, 0, None) / rng.uniform(0.15, 0.35))
    glow *= 1 + 0.4 * _smooth_field(rng, n, 5)
    streak_pos = rng.uniform(0.2, 0.8)
    across = ((xx - n / 2) * -math.sin(angle + 0.6) + (yy - n / 2) * math.cos(angle + 0.6)) / n
    streak = 0.6 * np.exp(-(((across + 0.5) - streak_pos) / 0.06) ** 2)
    leak_colour = _pick(rng, [(255, 120, 40), (255, 60, 80), (255, 190, 90), (220, 90, 200)])
    light = np.clip(glow + streak, 0, 1.2)[..., None] * leak_colour / 255.0
    base = np.clip(scene, 0, 255) / 255.0
    img = 1 - (1 - base) * (1 - np.clip(light, 0, 1))  # screen blend
    return img * 255.0 + rng.normal(0, 5, (n, n, 1)).astype(np.float32)


def _bg_asphalt(rng: np.random.Generator, n: int) -> np.ndarray:
    grey = rng.uniform(60, 170)
    tint = np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.03, 3)
    img = grey * tint * (1 + 0.1 * _smooth_field(rng, n, 10))[..., None]
    img = img + rng.normal(0, 12, (n, n, 1)) + 8 * _blur(rng.standard_normal((n, n, 1)), 0.8)
    flecks = rng.random((n, n)) < 0.02
    img[flecks] += rng.choice([-60.0, 60.0], size=(int(flecks.sum()), 1))
    if rng.random() < 0.4:  # worn road marking
        angle = rng.uniform(0, math.pi)
        v, _ = _rotated(n, angle)
        width = n * rng.uniform(0.05, 0.1)
        offset = rng.uniform(-n * 0.3, n * 0.3) + n / 2
        band = (np.abs(v - offset) < width / 2) & (_smooth_field(rng, n, 16) > -0.8)
        img[band] = _pick(rng, [(230, 228, 220), (230, 190, 60)])
    segments = []
    for _ in range(rng.integers(2, 6)):
        pos = rng.uniform(0, n, 2)
        heading = rng.uniform(0, 2 * math.pi)
        for _ in range(rng.integers(30, 90)):
            heading += rng.normal(0, 0.35)
            step = np.array([math.sin(heading), math.cos(heading)]) * 1.6
            segments.append((*pos, *(pos + step)))
            pos = pos + step
    cracks = np.clip(_segments_layer(np.array(segments, np.float32), n) * 1.5, 0, 1)
    cracks = np.maximum(cracks, 0.6 * _blur(cracks, 0.7))
    return img * (1 - 0.75 * cracks[..., None])


TEXTURES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "brick": _bg_brick,
    "weave": _bg_weave,
    "gravel": _bg_gravel,
    "sky": _bg_sky,
    "paper": _bg_paper,
    "camouflage": _bg_camouflage,
    "glyphs": _bg_glyphs,
    "circuit": _bg_circuit,
    "room": _bg_room,
    "light_leak": _bg_light_leak,
    "asphalt": _bg_asphalt,
}


# ----------------------------------------------------------------------------------------------
# shapes: exact inside-tests on 5 x 5 subsamples per pixel


@dataclass
class _Shape:
    label: int
    radius: float
    angle: float
    style: str
    stroke: float
    fill: str
    inner_ratio: float  # star: inner/outer radius; cross: bar width / bar length
    dashes: int


def _offset_value(shape: _Shape, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A value ``s`` with ``s <= g`` exactly where a subsample lies inside the shape offset by g.

    g = 0 is the exact point-in-shape test; g != 0 moves every edge line by g (mitred offset).
    """
    c, s = math.cos(shape.angle), math.sin(shape.angle)
    u = xs * c + ys * s
    v = ys * c - xs * s
    r = shape.radius
    name = CLASSES[shape.label]
    if name == "circle":
        return np.sqrt(u * u + v * v) - r
    if name in ("square", "triangle"):
        sides = 4 if name == "square" else 3
        normals = [2 * math.pi * k / sides + math.pi / sides for k in range(sides)]
        value = u * math.cos(normals[0]) + v * math.sin(normals[0])
        for a in normals[1:]:
            value = np.maximum(value, u * math.cos(a) + v * math.sin(a))
        return value - r * math.cos(math.pi / sides)
    if name == "star":
        sector = 2 * math.pi / 5
        t = np.mod(np.arctan2(v, u), sector)
        t = np.minimum(t, sector - t)  # fold onto the wedge between a tip (t=0) and a notch
        rho = np.sqrt(u * u + v * v)
        ri = r * shape.inner_ratio
        # the wedge is the triangle centre-tip-notch: one half-plane test in folded coordinates
        nx, ny = ri * math.sin(math.pi / 5), r - ri * math.cos(math.pi / 5)
        norm = math.hypot(nx, ny)
        nx, ny = nx / norm, ny / norm
        return rho * (np.cos(t) * nx + np.sin(t) * ny) - r * nx
    # cross: union of two bars of half-length L and half-width h, circumradius sqrt(L^2 + h^2)
    half_len = r / math.sqrt(1 + shape.inner_ratio**2)
    half_w = half_len * shape.inner_ratio
    au, av = np.abs(u), np.abs(v)
    return np.minimum(np.maximum(au - half_len, av - half_w), np.maximum(av - half_len, au - half_w))


def _rasterize(shape: _Shape, frac_y: float, frac_x: float) -> tuple[np.ndarray, np.ndarray, int]:
    """(mask coverage, paint coverage, half) on a (2*half+1)^2 local patch around the centre pixel."""
    grow = shape.stroke / 2 if shape.style != "filled" else 0.0
    mitre = 3.4 if CLASSES[shape.label] == "star" else 2.1
    half = int(math.ceil(shape.radius + grow * mitre)) + 2
    side = 2 * half + 1
    sub = _SUBSAMPLES
    steps = (np.arange(side * sub, dtype=np.float32) + 0.5) / sub - half
    xs = (steps - frac_x)[None, :]
    ys = (steps - frac_y)[:, None]
    value = _offset_value(shape, xs, ys)

    def coverage(inside: np.ndarray) -> np.ndarray:
        return inside.reshape(side, sub, side, sub).mean(axis=(1, 3), dtype=np.float32)

    if shape.style == "filled":
        cover = coverage(value <= 0)
        return cover, cover, half
    outer = value <= grow
    stroke = outer & (value > -grow)
    if shape.style == "dashed":
        c, s = math.cos(shape.angle), math.sin(shape.angle)
        theta = np.arctan2(ys * c - xs * s, xs * c + ys * s)
        phase = (theta + math.pi) / (2 * math.pi) * shape.dashes
        stroke &= (phase % 1.0) < 0.65  # dashes longer than the gaps keep the outline readable
    return coverage(outer), coverage(stroke), half


def _fill_offsets(rng: np.random.Generator, shape: _Shape, half: int) -> np.ndarray:
    """Per-pixel colour offset of the fill pattern from the object's base colour, (P, P, 3)."""
    side = 2 * half + 1
    if shape.fill == "solid" or shape.style != "filled":
        return np.zeros((side, side, 3), np.float32)
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    if shape.fill == "gradient":
        delta = rng.normal(0, 1, 3)
        delta *= rng.uniform(50, 90) / (np.linalg.norm(delta) + 1e-6)
        t = np.clip(along / (2 * shape.radius) + 0.5, 0, 1)[..., None]
        return (t * delta).astype(np.float32)
    if shape.fill == "speckle":
        return (rng.normal(0, 13, (side, side, 1)) + rng.normal(0, 5, (side, side, 3))).astype(
            np.float32
        )
    period = rng.uniform(3.5, 6.0)
    bands = (np.sin(2 * math.pi * along / period) > 0)[..., None]
    return (-rng.uniform(30, 50) * bands * np.ones(3)).astype(np.float32)


def _paste(local: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """Place a local patch at (top, left) on a zero (size, size, ...) canvas, clipping at the edges."""
    out = np.zeros((size, size) + local.shape[2:], local.dtype)
    h, w = local.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, size), min(left + w, size)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = local[y0 - top:y1 - top, x0 - left:x1 - left]
    return out


def _random_shape(rng: np.random.Generator, label: int, radius: float, size: int) -> _Shape:
    stroke = size * rng.uniform(0.02, 0.06)
    style = "filled"
    if rng.random() < 0.4 and radius >= 4 * stroke:
        # dashes only on convex shapes: dashed star tips and cross arms stop reading as the shape
        dashable = CLASSES[label] in ("circle", "square", "triangle") and radius >= 0.15 * size
        style = "dashed" if (dashable and rng.random() < 0.3) else "outline"
    inner = rng.uniform(0.38, 0.52) if CLASSES[label] == "star" else rng.uniform(0.25, 0.4)
    fill = str(rng.choice(["solid", "solid", "gradient", "speckle", "bands"]))
    return _Shape(label, radius, rng.uniform(0, 2 * math.pi), style, stroke, fill, inner,
                  int(rng.integers(10, 19)))


# ----------------------------------------------------------------------------------------------
# colours with a measured contrast against the background under the object


def _colour_candidates(rng: np.random.Generator, mean: np.ndarray, count: int) -> np.ndarray:
    uniform = rng.uniform(0, 255, (count // 2, 3))
    directions = rng.normal(0, 1, (count - count // 2, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True) + 1e-6
    away = mean + directions * rng.uniform(40, 300, (len(directions), 1))
    return np.clip(np.concatenate([uniform, away]), 0, 255).astype(np.float32)


def _lower_quantile(dist: np.ndarray, q: float) -> np.ndarray:
    """Per row, a value that at least (1 - q) of the row's entries reach."""
    k = int(math.floor(q * dist.shape[1]))
    return np.partition(dist, k, axis=1)[:, k]


def _choose_colour(rng: np.random.Generator, background: np.ndarray, alpha: np.ndarray,
                   offsets: np.ndarray, surround: np.ndarray,
                   low: bool) -> tuple[np.ndarray, float] | None:
    """A base colour whose composited pixels keep the contrast band against ``background`` (the
    pixels under the object) and whose mean colour stands out from ``surround`` (a ring of
    background around it), so a faint object never matches the clutter next to it."""
    for _ in range(3):
        candidates = _colour_candidates(rng, background.mean(axis=0), 32)
        paint = np.clip(candidates[:, None, :] + offsets[None], 0, 255)
        dist = alpha[None, :] * np.linalg.norm(paint - background[None], axis=2)
        p20 = _lower_quantile(dist, 0.2)
        typical = paint.mean(axis=1)
        apart = np.linalg.norm(surround[None] - typical[:, None], axis=2) >= _RING_DISTANCE
        stands_out = apart.mean(axis=1) >= _RING_SHARE if len(surround) else True
        good_low = (p20 >= _LOW_CONTRAST[0]) & (p20 <= _LOW_CONTRAST[1]) & stands_out
        good_high = (p20 >= _HIGH_CONTRAST) & stands_out
        for good in ((good_low, good_high) if low else (good_high, good_low)):
            if good.any():
                pick = rng.choice(np.flatnonzero(good))
                return candidates[pick], float(p20[pick])
    return None


# ----------------------------------------------------------------------------------------------
# photo post-effects, drawn once per scene and applied identically with and without an object


def _draw_effects(rng: np.random.Generator, size: int) -> list[tuple[str, dict]]:
    effects: list[tuple[str, dict]] = []
    if rng.random() < 0.6:
        effects.append(("exposure", {"gain": rng.uniform(0.7, 1.3), "gamma": rng.uniform(0.7, 1.4),
                                     "contrast": rng.uniform(0.7, 1.3)}))
    if rng.random() < 0.4:
        effects.append(("temperature", {"shift": rng.uniform(-0.15, 0.15)}))
    if rng.random() < 0.3:
        effects.append(("vignette", {"strength": rng.uniform(0.2, 0.5)}))
    blur = rng.random()
    if blur < 0.2:
        effects.append(("gaussian_blur", {"sigma": rng.uniform(0.5, 1.1)}))
    elif blur < 0.35:
        effects.append(("motion_blur", {"length": int(rng.integers(3, 6)),
                                        "angle": rng.uniform(0, math.pi)}))
    if rng.random() < 0.2:
        effects.append(("chromatic_aberration", {"dx": int(rng.choice([-1, 1])),
                                                 "dy": int(rng.integers(-1, 2))}))
    noise = rng.random()
    if noise < 0.3:
        effects.append(("gaussian_noise", {"z": rng.standard_normal((size, size, 3)).astype(
            np.float32) * rng.uniform(3, 20)}))
    elif noise < 0.5:
        effects.append(("shot_noise", {"z": rng.standard_normal((size, size, 3)).astype(
            np.float32), "photons": rng.uniform(0.15, 1.5)}))
    if rng.random() < 0.35:
        effects.append(("jpeg", {"quality": int(rng.integers(15, 50))}))
    return effects


def _apply_effects(image: np.ndarray, effects: list[tuple[str, dict]]) -> np.ndarray:
    img = image.astype(np.float32)
    for name, p in effects:
        if name == "exposure":
            unit = np.clip(img / 255.0, 0, 1) ** p["gamma"] * p["gain"]
            img = ((unit - 0.5) * p["contrast"] + 0.5) * 255.0
        elif name == "temperature":
            img = img * np.array([1 + p["shift"], 1.0, 1 - p["shift"]], np.float32)
        elif name == "vignette":
            yy, xx = _grid(img.shape[0])
            centre = (img.shape[0] - 1) / 2
            r2 = ((yy - centre) ** 2 + (xx - centre) ** 2) / (2 * centre**2)
            img = img * (1 - p["strength"] * r2)[..., None]
        elif name == "gaussian_blur":
            img = _blur(img, p["sigma"])
        elif name == "motion_blur":
            acc = np.zeros_like(img)
            for k in range(p["length"]):
                t = k - (p["length"] - 1) / 2
                acc += _shift(img, round(t * math.sin(p["angle"])), round(t * math.cos(p["angle"])))
            img = acc / p["length"]
        elif name == "chromatic_aberration":
            img = img.copy()
            img[..., 0] = _shift(img[..., 0], p["dy"], p["dx"])
            img[..., 2] = _shift(img[..., 2], -p["dy"], -p["dx"])
        elif name == "gaussian_noise":
            img = img + p["z"]
        elif name == "shot_noise":  # variance proportional to the signal, like photon counting
            img = img + p["z"] * np.sqrt(np.clip(img, 0, None) / p["photons"])
        elif name == "jpeg":
            from PIL import Image

            buffer = io.BytesIO()
            Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).save(
                buffer, format="JPEG", quality=p["quality"])
            buffer.seek(0)
            img = np.asarray(Image.open(buffer).convert("RGB"), np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# scenes


def _radius_range(kind: str, count: int) -> tuple[float, float]:
    if kind == "single":
        return 0.05, 0.40
    if kind == "pair":
        return 0.05, 0.26
    return (0.05, 0.24) if count == 2 else (0.05, 0.20)


def _labels_for(rng: np.random.Generator, kind: str, label: int | None) -> list[int]:
    first = int(rng.integers(len(CLASSES))) if label is None else label
    if kind == "single":
        return [first]
    if kind == "pair":
        other = int(rng.choice([c for c in range(len(CLASSES)) if c != first]))
        return [first, other]
    return [first] * int(rng.integers(2, 4))


@dataclass
class _Placed:
    shape: _Shape
    mask: np.ndarray  # full-size bool, before occlusion
    alpha: np.ndarray  # full-size paint coverage
    offsets: np.ndarray  # full-size fill offsets
    centre: tuple[float, float]
    colour: np.ndarray | None = None
    contrast: float = 0.0


def _place_objects(rng: np.random.Generator, size: int, kind: str,
                   labels: list[int]) -> list[_Placed] | None:
    low, high = _radius_range(kind, len(labels))
    placed: list[_Placed] = []
    occupied = np.zeros((size, size), bool)
    for label in labels:
        shape = _random_shape(rng, label, size * rng.uniform(low, high), size)
        frac_y, frac_x = rng.random(2)
        cover, paint, half = _rasterize(shape, frac_y, frac_x)
        local_mask = cover >= 0.5
        total = local_mask.sum()
        keep_out = _dilate(occupied, 3)
        for _ in range(40):
            margin = 0.5 * shape.radius
            cy = int(rng.uniform(margin, size - margin))
            cx = int(rng.uniform(margin, size - margin))
            mask = _paste(local_mask, cy - half, cx - half, size)
            if mask.sum() < _MIN_INSIDE * total or (mask & keep_out).any():
                continue
            offsets = _fill_offsets(rng, shape, half)
            placed.append(_Placed(shape, mask, _paste(paint, cy - half, cx - half, size),
                                  _paste(offsets, cy - half, cx - half, size),
                                  (cy + frac_y, cx + frac_x)))
            occupied |= mask
            break
        else:
            return None
    return placed


def _plank(rng: np.random.Generator, size: int, obj: _Placed) -> tuple[np.ndarray, np.ndarray]:
    """Coverage and shading of a straight plank (stick, pole) crossing the edge of ``obj``."""
    direction = rng.uniform(0, math.pi)
    normal = direction + math.pi / 2
    offset = rng.uniform(0.35, 1.0) * obj.shape.radius
    cy = obj.centre[0] + offset * math.sin(normal)
    cx = obj.centre[1] + offset * math.cos(normal)
    half_len = obj.shape.radius * rng.uniform(1.0, 1.8)
    half_w = max(1.5, obj.shape.radius * rng.uniform(0.12, 0.25))
    sub = _SUBSAMPLES
    steps = (np.arange(size * sub, dtype=np.float32) + 0.5) / sub
    ys = (steps - cy)[:, None]
    xs = (steps - cx)[None, :]
    along = xs * math.cos(direction) + ys * math.sin(direction)
    across = ys * math.cos(direction) - xs * math.sin(direction)
    inside = (np.abs(along) <= half_len) & (np.abs(across) <= half_w)
    cover = inside.reshape(size, sub, size, sub).mean(axis=(1, 3), dtype=np.float32)
    yy, xx = _grid(size)
    across_px = ((yy + 0.5 - cy) * math.cos(direction) - (xx + 0.5 - cx) * math.sin(direction))
    shading = 0.7 + 0.3 * np.cos(np.clip(across_px / half_w, -1, 1) * math.pi / 2)
    return cover, shading.astype(np.float32)


def _occlude(rng: np.random.Generator, size: int,
             placed: list[_Placed]) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Maybe add planks over some large objects; returns (cover, shading, owner) tuples."""
    planks = []
    for index, obj in enumerate(placed):
        if obj.shape.radius < 0.12 * size or rng.random() >= 0.1:
            continue
        others = np.zeros((size, size), bool)
        for j, other in enumerate(placed):
            if j != index:
                others |= other.mask
        others = _dilate(others, 3)
        for _ in range(6):
            cover, shading = _plank(rng, size, obj)
            hidden = (cover >= 0.5) & obj.mask
            fraction = hidden.sum() / obj.mask.sum()
            if 0.04 <= fraction <= _MAX_HIDDEN and not ((cover > 0) & others).any():
                planks.append((cover, shading, index))
                break
    return planks


def _composite(background: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    img = background.copy()
    for alpha, colour in layers:
        a = alpha[..., None]
        img = img * (1 - a) + colour * a
    return img


def _try_scene(rng: np.random.Generator, size: int, kind: str,
               label: int | None) -> tuple[Heldout2Scene, Heldout2Evidence] | None:
    texture = str(rng.choice(list(TEXTURES)))
    background = np.clip(TEXTURES[texture](rng, size), 0, 255).astype(np.float32)
    placed = _place_objects(rng, size, kind, _labels_for(rng, kind, label))
    if placed is None:
        return None
    planks = _occlude(rng, size, placed)
    plank_any = np.zeros((size, size), np.float32)
    for cover, _, _ in planks:
        plank_any = np.maximum(plank_any, cover)
    painted = [(obj.alpha >= 0.5) & (plank_any == 0) for obj in placed]
    all_masks = np.zeros((size, size), bool)
    for obj in placed:
        all_masks |= obj.mask
    free = ~_dilate(all_masks, 1) & (plank_any == 0)
    for obj, where in zip(placed, painted, strict=True):
        if where.sum() < 4:
            return None
        # thin strokes and small objects read poorly at low contrast on clutter: only filled
        # shapes with r >= 10 % of the side may be faint (0.55 of them: ~0.3 of all objects)
        low = (obj.shape.style == "filled" and obj.shape.radius >= 0.1 * size
               and rng.random() < 0.55)
        ring = _dilate(obj.mask, _RING_WIDTH) & free
        choice = _choose_colour(rng, background[where], obj.alpha[where], obj.offsets[where],
                                background[ring], low)
        if choice is None:
            return None
        obj.colour, obj.contrast = choice
    object_layers = [(obj.alpha, np.clip(obj.colour + obj.offsets, 0, 255)) for obj in placed]
    plank_layers = []
    for cover, shading, owner in planks:
        owner_colour = placed[owner].colour
        for _ in range(20):
            wood = rng.uniform(0, 255, 3).astype(np.float32)
            if np.linalg.norm(wood - owner_colour) >= 90:
                break
        plank_layers.append((cover, np.clip(wood * shading[..., None], 0, 255)))
    clean = _composite(background, object_layers + plank_layers)
    withouts = [
        _composite(background, object_layers[:i] + object_layers[i + 1:] + plank_layers)
        for i in range(len(placed))
    ]
    for _ in range(3):
        effects = _draw_effects(rng, size)
        image = _apply_effects(clean, effects)
        finals = [_apply_effects(w, effects) for w in withouts]
        changes = [
            float(np.median(np.linalg.norm(image[where].astype(np.float32) - fin[where], axis=1)))
            for fin, where in zip(finals, painted, strict=True)
        ]
        if min(changes) >= _MIN_VISIBLE_CHANGE:
            break
    else:
        return None
    hidden = plank_any >= 0.5
    objects = []
    for index, obj in enumerate(placed):
        mask = obj.mask & ~hidden
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(Heldout2Object(
            label=obj.shape.label, mask=mask, box=box, radius=obj.shape.radius,
            centre=obj.centre, angle=obj.shape.angle, shape_ratio=obj.shape.inner_ratio,
            stroke=obj.shape.stroke if obj.shape.style != "filled" else 0.0,
            style=obj.shape.style, fill=obj.shape.fill if obj.shape.style == "filled" else "none",
            contrast=obj.contrast, visibility=changes[index],
            hidden=float(1 - mask.sum() / obj.mask.sum())))
    scene = Heldout2Scene(image=image, objects=objects, kind=kind, texture=texture,
                          effects=tuple(name for name, _ in effects))
    return scene, Heldout2Evidence(background, clean.astype(np.float32), finals, painted)


def make_scene_with_evidence(rng: np.random.Generator, size: int = 128, kind: str = "single", *,
                             label: int | None = None) -> tuple[Heldout2Scene, Heldout2Evidence]:
    """Like :func:`make_scene`, also returning the images that back its fairness guarantees."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if label is not None and not 0 <= label < len(CLASSES):
        raise ValueError(f"label must index CLASSES (0..{len(CLASSES) - 1}), not {label}")
    for _ in range(50):
        result = _try_scene(rng, size, kind, label)
        if result is not None:
            return result
    raise RuntimeError("could not draw a fair scene in 50 attempts")


def make_scene(rng: np.random.Generator, size: int = 128, kind: str = "single", *,
               label: int | None = None) -> Heldout2Scene:
    """One scene of ``kind``: "single" (one object), "pair" (two different classes) or "same"
    (2-3 objects of one class). ``label`` fixes the (first) object's class."""
    return make_scene_with_evidence(rng, size, kind, label=label)[0]


def make_scenes(seed: int, per_kind: int, size: int = 128) -> dict[str, list[Heldout2Scene]]:
    """``per_kind`` scenes of each kind; each kind has its own stream, so kinds do not shift."""
    return {
        kind: [make_scene(rng, size, kind) for _ in range(per_kind)]
        for kind, rng in ((kind, np.random.default_rng([seed, k])) for k, kind in enumerate(KINDS))
    }


def make_dataset(seed: int, count: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Single-object images (N, size, size, 3) uint8 and labels (N,), balanced and shuffled."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    images = np.zeros((count, size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        images[i] = make_scene(rng, size, "single", label=int(label)).image
    return images, labels.astype(np.int64)


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def contact_sheet(scenes: list[Heldout2Scene], columns: int = 8, outline: bool = True):
    """A PIL image of the scenes, each object's mask outlined (``outline``), classes and texture named."""
    from PIL import Image, ImageDraw

    size = scenes[0].image.shape[0]
    caption = 22
    rows = -(-len(scenes) // columns)
    sheet = Image.new("RGB", (columns * (size + 4), rows * (size + caption + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, scene in enumerate(scenes):
        tile = scene.image.copy()
        for obj in scene.objects:
            if outline:
                tile[_outline(obj.mask)] = (255, 0, 255)
        x, y = (i % columns) * (size + 4), (i // columns) * (size + caption + 4)
        sheet.paste(Image.fromarray(tile), (x, y))
        names = ",".join(sorted({CLASSES[o.label] for o in scene.objects}))
        draw.text((x + 2, y + size), f"{names}", fill=(0, 0, 0))
        draw.text((x + 2, y + size + 10), f"{scene.texture}", fill=(90, 90, 90))
    return sheet


def _main(argv: list[str]) -> None:
    import time

    out = argv[0] if argv else "heldout2_sheet.png"
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    timed = [make_scene(rng, 128, kind) for kind in KINDS for _ in range(30)]
    elapsed = time.perf_counter() - start
    print(f"{1000 * elapsed / len(timed):.1f} ms per 128 px scene ({len(timed)} scenes)")
    scenes = make_scenes(seed=0, per_kind=16)
    contact_sheet([s for kind in KINDS for s in scenes[kind]]).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
