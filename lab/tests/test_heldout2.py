"""The second held-out shapes generator: determinism, geometry, ground truth and fairness guarantees.

Geometry is re-checked with an independent rasteriser (even-odd point-in-polygon on 7 x 7 subsamples
of polygons built from each object's stored centre, radius and angle), not with the generator's code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab import heldout2
from lab.heldout2 import CLASSES, KINDS, TEXTURES

SIZE = 128


@pytest.fixture(scope="module")
def scenes_with_evidence():
    """60 scenes (20 per kind) with the intermediate images behind their guarantees."""
    rng = np.random.default_rng(7)
    return [heldout2.make_scene_with_evidence(rng, SIZE, kind) for kind in KINDS for _ in range(20)]


def _polygon(obj: heldout2.Heldout2Object, grow: float) -> np.ndarray:
    """(K, 2) vertices (x, y) of the object's outline offset outward by ``grow`` (mitred)."""
    name = CLASSES[obj.label]
    r, a = obj.radius, obj.angle
    if name == "cross":
        half_len = r / math.sqrt(1 + obj.shape_ratio**2) + grow
        half_w = r / math.sqrt(1 + obj.shape_ratio**2) * obj.shape_ratio + grow
        L, h = half_len, half_w
        uv = np.array([(L, h), (h, h), (h, L), (-h, L), (-h, h), (-L, h), (-L, -h), (-h, -h),
                       (-h, -L), (h, -L), (h, -h), (L, -h)])
    else:
        if name == "circle":
            angles = np.linspace(0, 2 * math.pi, 64, endpoint=False)
            radii = np.full(64, r)
            apothem = r  # a 64-gon through the circle: error < 0.2 % of r
        elif name in ("square", "triangle"):
            n = 4 if name == "square" else 3
            angles = 2 * math.pi * np.arange(n) / n
            radii = np.full(n, r)
            apothem = r * math.cos(math.pi / n)
        else:  # star: tips at 2 pi k / 5, notches between them
            angles = math.pi / 5 * np.arange(10)
            inner = r * obj.shape_ratio
            radii = np.where(np.arange(10) % 2 == 0, r, inner)
            # distance from the centre to each tip-notch edge line
            tip, notch = np.array([r, 0.0]), inner * np.array([math.cos(math.pi / 5),
                                                                 math.sin(math.pi / 5)])
            edge = notch - tip
            apothem = abs(tip[0] * edge[1] - tip[1] * edge[0]) / np.linalg.norm(edge)
        # every edge line of these shapes is at one distance from the centre: offsetting the
        # edges by `grow` is scaling by (apothem + grow) / apothem
        radii = radii * (apothem + grow) / apothem
        uv = np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    c, s = math.cos(a), math.sin(a)
    x = uv[:, 0] * c - uv[:, 1] * s + obj.centre[1]
    y = uv[:, 0] * s + uv[:, 1] * c + obj.centre[0]
    return np.stack([x, y], 1)


