"""The third held-out shape generator: interface, determinism, geometry, occlusion, contrast."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab import heldout3
from lab.heldout3 import CLASSES, KINDS, make_dataset, make_scene, make_scenes

SIZE = 128


@pytest.fixture(scope="module")
def scenes() -> dict[str, list[heldout3.Scene]]:
    return make_scenes(seed=11, per_kind=24, size=SIZE)


def _all(scenes):
    return [scene for kind in KINDS for scene in scenes[kind]]


# ---- independent reconstruction of each object's outline (not the module's object_ring) -------


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _crossing_number_inside(vertices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Even-odd ray casting (a horizontal ray to +x): inside where it crosses an odd number of edges."""
    inside = np.zeros(len(points), bool)
    px, py = points[:, 0], points[:, 1]
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        straddles = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= straddles & (px < x_cross)
    return inside


def _rebuilt_polygons(obj) -> list[np.ndarray]:
    """Outline(s) of a non-circle object from its stored parameters; the union is the shape."""
    cx, cy = obj.center
    name = CLASSES[obj.label]
    if name == "square":
        half_side = obj.extent / (2 * math.sqrt(2))
        corners = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], float) * half_side
        return [_rotate(corners, obj.angle) + (cx, cy)]
    if name == "triangle":
        side = obj.extent
        height = side * math.sqrt(3) / 2
        # apex up, centroid at the origin, then rotated
        corners = np.array([(0, -2 * height / 3), (side / 2, height / 3), (-side / 2, height / 3)])
        return [_rotate(corners, obj.angle) + (cx, cy)]
    if name == "star":
        # the distance between two non-adjacent tips (144 degrees apart) is the extent
        outer = obj.extent / 2 / math.sin(math.radians(72))
        points = []
        for k in range(10):
            radius = outer if k % 2 == 0 else outer * obj.ratio
            theta = obj.angle - math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(theta), cy + radius * math.sin(theta)))
        return [np.array(points)]
    # cross: the union of two perpendicular bars; extent is the diagonal of one bar
    length = obj.extent / math.sqrt(1 + obj.ratio**2)
    width = obj.ratio * length
    bar = np.array([(-length / 2, -width / 2), (length / 2, -width / 2),
                    (length / 2, width / 2), (-length / 2, width / 2)])
    return [_rotate(bar, obj.angle) + (cx, cy), _rotate(bar[:, ::-1], obj.angle) + (cx, cy)]


def _centres(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def _inside(obj, size: int) -> np.ndarray:
    """Pixel centres inside the rebuilt object."""
    points = _centres(size)
    if CLASSES[obj.label] == "circle":
        inside = np.linalg.norm(points - np.asarray(obj.center), axis=1) <= obj.extent / 2
    else:
        inside = np.zeros(len(points), bool)
        for polygon in _rebuilt_polygons(obj):
            inside |= _crossing_number_inside(polygon, points)
    return inside.reshape(size, size)


def _distance_to_outline(obj, points: np.ndarray) -> np.ndarray:
    if CLASSES[obj.label] == "circle":
        return np.abs(np.linalg.norm(points - np.asarray(obj.center), axis=1) - obj.extent / 2)
    best = np.full(len(points), np.inf)
    for polygon in _rebuilt_polygons(obj):
        for p, q in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
            d = q - p
            t = np.clip(((points - p) @ d) / max(d @ d, 1e-12), 0, 1)
            best = np.minimum(best, np.linalg.norm(points - (p + t[:, None] * d), axis=1))
    return best


# ---- interface and determinism -------------------------------------------------------------


def test_same_seed_gives_identical_scenes_and_another_seed_does_not():
    first, second = make_scenes(5, 3, size=64), make_scenes(5, 3, size=64)
    other = make_scenes(6, 3, size=64)
    for kind in KINDS:
        for a, b in zip(first[kind], second[kind], strict=True):
            assert np.array_equal(a.image, b.image)
            assert [o.label for o in a.objects] == [o.label for o in b.objects]
            assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.objects, b.objects, strict=True))
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(first["single"], other["single"], strict=True))
    images, labels = make_dataset(3, 7, size=48)
    images2, labels2 = make_dataset(3, 7, size=48)
    assert np.array_equal(images, images2) and np.array_equal(labels, labels2)


