"""Held-out shape scenes: test data written independently of the demo model's training generator.

Every image is drawn in numpy from signed-distance fields (SDFs), with anti-aliasing from the SDF
itself: a pixel's coverage is ``clip(0.5 - sdf, 0, 1)`` (sdf in pixels, negative inside), and the
shape is composited as ``out = (1 - coverage) * under + coverage * colour``. The polygon SDF is
Inigo Quilez's exact 2-D polygon distance (distance to the nearest edge segment, sign from the
even-odd crossing rule; https://iquilezles.org/articles/distfunctions2d/).

Objects. Five classes (``CLASSES``), each with a random rotation and a *radius* that is the radius
of the circle through the shape's outermost points (circumradius), so a square of radius r has
side ``r * sqrt(2)``. A star has 5 points (inner radius 0.45 of the outer one); a cross is a plus
sign whose arms are one third as wide as the cross is long. Shapes are filled, or outlined with a
stroke 2-5 % of the image side wide centred on the shape's edge.

Masks. ``HeldoutObject.mask`` is *where the object is*: the pixels whose coverage by the filled
shape (grown by half the stroke for an outlined one) is at least 0.5. For an outlined shape the
mask therefore includes the interior the outline encloses, even though background shows there;
``HeldoutObject.ink`` holds only the pixels painted in the object's colour. Parts hidden by a
foreground occluder blob (at most ``MAX_OCCLUDED_FRACTION`` of the mask) are removed from both.
Every shape lies wholly inside the image, at least one pixel from the border.

Visibility guarantee. An object's colour is chosen against the clean background under its ink:
at least 80 % of the ink pixels differ from the background beneath them by ``MIN_INK_CONTRAST`` or
more (Euclidean RGB distance on 0..255), before any post-effect. About a third of the objects are
low contrast (that 80th-percentile distance within ``LOW_CONTRAST_BAND``), the rest high contrast
(at least ``HIGH_CONTRAST_MIN``).

Backgrounds (``TEXTURES``): Voronoi cells, interference ripples, marble, wood, halftone dots,
cross-hatching, a radial gradient with salt-and-pepper noise, multicoloured rectangular blocks,
plasma clouds, a plain linear gradient, and ``blocks_noisy``: the hard case of a user's report,
busy multicoloured blocks under strong gaussian sensor noise with one filled circle, square or
triangle of radius 11-19 % of the side, whose colour is at least ``HARD_CASE_MIN_CONTRAST`` from the
blocks under 80 % of it so that it stays visible through the noise. Post-effects at random: brightness/contrast change,
gaussian blur, gaussian sensor noise.

Run ``python -m lab.heldout sheet.png`` to measure the speed and write a contact
sheet of 48 scenes with their masks outlined.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

CLASSES = ("circle", "square", "triangle", "star", "cross")
KINDS = ("single", "pair", "same")
TEXTURES = (
    "voronoi",
    "ripples",
    "marble",
    "wood",
    "halftone",
    "hatching",
    "radial_speckle",
    "blocks",
    "plasma",
    "gradient",
    "blocks_noisy",
)
HARD_CASE_TEXTURE = "blocks_noisy"
HARD_CASE_CLASSES = (0, 1, 2)  # circle, square, triangle: the shapes of the user's report

MIN_INK_CONTRAST = 48.0
LOW_CONTRAST_BAND = (48.0, 80.0)
HIGH_CONTRAST_MIN = 110.0
HARD_CASE_MIN_CONTRAST = 90.0  # under sigma 22-32 noise a 48 contrast shape all but vanishes
INK_CONTRAST_QUANTILE = 0.2  # the guarantee holds for the 80 % of ink pixels farthest from it
MAX_OCCLUDED_FRACTION = 0.25

_STAR_INNER_RATIO = 0.45
_CROSS_HALF_WIDTH = 1.0 / 3.0  # of the arm's half-length: arm width = length / 3


@dataclasses.dataclass
class HeldoutObject:
    """One shape in a scene; ``box`` is ``(x0, y0, x1, y1)`` around ``mask``, ends exclusive."""

    label: int
    mask: np.ndarray
    box: tuple[int, int, int, int]
    ink: np.ndarray | None = None
    colour: tuple[int, int, int] = (0, 0, 0)
    filled: bool = True

    @property
    def name(self) -> str:
        return CLASSES[self.label]


@dataclasses.dataclass
class HeldoutScene:
    """An image with its objects; ``background`` is the texture before objects and post-effects."""

    image: np.ndarray
    objects: list[HeldoutObject]
    kind: str
    texture: str = ""
    background: np.ndarray | None = None

    @property
    def labels(self) -> list[int]:
        return [obj.label for obj in self.objects]


# ----------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=8)
def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of pixel centres, each (size, size) float32; pixel (i, j) covers [j, j+1) x [i, i+1)."""
    axis = np.arange(size, dtype=np.float32) + 0.5
    ys, xs = np.meshgrid(axis, axis, indexing="ij")
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