def _raster(poly: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """Pixels covered >= 0.5 by the polygon (even-odd rule), as (inside the image, total count)."""
    x0, y0 = np.floor(poly.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + 1
    sub = 7
    px, py = np.meshgrid((np.arange((x1 - x0) * sub) + 0.5) / sub + x0,
                         (np.arange((y1 - y0) * sub) + 0.5) / sub + y0)
    inside = np.zeros(px.shape, bool)
    for (ax, ay), (bx, by) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        crosses = (ay > py) != (by > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = ax + (py - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (px < x_at)
    patch = inside.reshape(y1 - y0, sub, x1 - x0, sub).mean(axis=(1, 3)) >= 0.5
    canvas = np.zeros((size, size), bool)
    cy0, cx0 = max(y0, 0), max(x0, 0)
    cy1, cx1 = min(y1, size), min(x1, size)
    canvas[cy0:cy1, cx0:cx1] = patch[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return canvas, int(patch.sum())


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Grow by one pixel in all eight directions."""
    rows = mask.copy()
    rows[1:] |= mask[:-1]
    rows[:-1] |= mask[1:]
    grown = rows.copy()
    grown[:, 1:] |= rows[:, :-1]
    grown[:, :-1] |= rows[:, 1:]
    return grown


def test_make_scene_is_deterministic_and_typed():
    for kind in KINDS:
        a = heldout2.make_scene(np.random.default_rng(3), SIZE, kind)
        b = heldout2.make_scene(np.random.default_rng(3), SIZE, kind)
        assert a.kind == kind and a.texture == b.texture
        assert a.image.shape == (SIZE, SIZE, 3) and a.image.dtype == np.uint8
        np.testing.assert_array_equal(a.image, b.image)
        assert [o.label for o in a.objects] == [o.label for o in b.objects]
        for oa, ob in zip(a.objects, b.objects, strict=True):
            assert oa.mask.shape == (SIZE, SIZE) and oa.mask.dtype == bool
            np.testing.assert_array_equal(oa.mask, ob.mask)


def test_make_scenes_and_dataset_are_deterministic():
    first, second = heldout2.make_scenes(5, 2, 64), heldout2.make_scenes(5, 2, 64)
    assert list(first) == list(KINDS)
    for kind in KINDS:
        assert len(first[kind]) == 2
        for a, b in zip(first[kind], second[kind], strict=True):
            np.testing.assert_array_equal(a.image, b.image)
    images, labels = heldout2.make_dataset(11, 12, 64)
    images2, labels2 = heldout2.make_dataset(11, 12, 64)
    np.testing.assert_array_equal(images, images2)
    np.testing.assert_array_equal(labels, labels2)


def test_make_dataset_is_balanced_shuffled_single_object_images():
    images, labels = heldout2.make_dataset(2, 23, 64)
    assert images.shape == (23, 64, 64, 3) and images.dtype == np.uint8
    assert labels.shape == (23,) and set(labels.tolist()) <= set(range(len(CLASSES)))
    counts = np.bincount(labels, minlength=len(CLASSES))
    assert counts.max() - counts.min() <= 1
    assert not np.array_equal(labels, np.arange(23) % len(CLASSES))


def test_label_argument_fixes_the_class():
    rng = np.random.default_rng(4)
    for label in range(len(CLASSES)):
        assert [o.label for o in heldout2.make_scene(rng, SIZE, "single", label=label).objects] == [
            label
        ]
        pair = heldout2.make_scene(rng, SIZE, "pair", label=label)
        assert pair.objects[0].label == label
        same = heldout2.make_scene(rng, SIZE, "same", label=label)
        assert {o.label for o in same.objects} == {label}


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="kind"):
        heldout2.make_scene(np.random.default_rng(0), SIZE, "crowd")
    with pytest.raises(ValueError, match="label"):
        heldout2.make_scene(np.random.default_rng(0), SIZE, "single", label=5)


def test_object_counts_and_classes_per_kind(scenes_with_evidence):
    for scene, _ in scenes_with_evidence:
        labels = [o.label for o in scene.objects]
        if scene.kind == "single":
            assert len(labels) == 1
        elif scene.kind == "pair":
            assert len(labels) == 2 and labels[0] != labels[1]
        else:
            assert len(labels) in (2, 3) and len(set(labels)) == 1


def test_masks_nonempty_disjoint_and_boxes_tight(scenes_with_evidence):
    for scene, _ in scenes_with_evidence:
        union = np.zeros((SIZE, SIZE), int)
        for obj in scene.objects:
            assert obj.mask.any()
            union += obj.mask
            ys, xs = np.nonzero(obj.mask)
            assert obj.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert union.max() == 1


def test_masks_match_an_independent_rasterisation_and_lie_mostly_inside(scenes_with_evidence):
    for scene, _ in scenes_with_evidence:
        for obj in scene.objects:
            assert 0.05 * SIZE <= obj.radius <= 0.40 * SIZE
            grow = obj.stroke / 2
            inside, total = _raster(_polygon(obj, grow), SIZE)
            assert inside.sum() >= 0.85 * total - 2, (scene.texture, CLASSES[obj.label])
            # the mask is the named shape: overlap with the independent raster, minus occlusion
            union = (obj.mask | inside).sum()
            assert (obj.mask & inside).sum() / union >= 0.88 - obj.hidden, CLASSES[obj.label]
            near = _dilate(inside)
            assert not (obj.mask & ~near).any(), CLASSES[obj.label]


def test_star_and_cross_proportions(scenes_with_evidence):
    for scene, _ in scenes_with_evidence:
        for obj in scene.objects:
            if CLASSES[obj.label] == "star":
                assert 0.35 <= obj.shape_ratio <= 0.55
            if CLASSES[obj.label] == "cross":
                assert 0.25 <= obj.shape_ratio <= 0.45


def test_every_object_keeps_its_contrast_against_the_clean_background(scenes_with_evidence):
    low = 0
    total = 0
    for scene, evidence in scenes_with_evidence:
        for obj, painted in zip(scene.objects, evidence.painted, strict=True):
            assert painted.sum() >= 4 and not (painted & ~obj.mask).any()
            diff = np.linalg.norm(evidence.clean[painted] - evidence.background[painted], axis=1)
            assert np.mean(diff >= 50) >= 0.8, (scene.texture, CLASSES[obj.label])
            p20 = np.sort(diff)[int(0.2 * len(diff))]
            low += p20 < 110
            total += 1
    assert 0.15 <= low / total <= 0.5


def test_every_object_stands_out_from_the_background_around_it(scenes_with_evidence):
    """The object's mean colour differs from most of a 3-pixel ring of untouched background."""
    for scene, evidence in scenes_with_evidence:
        all_masks = np.zeros((SIZE, SIZE), bool)
        for obj in scene.objects:
            all_masks |= obj.mask
        untouched = (evidence.clean == evidence.background).all(axis=2) & ~_dilate(all_masks)
        for obj, painted in zip(scene.objects, evidence.painted, strict=True):
            ring = _dilate(_dilate(_dilate(obj.mask))) & untouched
            if ring.sum() < 10:
                continue
            typical = evidence.clean[painted].mean(axis=0)
            apart = np.linalg.norm(evidence.background[ring] - typical, axis=1) >= 35
            assert apart.mean() >= 0.7, (scene.texture, CLASSES[obj.label])


def test_faint_objects_are_large_and_filled(scenes_with_evidence):
    for scene, _ in scenes_with_evidence:
        for obj in scene.objects:
            if obj.contrast < 110:
                assert obj.style == "filled" and obj.radius >= 0.1 * SIZE


def test_every_object_stays_visible_after_the_post_effects(scenes_with_evidence):
    for scene, evidence in scenes_with_evidence:
        for i, (obj, painted) in enumerate(zip(scene.objects, evidence.painted, strict=True)):
            without = evidence.without[i]
            change = np.linalg.norm(scene.image[painted].astype(float) - without[painted], axis=1)
            assert np.median(change) >= 25, (scene.texture, scene.effects, CLASSES[obj.label])
            # the counterfactual differs from the scene only around the whole object, occluded
            # part included (JPEG blocks, blur)
            x0, y0 = np.floor(_polygon(obj, obj.stroke / 2).min(axis=0)).astype(int) - 24
            x1, y1 = np.ceil(_polygon(obj, obj.stroke / 2).max(axis=0)).astype(int) + 24
            far = np.ones((SIZE, SIZE), bool)
            far[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = False
            np.testing.assert_array_equal(scene.image[far], without[far])


def test_occlusion_is_rare_limited_and_only_on_large_objects(scenes_with_evidence):
    objects = [o for scene, _ in scenes_with_evidence for o in scene.objects]
    occluded = [o for o in objects if o.hidden > 0]
    assert len(occluded) <= 0.15 * len(objects)
    for obj in occluded:
        assert obj.hidden <= 0.25 and obj.radius >= 0.12 * SIZE


def test_every_texture_family_and_style_is_reachable(scenes_with_evidence):
    rng = np.random.default_rng(8)
    extra = [heldout2.make_scene(rng, 64, "single") for _ in range(40)]
    scenes = [scene for scene, _ in scenes_with_evidence] + extra
    assert {scene.texture for scene in scenes} == set(TEXTURES)
    assert len(TEXTURES) >= 8
    assert {o.style for s in scenes for o in s.objects} == {"filled", "outline", "dashed"}
    assert {o.fill for s in scenes for o in s.objects} >= {"solid", "gradient", "speckle", "bands"}
    assert {e for s in scenes for e in s.effects} == {
        "exposure", "temperature", "vignette", "gaussian_blur", "motion_blur",
        "chromatic_aberration", "gaussian_noise", "shot_noise", "jpeg"}