def test_scene_interface_and_kinds(scenes):
    assert CLASSES == ("circle", "square", "triangle", "star", "cross")
    assert KINDS == ("single", "pair", "same") and set(scenes) == set(KINDS)
    for kind in KINDS:
        assert len(scenes[kind]) == 24
        for scene in scenes[kind]:
            assert scene.kind == kind
            assert scene.image.shape == (SIZE, SIZE, 3) and scene.image.dtype == np.uint8
            labels = [o.label for o in scene.objects]
            assert all(isinstance(label, int) and 0 <= label < 5 for label in labels)
            if kind == "single":
                assert len(labels) == 1
            elif kind == "pair":
                assert len(labels) == 2 and labels[0] != labels[1]
            else:
                assert len(labels) in (2, 3) and len(set(labels)) == 1
            for obj in scene.objects:
                assert obj.mask.shape == (SIZE, SIZE) and obj.mask.dtype == bool and obj.mask.any()
                rows, cols = np.nonzero(obj.mask)
                assert obj.box == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    every = [o.label for s in _all(scenes) for o in s.objects]
    assert set(every) == set(range(5))
    with pytest.raises(ValueError, match="kind"):
        make_scene(np.random.default_rng(0), 64, "crowd")


def test_dataset_is_balanced_single_object_images():
    images, labels = make_dataset(seed=2, count=12, size=48)
    assert images.shape == (12, 48, 48, 3) and images.dtype == np.uint8
    assert labels.shape == (12,) and np.issubdtype(labels.dtype, np.integer)
    counts = np.bincount(labels, minlength=5)
    assert counts.sum() == 12 and counts.min() == 2 and counts.max() == 3
    _, labels = make_dataset(seed=4, count=10, size=32)
    assert np.array_equal(np.bincount(labels, minlength=5), [2] * 5)


# ---- geometry -------------------------------------------------------------------------------


def test_rasteriser_is_exact_area_coverage():
    rng = np.random.default_rng(0)
    for _ in range(5):
        theta = np.sort(rng.uniform(0, 2 * np.pi, 9))
        radius = rng.uniform(3, 9, 9)
        ring = np.stack([12 + radius * np.cos(theta), 12.3 + radius * np.sin(theta)], axis=1)
        coverage = heldout3.polygon_coverage([ring], 24, 24)
        assert coverage.sum() == pytest.approx(abs(heldout3.signed_area(ring)), abs=1e-3)
        # against 32x32 point samples per pixel (an independent, approximate measurement)
        fine = (np.mgrid[0:24 * 32, 0:24 * 32] + 0.5) / 32
        inside = _crossing_number_inside(ring, np.stack([fine[1].ravel(), fine[0].ravel()], 1))
        sampled = inside.reshape(24, 32, 24, 32).mean(axis=(1, 3))
        assert np.abs(sampled - coverage).max() < 0.06
    # a hole of opposite orientation is removed exactly
    outer = heldout3.object_ring(1, (20, 20), 30, 0.3, 0)
    inner = heldout3.inset_ring(outer, 3)
    ring_area = heldout3.polygon_coverage([outer], 40, 40, holes=[inner]).sum()
    side = 30 / math.sqrt(2)
    assert ring_area == pytest.approx(side**2 - (side - 6) ** 2, abs=1e-3)


def test_class_polygons_have_their_defining_properties():
    for angle in (0.0, 0.4, 2.0):
        square = heldout3.object_ring(1, (0, 0), 40, angle, 0)
        sides = np.linalg.norm(np.roll(square, -1, 0) - square, axis=1)
        assert np.allclose(sides, sides[0])
        edges = np.roll(square, -1, 0) - square
        assert np.allclose(np.sum(edges * np.roll(edges, -1, 0), axis=1), 0, atol=1e-9)
        triangle = heldout3.object_ring(2, (0, 0), 40, angle, 0)
        assert np.allclose(np.linalg.norm(np.roll(triangle, -1, 0) - triangle, axis=1), 40)
        star = heldout3.object_ring(3, (0, 0), 40, angle, 0.42)
        radii = np.linalg.norm(star, axis=1)
        assert len(star) == 10 and np.allclose(radii[1::2] / radii[0::2], 0.42)
        cross = heldout3.object_ring(4, (0, 0), 40, angle, 0.33)
        lengths = np.linalg.norm(np.roll(cross, -1, 0) - cross, axis=1)
        arm_width = lengths[2::3]  # the end caps; the other edges are the arms' side walls
        assert np.allclose(arm_width, arm_width[0])
        arm_width, arm_length = arm_width[0], lengths[0]
        assert np.allclose(np.delete(lengths, np.s_[2::3]), arm_length)
        total = 2 * arm_length + arm_width
        assert arm_width / total == pytest.approx(0.33)
        for ring in (square, triangle, star, cross):
            pairwise = np.linalg.norm(ring[:, None] - ring[None], axis=2).max()
            assert pairwise == pytest.approx(40)


def test_masks_match_an_independent_rebuild_of_each_object(scenes):
    points = _centres(SIZE)
    for scene in _all(scenes):
        for obj in scene.objects:
            rebuilt = _inside(obj, SIZE)
            visible = rebuilt if scene.occluder is None else rebuilt & ~scene.occluder
            mismatch = visible != obj.mask
            if scene.occluder is not None:
                mismatch &= ~heldout3._dilate(scene.occluder, 1)
            assert mismatch.sum() <= 0.03 * rebuilt.sum() + 2
            distance = _distance_to_outline(obj, points[mismatch.ravel()])
            assert (distance <= 0.75).all(), CLASSES[obj.label]