@functools.lru_cache(maxsize=32)
def _interpolation_matrix(size: int, cells: int) -> np.ndarray:
    """(size, cells + 1) weights that smoothstep-interpolate a lattice of ``cells`` cells to pixels."""
    position = (np.arange(size) + 0.5) / size * cells
    left = np.minimum(position.astype(int), cells - 1)
    t = position - left
    t = t * t * (3 - 2 * t)
    weights = np.zeros((size, cells + 1), np.float32)
    weights[np.arange(size), left] = 1 - t
    weights[np.arange(size), left + 1] = t
    weights.flags.writeable = False
    return weights


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise in [-1, 1]: a random lattice interpolated separably, ``W G W^T``."""
    weights = _interpolation_matrix(size, cells)
    lattice = rng.uniform(-1, 1, (cells + 1, cells + 1)).astype(np.float32)
    return weights @ lattice @ weights.T


def _turbulence(rng: np.random.Generator, size: int, octaves: int = 3) -> np.ndarray:
    """Perlin's turbulence, sum of |noise| over octaves with halving amplitude, in about [0, 1]."""
    total = np.zeros((size, size), np.float32)
    for octave in range(octaves):
        total += np.abs(_value_noise(rng, size, 3 * 2**octave)) / 2**octave
    return total / 1.75


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _palette(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` colours around one base colour, with a random spread from muted to garish."""
    base = _random_colour(rng)
    spread = rng.uniform(25, 130)
    return np.clip(base + rng.uniform(-spread, spread, (count, 3)), 0, 255).astype(np.float32)


def _ramp(t: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Map t in [0, 1] (H, W) through a piecewise-linear ramp of (K, 3) colours to (H, W, 3)."""
    scaled = np.clip(t, 0, 1) * (len(colours) - 1)
    index = np.minimum(scaled.astype(np.int32), len(colours) - 2)
    frac = (scaled - index)[..., None]
    return colours[index] * (1 - frac) + colours[index + 1] * frac


def _direction(rng: np.random.Generator) -> tuple[float, float]:
    angle = rng.uniform(0, 2 * math.pi)
    return math.cos(angle), math.sin(angle)


# ----------------------------------------------------------------------------- backgrounds


def _voronoi(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = _pixel_centres(size)
    count = int(rng.integers(6, 30))
    seeds = rng.uniform(0, size, (count, 2)).astype(np.float32)
    squared = (xs[..., None] - seeds[:, 0]) ** 2 + (ys[..., None] - seeds[:, 1]) ** 2
    nearest_two = np.sqrt(np.partition(squared, 1, axis=-1)[..., :2])
    image = _palette(rng, count)[squared.argmin(-1)]
    if rng.random() < 0.5:  # dark or light cell borders
        border = np.clip(1.5 - (nearest_two[..., 1] - nearest_two[..., 0]), 0, 1)[..., None]
        image = image * (1 - border) + _random_colour(rng) * border
    return image


def _ripples(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = _pixel_centres(size)
    waves = int(rng.integers(2, 4))
    total = np.zeros((size, size), np.float32)
    for _ in range(waves):
        wavenumber = 2 * math.pi / rng.uniform(6, 40)
        if rng.random() < 0.5:
            dx, dy = _direction(rng)
            phase = (xs * dx + ys * dy) * wavenumber
        else:
            cx, cy = rng.uniform(-0.5 * size, 1.5 * size, 2)
            phase = np.hypot(xs - cx, ys - cy) * wavenumber
        total += np.cos(phase + rng.uniform(0, 2 * math.pi))
    return _ramp(0.5 + 0.5 * total / waves, _palette(rng, 3))


def _marble(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = _pixel_centres(size)
    dx, dy = _direction(rng)
    veins = np.sin((xs * dx + ys * dy) * 2 * math.pi / rng.uniform(20, 60)
                   + rng.uniform(3, 9) * _turbulence(rng, size))
    return _ramp(np.abs(veins) ** rng.uniform(0.3, 1.0), _palette(rng, 2))


def _wood(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = _pixel_centres(size)
    cx, cy = rng.uniform(-size, 2 * size, 2)
    rings = np.sin(np.hypot(xs - cx, ys - cy) * 2 * math.pi / rng.uniform(5, 16)
                   + rng.uniform(1, 4) * _turbulence(rng, size))
    return _ramp(0.5 + 0.5 * rings, _palette(rng, 2))


def _halftone(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = _pixel_centres(size)
    pitch = rng.uniform(5, 14)
    dx, dy = _direction(rng)
    u = (xs * dx + ys * dy) / pitch
    v = (ys * dx - xs * dy) / pitch
    distance = np.hypot(u - np.round(u), v - np.round(v)) * pitch
    dot_radius = pitch * (0.12 + 0.3 * (0.5 + 0.5 * _value_noise(rng, size, 3)))
    coverage = np.clip(dot_radius - distance + 0.5, 0, 1)[..., None]
    paper, ink = _palette(rng, 2)
    return paper * (1 - coverage) + ink * coverage


def _hatching(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = _pixel_centres(size)
    colours = _palette(rng, 4)
    image = np.broadcast_to(colours[0], (size, size, 3)).astype(np.float32)
    for ink in colours[1 : 1 + int(rng.integers(2, 4))]:
        period = rng.uniform(4, 12)
        dx, dy = _direction(rng)
        s = (xs * dx + ys * dy) / period
        distance = np.abs(s - np.round(s)) * period
        coverage = np.clip(rng.uniform(0.5, 0.4 * period) - distance + 0.5, 0, 1)[..., None]
        image = image * (1 - coverage) + ink * coverage
    return image


def _radial_speckle(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = _pixel_centres(size)
    cx, cy = rng.uniform(0, size, 2)
    t = np.hypot(xs - cx, ys - cy) / (size * rng.uniform(0.5, 1.2))
    image = _ramp(t, _palette(rng, 2))
    speckled = rng.random((size, size)) < rng.uniform(0.01, 0.05)
    image[speckled] = np.where(rng.random((int(speckled.sum()), 1)) < 0.5, 0.0, 255.0)
    return image


def _blocks(rng: np.random.Generator, size: int) -> np.ndarray:
    """Overlapping axis-aligned rectangles painted in order; the last one painted wins."""
    count = int(rng.integers(15, 45))
    x0, y0 = rng.uniform(-0.2 * size, size, (2, count))
    width, height = rng.uniform(0.05 * size, 0.45 * size, (2, count))
    axis = np.arange(size) + 0.5
    inside_x = (axis >= x0[:, None]) & (axis < (x0 + width)[:, None])
    inside_y = (axis >= y0[:, None]) & (axis < (y0 + height)[:, None])
    covered = inside_y[:, :, None] & inside_x[:, None, :]
    topmost = count - 1 - covered[::-1].argmax(0)
    colours = np.vstack([_palette(rng, count), _random_colour(rng)[None]])
    colours[:count] = np.where(rng.random((count, 1)) < 0.5, colours[:count], rng.uniform(0, 255, (count, 3)))
    return colours[np.where(covered.any(0), topmost, count)]


def _plasma(rng: np.random.Generator, size: int) -> np.ndarray:
    """Fractal noise through a cosine palette ``a + b cos(2 pi (c t + d))`` (Quilez's palettes)."""
    t = sum(_value_noise(rng, size, 2 * 2**octave) / 2**octave for octave in range(4)) / 1.9
    a, b = rng.uniform(0.3, 0.7, 3), rng.uniform(0.2, 0.5, 3)
    c, d = rng.uniform(0.5, 1.5, 3), rng.uniform(0, 1, 3)
    return (255 * np.clip(a + b * np.cos(2 * math.pi * (c * t[..., None] + d)), 0, 1)).astype(np.float32)


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    ys, xs = _pixel_centres(size)
    dx, dy = _direction(rng)
    t = ((xs - size / 2) * dx + (ys - size / 2) * dy) / size + 0.5
    return _ramp(t, _palette(rng, 2))


_BACKGROUNDS = {
    "voronoi": _voronoi,
    "ripples": _ripples,
    "marble": _marble,
    "wood": _wood,
    "halftone": _halftone,
    "hatching": _hatching,
    "radial_speckle": _radial_speckle,
    "blocks": _blocks,
    "plasma": _plasma,
    "gradient": _gradient,
    "blocks_noisy": _blocks,
}


# ----------------------------------------------------------------------------- shapes


@functools.lru_cache(maxsize=8)
def _unit_polygon(label: int) -> np.ndarray:
    """(N, 2) vertices of a class's polygon with circumradius 1, centred on the origin."""
    if label == 1:  # square
        angles = math.pi / 4 + np.arange(4) * math.pi / 2
        return np.stack([np.cos(angles), np.sin(angles)], 1)
    if label == 2:  # equilateral triangle
        angles = -math.pi / 2 + np.arange(3) * 2 * math.pi / 3
        return np.stack([np.cos(angles), np.sin(angles)], 1)
    if label == 3:  # five-pointed star
        angles = -math.pi / 2 + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, _STAR_INNER_RATIO)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    if label == 4:  # plus sign: arm half-length L, half-width L/3, corners at distance 1
        half_length = 1 / math.hypot(1, _CROSS_HALF_WIDTH)
        h = half_length * _CROSS_HALF_WIDTH
        a = half_length
        return np.array([(h, -a), (h, -h), (a, -h), (a, h), (h, h), (h, a),
                         (-h, a), (-h, h), (-a, h), (-a, -h), (-h, -h), (-h, -a)])
    raise ValueError(f"class {label} is not a polygon")


def _polygon_sdf(px: np.ndarray, py: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Exact signed distance to a simple polygon (Quilez): min distance to an edge, even-odd sign."""
    squared = np.full(px.shape, np.inf, np.float32)
    inside = np.zeros(px.shape, bool)
    previous = vertices[-1]
    for vertex in vertices:
        ex, ey = float(previous[0] - vertex[0]), float(previous[1] - vertex[1])
        wx, wy = px - float(vertex[0]), py - float(vertex[1])
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)
        np.minimum(squared, (wx - ex * t) ** 2 + (wy - ey * t) ** 2, out=squared)
        above = py >= vertex[1]
        below_previous = py < previous[1]
        left = ex * wy > ey * wx
        inside ^= (above & below_previous & left) | ~(above | below_previous | left)
        previous = vertex
    distance = np.sqrt(squared)
    return np.where(inside, -distance, distance)


@dataclasses.dataclass
class _Placement:
    label: int
    cx: float
    cy: float
    radius: float
    angle: float
    stroke: float  # 0 for a filled shape

    @property
    def extent(self) -> float:
        """Radius of a circle that holds every pixel the shape can touch."""
        return self.radius + self.stroke / 2 + 1.5


def _shape_fields(placement: _Placement, size: int) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """The crop around the shape, the ink SDF and the region (mask) SDF there, in pixels."""
    x0 = max(int(placement.cx - placement.extent), 0)
    y0 = max(int(placement.cy - placement.extent), 0)
    x1 = min(int(math.ceil(placement.cx + placement.extent)), size)
    y1 = min(int(math.ceil(placement.cy + placement.extent)), size)
    ys, xs = _pixel_centres(size)
    px = xs[y0:y1, x0:x1] - placement.cx
    py = ys[y0:y1, x0:x1] - placement.cy
    if placement.label == 0:
        sdf = np.hypot(px, py) - placement.radius
    else:
        cos_a, sin_a = math.cos(placement.angle), math.sin(placement.angle)
        rotation = np.array([[cos_a, -sin_a], [sin_a, cos_a]])
        vertices = _unit_polygon(placement.label) @ rotation.T * placement.radius
        sdf = _polygon_sdf(px, py, vertices)
    if placement.stroke:
        return (slice(y0, y1), slice(x0, x1)), np.abs(sdf) - placement.stroke / 2, sdf - placement.stroke / 2
    return (slice(y0, y1), slice(x0, x1)), sdf, sdf


def _coverage(sdf: np.ndarray) -> np.ndarray:
    return np.clip(0.5 - sdf, 0, 1)


def _ink_contrast(colours: np.ndarray, under: np.ndarray) -> np.ndarray:
    """For (K, 3) colours over (P, 3) pixels: the distance that 80 % of the pixels reach, (K,)."""
    colours = colours.astype(np.float64)
    under = under.astype(np.float64)
    squared = (colours**2).sum(1)[:, None] - 2 * colours @ under.T + (under**2).sum(1)[None, :]
    k = int(INK_CONTRAST_QUANTILE * under.shape[0])
    return np.sqrt(np.maximum(np.partition(squared, k, axis=1)[:, k], 0))


_CUBE_CORNERS = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], np.float32)


def _pick_colour(rng: np.random.Generator, under: np.ndarray, low_contrast: bool,
                 floor: float = MIN_INK_CONTRAST) -> np.ndarray | None:
    """An ink colour meeting the contrast band (never below ``floor``) against the pixels
    ``under`` it, or None.

    Candidates are screened on a subsample of ``under``; the one returned is checked on all of it.
    """
    sample = under[:: under.shape[0] // 300 + 1] if under.shape[0] > 300 else under
    centre = np.median(sample, 0)
    offsets = rng.normal(size=(64, 3))
    offsets *= rng.uniform(40, 140, (64, 1)) / np.linalg.norm(offsets, axis=1, keepdims=True)
    candidates = np.vstack([np.clip(centre + offsets, 0, 255), rng.uniform(0, 255, (48, 3)), _CUBE_CORNERS])
    candidates = np.round(candidates).astype(np.float32)
    contrast = _ink_contrast(candidates, sample)
    if low_contrast:
        fits = (contrast >= LOW_CONTRAST_BAND[0]) & (contrast <= LOW_CONTRAST_BAND[1])
    else:
        fits = contrast >= HIGH_CONTRAST_MIN
    fits &= contrast >= floor
    if not fits.any():
        fits = contrast >= floor
    for index in rng.permutation(np.flatnonzero(fits))[:4]:
        if _ink_contrast(candidates[index : index + 1], under)[0] >= floor:
            return candidates[index]
    return None


# ----------------------------------------------------------------------------- scenes


@dataclasses.dataclass
class _Drawn:
    placement: _Placement
    crop: tuple[slice, slice]
    region: np.ndarray  # bool, crop-sized
    ink: np.ndarray  # bool, crop-sized
    colour: np.ndarray


def _rotation(rng: np.random.Generator, label: int, texture: str) -> float:
    """A random angle; on block textures a square or cross is kept 15-75 degrees off the axes, since
    an axis-aligned one there is just one more block to a person's eye."""
    if label in (1, 4) and texture.startswith("blocks"):
        return math.radians(rng.uniform(15, 75) + 90 * int(rng.integers(4)))
    return rng.uniform(0, 2 * math.pi)


def _sample_placement(rng: np.random.Generator, size: int, label: int, radius_range: tuple[float, float],
                      others: list[_Placement], filled_only: bool, texture: str) -> _Placement | None:
    for _ in range(40):
        radius = rng.uniform(*radius_range) * size
        stroke = 0.0
        if not filled_only and rng.random() < 0.4:
            stroke = rng.uniform(0.02, 0.05) * size
            if stroke > 0.2 * radius or (label == 3 and stroke > 0.14 * radius):
                stroke = 0.0  # a thick outline on a small shape would read as a filled blob
        placement = _Placement(label, 0.0, 0.0, radius, _rotation(rng, label, texture), stroke)
        margin = placement.extent
        if 2 * margin >= size:
            continue
        placement.cx, placement.cy = rng.uniform(margin, size - margin, 2)
        if all(math.hypot(placement.cx - o.cx, placement.cy - o.cy) > margin + o.extent + 1 for o in others):
            return placement
    return None


def _draw_object(rng: np.random.Generator, canvas: np.ndarray, placement: _Placement,
                 low_contrast: bool, floor: float) -> _Drawn | None:
    crop, ink_sdf, region_sdf = _shape_fields(placement, canvas.shape[0])
    ink_coverage = _coverage(ink_sdf)
    ink = ink_coverage >= 0.5
    if not ink.any():
        return None
    colour = _pick_colour(rng, canvas[crop][ink], low_contrast, floor)
    if colour is None:
        return None
    coverage = ink_coverage[..., None]
    canvas[crop] = canvas[crop] * (1 - coverage) + colour * coverage
    return _Drawn(placement, crop, region_sdf <= 0, ink, colour)


def _blob_sdf(px: np.ndarray, py: np.ndarray, radius: float, wobble: np.ndarray) -> np.ndarray:
    """An irregular blob: a circle whose radius wobbles with angle (2nd and 3rd harmonics)."""
    theta = np.arctan2(py, px)
    boundary = radius * (1 + wobble[0] * np.sin(2 * theta + wobble[1]) + wobble[2] * np.sin(3 * theta + wobble[3]))
    return np.hypot(px, py) - boundary


def _visible_ink_contrast(background: np.ndarray, obj: _Drawn, blob: np.ndarray) -> float:
    visible = obj.ink & ~blob[obj.crop]
    if not visible.any():
        return 0.0
    return float(_ink_contrast(obj.colour[None], background[obj.crop][visible].astype(np.float32))[0])


def _occlude(rng: np.random.Generator, canvas: np.ndarray, background: np.ndarray,
             drawn: list[_Drawn]) -> np.ndarray | None:
    """Paint a foreground blob over part of one object; returns the blob's mask or None."""
    size = canvas.shape[0]
    large_enough = [obj for obj in drawn if obj.placement.radius >= 0.12 * size]
    if not large_enough:
        return None
    target = large_enough[int(rng.integers(len(large_enough)))]
    ys, xs = _pixel_centres(size)
    region_masks = []
    for obj in drawn:
        full = np.zeros((size, size), bool)
        full[obj.crop] = obj.region
        region_masks.append(full)
    for _ in range(8):
        dx, dy = _direction(rng)
        reach = target.placement.radius * rng.uniform(0.7, 1.2)
        cx, cy = target.placement.cx + dx * reach, target.placement.cy + dy * reach
        wobble = np.array([rng.uniform(0, 0.2), rng.uniform(0, 6.3), rng.uniform(0, 0.15), rng.uniform(0, 6.3)])
        blob_sdf = _blob_sdf(xs - cx, ys - cy, target.placement.radius * rng.uniform(0.35, 0.7), wobble)
        blob = blob_sdf <= 0
        fractions = [(blob & mask).sum() / mask.sum() for mask in region_masks]
        if max(fractions) > MAX_OCCLUDED_FRACTION or fractions[drawn.index(target)] < 0.05:
            continue
        if any(_visible_ink_contrast(background, obj, blob) < MIN_INK_CONTRAST for obj in drawn):
            continue  # the guarantee must hold for the ink left visible
        candidates = rng.uniform(0, 255, (32, 3)).astype(np.float32)
        far = np.linalg.norm(candidates - target.colour, axis=1) >= 100
        if not far.any():
            continue
        colour = candidates[np.flatnonzero(far)[0]]
        coverage = _coverage(blob_sdf)[..., None]
        canvas[:] = canvas * (1 - coverage) + colour * coverage
        return blob
    return None


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable gaussian blur with edge replication: a weighted sum of shifted copies per axis."""
    radius = int(math.ceil(2.5 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (0, 1):
        padded = np.pad(image, [(radius, radius) if a == axis else (0, 0) for a in range(3)], mode="edge")
        length = image.shape[axis]
        image = sum(w * np.take(padded, np.arange(i, i + length), axis=axis) for i, w in enumerate(taps))
    return image


def _post_effects(rng: np.random.Generator, image: np.ndarray, hard_case: bool) -> np.ndarray:
    if rng.random() < 0.5:
        mean = image.mean()
        image = (image - mean) * rng.uniform(0.85, 1.2) + mean + rng.uniform(-25, 25)
    if rng.random() < 0.3:
        image = _gaussian_blur(image, rng.uniform(0.5, 1.1))
    noisy = hard_case or rng.random() < 0.5
    sigma = rng.uniform(22, 32) if hard_case else rng.uniform(2, 12)
    if noisy:
        image = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _scene_labels(rng: np.random.Generator, kind: str, label: int | None) -> list[int]:
    if kind == "single":
        return [int(rng.integers(len(CLASSES))) if label is None else label]
    if kind == "pair":
        first, second = rng.choice(len(CLASSES), 2, replace=False)
        return [int(first), int(second)]
    if kind == "same":
        shared = int(rng.integers(len(CLASSES))) if label is None else label
        return [shared] * int(rng.integers(2, 4))
    raise ValueError(f"unknown scene kind {kind!r}; expected one of {', '.join(KINDS)}")


def make_scene(rng: np.random.Generator, size: int = 128, kind: str = "single", *,
               label: int | None = None, texture: str | None = None) -> HeldoutScene:
    """Draw one scene of ``kind`` ("single", "pair" or "same").

    ``label`` fixes the class of a single or same scene; ``texture`` fixes the background family
    (one of ``TEXTURES``; ``blocks_noisy``, the hard case, applies only to a single circle, square
    or triangle and falls back to ``blocks`` otherwise).
    """
    if size < 32:
        raise ValueError(f"size {size} is too small for recognisable shapes; use 32 or more")
    if texture is not None and texture not in TEXTURES:
        raise ValueError(f"unknown texture {texture!r}; expected one of {', '.join(TEXTURES)}")
    while True:  # a rare dead end (no colour meets the guarantee, no room) redraws the scene
        scene = _try_scene(rng, size, kind, label, texture)
        if scene is not None:
            return scene


def _try_scene(rng: np.random.Generator, size: int, kind: str, label: int | None,
               texture: str | None) -> HeldoutScene | None:
    labels = _scene_labels(rng, kind, label)
    family = texture or TEXTURES[int(rng.integers(len(TEXTURES)))]
    hard_case = family == HARD_CASE_TEXTURE and kind == "single" and labels[0] in HARD_CASE_CLASSES
    if family == HARD_CASE_TEXTURE and not hard_case:
        family = "blocks"
    canvas = _BACKGROUNDS[family](rng, size).astype(np.float32)
    background = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    canvas = background.astype(np.float32)  # objects are chosen against exactly what is stored
    if hard_case:
        radius_range = (0.11, 0.19)
    else:
        radius_range = {"single": (0.08, 0.40), "pair": (0.08, 0.24), "same": (0.08, 0.19)}[kind]
    drawn: list[_Drawn] = []
    for object_label in labels:
        placement = _sample_placement(rng, size, object_label, radius_range,
                                      [d.placement for d in drawn], filled_only=hard_case,
                                      texture=family)
        if placement is None:
            return None
        if hard_case:
            obj = _draw_object(rng, canvas, placement, low_contrast=False, floor=HARD_CASE_MIN_CONTRAST)
        else:
            obj = _draw_object(rng, canvas, placement, low_contrast=rng.random() < 0.35, floor=MIN_INK_CONTRAST)
        if obj is None:
            return None
        drawn.append(obj)
    occluder = _occlude(rng, canvas, background, drawn) if not hard_case and rng.random() < 0.15 else None
    objects = []
    for obj in drawn:
        mask = np.zeros((size, size), bool)
        ink = np.zeros((size, size), bool)
        mask[obj.crop] = obj.region
        ink[obj.crop] = obj.ink
        if occluder is not None:
            mask &= ~occluder
            ink &= ~occluder
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        objects.append(HeldoutObject(obj.placement.label, mask, box, ink,
                                     tuple(int(c) for c in obj.colour), obj.placement.stroke == 0))
    image = _post_effects(rng, canvas, hard_case)
    return HeldoutScene(image, objects, kind, family, background)


def make_scenes(seed: int, per_kind: int, size: int = 128) -> dict[str, list[HeldoutScene]]:
    """``per_kind`` scenes of each kind; scene i of a kind depends only on (seed, kind, i)."""
    return {
        kind: [make_scene(np.random.default_rng([seed, k, i]), size, kind) for i in range(per_kind)]
        for k, kind in enumerate(KINDS)
    }


def make_dataset(seed: int, count: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``count`` single-object images (N, size, size, 3) uint8 and their labels (N,), classes balanced
    (counts differ by at most one) in shuffled order."""
    labels = np.random.default_rng([seed, 1000]).permutation(np.arange(count) % len(CLASSES))
    images = np.empty((count, size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        images[i] = make_scene(np.random.default_rng([seed, 1001, i]), size, "single", label=int(label)).image
    return images, labels.astype(np.int64)


# ----------------------------------------------------------------------------- contact sheet


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it."""
    padded = np.pad(mask, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def contact_sheet(scenes: list[HeldoutScene], columns: int = 8) -> np.ndarray:
    """Tiles of ``scenes`` with each object's mask outlined by a black-and-white dashed line."""
    size = scenes[0].image.shape[0]
    rows = -(-len(scenes) // columns)
    gap = 4
    sheet = np.full((rows * (size + gap), columns * (size + gap), 3), 255, np.uint8)
    for i, scene in enumerate(scenes):
        tile = scene.image.copy()
        ys, xs = _pixel_centres(size)
        dashes = ((xs + ys) % 6 < 3)[..., None]
        for obj in scene.objects:
            outline = _outline(obj.mask)
            tile[outline] = np.where(dashes[outline], 255, 0)
        row, column = divmod(i, columns)
        sheet[row * (size + gap): row * (size + gap) + size, column * (size + gap): column * (size + gap) + size] = tile
    return sheet


def _main(argv: list[str]) -> None:
    import sys
    import time

    from PIL import Image

    if len(argv) != 1:
        sys.exit("usage: python -m lab.heldout SHEET.png")
    make_dataset(0, 20)  # warm caches
    for what, count, build in (
        ("make_dataset (single objects)", 400, lambda: make_dataset(7, 400)),
        ("make_scenes (single, pair, same)", 300, lambda: make_scenes(3, 100)),
    ):
        wall, cpu = time.perf_counter(), time.process_time()
        built = build()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{what}: {count} images at 128 px, {count / wall:.0f} images/s wall clock, "
              f"{count / cpu:.0f} images/s of process CPU time")
    scenes = built
    shown = scenes["single"][:24] + scenes["pair"][:12] + scenes["same"][:12]
    Image.fromarray(contact_sheet(shown)).save(argv[0])
    print(f"contact sheet of {len(shown)} scenes (24 single, 12 pair, 12 same) -> {argv[0]}")
    for row in range(6):
        print(" | ".join(f"{'+'.join(CLASSES[label] for label in s.labels)}@{s.texture}"
                         for s in shown[row * 8:(row + 1) * 8]))


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
