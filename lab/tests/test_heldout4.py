"""The fourth held-out generator: interface, determinism, and its geometry and fairness promises
re-checked here by methods of the test's own (vertex lists rebuilt with complex numbers, mapped
through the stored homography and filled with PIL at pixel centres, crosses as two bars; the
contrast guarantee recomputed with its own erosion and dilation)."""

from __future__ import annotations

import cmath
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lab import heldout4

SIZE = 128


@pytest.fixture(scope="module")
def scenes() -> dict[str, list[heldout4.Scene]]:
    return heldout4.make_scenes(seed=11, per_kind=14, size=SIZE)


def all_objects(scenes):
    for kind in heldout4.KINDS:
        for scene in scenes[kind]:
            for index, obj in enumerate(scene.objects):
                yield scene, index, obj


def project(homography: np.ndarray, points: list[complex]) -> list[tuple[float, float]]:
    projected = []
    for point in points:
        x, y, w = homography @ np.array([point.real, point.imag, 1.0])
        projected.append((x / w, y / w))
    return projected


def plane_pieces(label: int, rotation: float, proportion: float) -> list[list[complex]]:
    """The shape in its own plane (outer radius 1) as convex or simple pieces, built afresh."""
    turn = cmath.exp(1j * rotation)
    name = heldout4.CLASSES[label]
    if name == "circle":
        return [[cmath.exp(2j * math.pi * k / 360) for k in range(360)]]
    if name == "square":
        return [[turn * cmath.exp(1j * (math.pi / 4 + k * math.pi / 2)) for k in range(4)]]
    if name == "triangle":
        return [[turn * cmath.exp(1j * (-math.pi / 2 + k * 2 * math.pi / 3)) for k in range(3)]]
    if name == "star":
        return [[turn * (1 if k % 2 == 0 else proportion) * cmath.exp(1j * (-math.pi / 2 + k * math.pi / 5))
                 for k in range(10)]]
    bar = [complex(-1, -proportion), complex(1, -proportion), complex(1, proportion), complex(-1, proportion)]
    return [[turn * z for z in bar], [turn * 1j * z for z in bar]]


def rasterised(pose: heldout4.ShapePose, size: int = SIZE, zoom: int = 4) -> np.ndarray:
    """Filled by PIL on a ``zoom`` times finer canvas, a pixel counted when half its subpixels are."""
    canvas = Image.new("L", (size * zoom, size * zoom), 0)
    draw = ImageDraw.Draw(canvas)
    for piece in plane_pieces(pose.label, pose.rotation, pose.proportion):
        # fine pixel (c, r) is sampled at its corner (c, r) by PIL: shift by half a fine pixel
        draw.polygon([(x * zoom - 0.5, y * zoom - 0.5) for x, y in project(pose.homography, piece)], fill=1)
    fine = np.asarray(canvas, np.float32).reshape(size, zoom, size, zoom)
    return fine.mean((1, 3)) >= 0.5


def projected_extent(pose: heldout4.ShapePose) -> float:
    points = np.array([p for piece in plane_pieces(pose.label, pose.rotation, pose.proportion)
                       for p in project(pose.homography, piece)])
    return float((points.max(0) - points.min(0)).max())


def jacobian_at_centre(pose: heldout4.ShapePose) -> np.ndarray:
    step = 1e-4
    (x0, y0), (xu, yu), (xv, yv) = project(pose.homography, [0, step, 1j * step])
    return np.array([[xu - x0, xv - x0], [yu - y0, yv - y0]]) / step


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    h, w = mask.shape
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    return ~dilate(~mask, radius) & mask


# ------------------------------------------------------------------ interface


def test_same_seed_gives_identical_scenes_and_other_seeds_differ():
    first, again, other = (heldout4.make_scenes(seed, per_kind=2, size=64) for seed in (5, 5, 6))
    for kind in heldout4.KINDS:
        for a, b in zip(first[kind], again[kind], strict=True):
            assert np.array_equal(a.image, b.image)
            assert [o.label for o in a.objects] == [o.label for o in b.objects]
            assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.objects, b.objects, strict=True))
    assert not all(np.array_equal(a.image, b.image) for a, b in zip(first["single"], other["single"], strict=True))