def test_sizes_ratios_and_strokes_follow_the_specification(scenes):
    for scene in _all(scenes):
        for obj in scene.objects:
            assert 0.10 * SIZE <= obj.extent <= 0.70 * SIZE
            if scene.kind != "single":
                assert obj.extent <= 0.42 * SIZE
            if CLASSES[obj.label] == "star":
                assert 0.38 <= obj.ratio <= 0.5
            if CLASSES[obj.label] == "cross":
                assert 0.28 <= obj.ratio <= 0.4
            if obj.stroke:
                assert obj.extent >= 0.16 * SIZE
                assert 0.03 * SIZE <= obj.stroke <= 0.06 * SIZE
                assert obj.ink.sum() < obj.mask.sum()
    strokes = [o.stroke for s in _all(scenes) for o in s.objects]
    assert any(strokes) and not all(strokes)


def test_objects_inside_the_image_and_apart(scenes):
    for scene in _all(scenes):
        for obj in scene.objects:
            if CLASSES[obj.label] == "circle":
                extremes = np.array([obj.center]) + [[obj.extent / 2] * 2, [-obj.extent / 2] * 2]
            else:
                extremes = np.concatenate(_rebuilt_polygons(obj))
            assert extremes.min() >= 1.0 and extremes.max() <= SIZE - 1.0
        for i, a in enumerate(scene.objects):
            for b in scene.objects[i + 1:]:
                whole_a = _inside(a, SIZE)
                whole_b = _inside(b, SIZE)
                assert not (heldout3._dilate(whole_a, 2) & whole_b).any()


def test_occlusion_hides_at_most_a_fifth_of_any_object():
    rng = np.random.default_rng(21)
    occluded = 0
    for _ in range(90):
        scene = make_scene(rng, 64, "single")
        obj = scene.objects[0]
        whole = _inside(obj, 64)
        if scene.occluder is None:
            assert obj.occluded_fraction == 0
            continue
        occluded += 1
        hidden = (whole & scene.occluder).sum() / whole.sum()
        assert hidden <= 0.2 + 0.02
        assert 0 < obj.occluded_fraction <= 0.2
        assert obj.extent >= 0.16 * 64
        assert not (obj.mask & scene.occluder).any()
        # the foreground twig must not merge with the object it crosses (a plain RGB check)
        touching = ~heldout3._dilate(~scene.occluder, 1) & heldout3._dilate(obj.mask, 3)
        core = ~heldout3._dilate(~obj.ink, 1) & obj.mask
        if touching.sum() >= 3 and core.sum() >= 4:
            image = scene.image.astype(float)
            gap = np.linalg.norm(np.median(image[touching], 0) - np.median(image[core], 0))
            assert gap >= 30
    assert occluded >= 3


def test_every_object_meets_the_contrast_guarantee(scenes):
    for scene in _all(scenes):
        assert heldout3.scene_contrast_ok(scene)
        for obj in scene.objects:
            # an independent, cruder check in plain RGB: object core vs a surrounding band
            core = ~heldout3._dilate(~(obj.ink & obj.mask), 1)
            if core.sum() < 4:
                core = obj.ink & obj.mask
            others = np.zeros_like(obj.mask)
            for other in scene.objects:
                if other is not obj:
                    others |= heldout3._dilate(other.mask, 2)
            if scene.occluder is not None:
                others |= heldout3._dilate(scene.occluder, 2)
            band = heldout3._dilate(obj.mask, 4) & ~heldout3._dilate(obj.mask, 1) & ~others
            image = scene.image.astype(float)
            gap = np.linalg.norm(np.median(image[core], 0) - np.median(image[band], 0))
            assert gap >= 50, (scene.background, CLASSES[obj.label], gap)
            # Rec. 601 luma weighs saturated blues and reds differently from CIELAB's L*, so
            # this bound is looser than the module's |Delta L*| >= 20
            luma = image @ np.array([0.299, 0.587, 0.114])
            assert abs(np.median(luma[core]) - np.median(luma[band])) >= 20


def test_contrast_check_rejects_an_invisible_object(scenes):
    scene = scenes["single"][0]
    obj = scene.objects[0]
    flat = np.full_like(scene.image, 128)
    assert not heldout3.contrast_report(flat, obj).ok


def test_contact_sheet_command(tmp_path, capsys):
    heldout3.main([str(tmp_path / "sheet.png")])
    assert (tmp_path / "sheet.png").stat().st_size > 10_000
    assert "scenes/s" in capsys.readouterr().out