def test_scenes_have_the_promised_kinds_shapes_and_labels(scenes):
    assert heldout4.CLASSES == ("circle", "square", "triangle", "star", "cross")
    assert set(scenes) == set(heldout4.KINDS) == {"single", "pair", "same"}
    for kind, listed in scenes.items():
        assert len(listed) == 14
        for scene in listed:
            assert scene.kind == kind
            assert scene.image.shape == (SIZE, SIZE, 3) and scene.image.dtype == np.uint8
            labels = [obj.label for obj in scene.objects]
            assert all(0 <= label < 5 for label in labels)
            if kind == "single":
                assert len(labels) == 1
            elif kind == "pair":
                assert len(labels) == 2 and labels[0] != labels[1]
            else:
                assert len(labels) in (2, 3) and len(set(labels)) == 1
            for obj in scene.objects:
                assert obj.mask.shape == (SIZE, SIZE) and obj.mask.dtype == bool and obj.mask.any()
                ys, xs = np.nonzero(obj.mask)
                assert obj.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
                assert obj.pose.label == obj.label
    kinds_of_labels = {obj.label for _, _, obj in all_objects(scenes)}
    assert kinds_of_labels == set(range(5))


def test_dataset_is_balanced_deterministic_and_single_object():
    images, labels = heldout4.make_dataset(seed=3, count=13, size=48)
    assert images.shape == (13, 48, 48, 3) and images.dtype == np.uint8
    assert labels.shape == (13,) and np.issubdtype(labels.dtype, np.integer)
    assert np.bincount(labels, minlength=5).tolist() == [3, 3, 3, 2, 2]
    again, again_labels = heldout4.make_dataset(seed=3, count=13, size=48)
    assert np.array_equal(images, again) and np.array_equal(labels, again_labels)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown scene kind"):
        heldout4.make_scene(np.random.default_rng(0), kind="many")


# ------------------------------------------------------------------ geometry, rebuilt independently


def test_masks_match_the_shape_rebuilt_from_its_stored_pose(scenes):
    for scene, _, obj in all_objects(scenes):
        rebuilt = rasterised(obj.pose)
        unoccluded = obj.mask | (scene.occluder & rebuilt)
        # the two may differ only along a one-pixel band where coverage is near one half
        assert not (unoccluded & ~dilate(rebuilt, 1)).any(), heldout4.CLASSES[obj.label]
        assert not (erode(rebuilt, 1) & ~unoccluded).any(), heldout4.CLASSES[obj.label]
        if projected_extent(obj.pose) >= 20:
            assert (rebuilt & unoccluded).sum() / (rebuilt | unoccluded).sum() > 0.85


def test_shapes_keep_their_class_proportions_and_a_mild_tilt(scenes):
    for _, _, obj in all_objects(scenes):
        name = heldout4.CLASSES[obj.label]
        if name == "star":
            assert 0.38 <= obj.pose.proportion <= 0.5
        elif name == "cross":
            assert 0.28 <= obj.pose.proportion <= 0.4
        singular = np.linalg.svd(jacobian_at_centre(obj.pose), compute_uv=False)
        # foreshortening of a plane tilted by t is about cos(t); perspective adds a little
        assert singular[1] / singular[0] >= math.cos(math.radians(heldout4.MAX_TILT_DEGREES)) - 0.03


def test_object_sizes_stay_in_range_and_inside_the_image(scenes):
    for scene, _, obj in all_objects(scenes):
        extent = projected_extent(obj.pose) / SIZE
        high = 0.70 if scene.kind == "single" else 0.45
        assert 0.10 - 1e-6 <= extent <= high + 1e-6
        points = np.array([p for piece in plane_pieces(obj.pose.label, obj.pose.rotation, obj.pose.proportion)
                           for p in project(obj.pose.homography, piece)])
        assert points.min() >= 0 and points.max() <= SIZE


def test_outlines_are_three_to_six_percent_wide_on_big_enough_objects_with_an_open_hole(scenes):
    outlined = [(scene, obj) for scene, _, obj in all_objects(scenes) if obj.outlined]
    assert outlined, "the sample should hold outlined objects"
    for _scene, obj in outlined:
        assert projected_extent(obj.pose) >= 0.16 * SIZE
        scale = math.sqrt(abs(np.linalg.det(jacobian_at_centre(obj.pose))))
        assert 0.03 * 0.9 <= obj.pose.stroke * scale / SIZE <= 0.06 * 1.1
        assert not (obj.ink & ~obj.mask).any()
        hole = obj.mask & ~obj.ink
        assert hole.sum() >= 0.1 * obj.mask.sum()
    filled = [obj for _, _, obj in all_objects(scenes) if not obj.outlined]
    assert all(np.array_equal(obj.ink, obj.mask) for obj in filled)


def test_objects_never_overlap_or_touch(scenes):
    for scene in (s for kind in heldout4.KINDS for s in scenes[kind]):
        rebuilt = [rasterised(obj.pose) for obj in scene.objects]
        for i in range(len(rebuilt)):
            for j in range(i + 1, len(rebuilt)):
                assert not (dilate(rebuilt[i], 1) & rebuilt[j]).any()
                assert not (scene.objects[i].mask & scene.objects[j].mask).any()


def test_occlusion_hides_at_most_a_fifth_and_only_in_a_minority(scenes):
    every_scene = [s for kind in heldout4.KINDS for s in scenes[kind]]
    for scene, _, obj in all_objects(scenes):
        whole = obj.mask | (scene.occluder & dilate(obj.mask, 2) & rasterised(obj.pose))
        hidden = (whole & ~obj.mask).sum() / whole.sum()
        assert hidden <= heldout4.MAX_OCCLUDED_SHARE + 0.02
        assert obj.occluded_share <= heldout4.MAX_OCCLUDED_SHARE
        assert not (obj.mask & scene.occluder).any()
    assert sum(scene.occluder.any() for scene in every_scene) <= 0.35 * len(every_scene)


def test_occluded_scenes_exist_and_obey_the_bound():
    rng = np.random.default_rng(4)
    occluded = []
    while len(occluded) < 3:
        scene = heldout4.make_scene(rng, 96, "single")
        if scene.occluder.any():
            occluded.append(scene)
    for scene in occluded:
        obj = scene.objects[0]
        whole = rasterised(obj.pose, 96)
        assert 0 < (whole & scene.occluder).sum() / whole.sum() <= heldout4.MAX_OCCLUDED_SHARE + 0.03


# ------------------------------------------------------------------ contrast guarantee


def test_every_object_stands_out_from_the_surface_around_it(scenes):
    """Recomputed here: mean ink colour vs the mean of a 2-5 px ring around the object (not other
    objects, not the foreground leaf) at least MIN_MEAN_COLOUR_DISTANCE apart, and few pixels of
    either nearer the other's mean."""
    for scene, index, obj in all_objects(scenes):
        core = erode(obj.ink, 1)
        if core.sum() < 8:
            core = obj.ink
        others = np.zeros_like(obj.mask)
        for other_index, other in enumerate(scene.objects):
            if other_index != index:
                others |= dilate(other.mask, 2)
        body = obj.mask | (scene.occluder & dilate(obj.mask, 2))
        ring = dilate(body, 5) & ~dilate(body, 2) & ~others & ~dilate(scene.occluder, 2)
        ink_pixels = scene.image[core].astype(float)
        ring_pixels = scene.image[ring].astype(float)
        ink_mean, ring_mean = ink_pixels.mean(0), ring_pixels.mean(0)
        assert np.linalg.norm(ink_mean - ring_mean) >= heldout4.MIN_MEAN_COLOUR_DISTANCE
        ring_strays = np.mean([np.linalg.norm(p - ink_mean) < np.linalg.norm(p - ring_mean) for p in ring_pixels])
        ink_strays = np.mean([np.linalg.norm(p - ring_mean) < np.linalg.norm(p - ink_mean) for p in ink_pixels])
        assert max(ring_strays, ink_strays) <= heldout4.MAX_CONFUSABLE_SHARE


def test_the_guarantee_rejects_a_washed_out_object(scenes):
    scene = scenes["single"][0]
    faded = heldout4.Scene(scene.image.copy(), scene.objects, scene.kind, scene.surface, scene.occluder)
    ring = dilate(scene.objects[0].mask, 5) & ~scene.objects[0].mask
    faded.image[scene.objects[0].mask] = scene.image[ring].mean(0).astype(np.uint8)
    assert heldout4.is_legible(scene)
    assert not heldout4.is_legible(faded)


def test_contact_sheet_is_written(tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert heldout4.main([str(out)]) == 0
    sheet = Image.open(out)
    assert sheet.width > 8 * 128 and sheet.height > 6 * 128
    assert "scenes/s" in capsys.readouterr().out
