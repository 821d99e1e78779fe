"""The held-out scene generator: determinism, geometry of masks, balance, and visibility."""

from __future__ import annotations

import numpy as np
import pytest

from lab import heldout
from lab.heldout import (
    CLASSES,
    MIN_INK_CONTRAST,
    TEXTURES,
    make_dataset,
    make_scene,
    make_scenes,
)


@pytest.fixture(scope="module")
def scenes() -> dict[str, list[heldout.HeldoutScene]]:
    return make_scenes(seed=11, per_kind=40, size=96)


@pytest.fixture(scope="module")
def every_texture() -> list[heldout.HeldoutScene]:
    """Six single scenes per texture family, the hard case with its three classes included."""
    return [
        make_scene(np.random.default_rng([5, t, i]), 96, "single", label=i % 3 if texture == "blocks_noisy" else None,
                   texture=texture)
        for t, texture in enumerate(TEXTURES)
        for i in range(6)
    ]


def _all(scenes, every_texture):
    return [scene for kind in scenes.values() for scene in kind] + every_texture


def test_same_seed_gives_identical_scenes_and_other_seed_differs():
    first, again, other = make_scenes(3, 4, 64), make_scenes(3, 4, 64), make_scenes(4, 4, 64)
    for kind in heldout.KINDS:
        for a, b in zip(first[kind], again[kind], strict=True):
            np.testing.assert_array_equal(a.image, b.image)
            assert a.labels == b.labels
            for obj_a, obj_b in zip(a.objects, b.objects, strict=True):
                np.testing.assert_array_equal(obj_a.mask, obj_b.mask)
                assert obj_a.box == obj_b.box
        assert any(not np.array_equal(a.image, c.image) for a, c in zip(first[kind], other[kind], strict=True))
    images, labels = make_dataset(9, 12, 64)
    images_again, labels_again = make_dataset(9, 12, 64)
    np.testing.assert_array_equal(images, images_again)
    np.testing.assert_array_equal(labels, labels_again)


def test_shapes_and_dtypes(scenes):
    for kind, kind_scenes in scenes.items():
        assert len(kind_scenes) == 40
        for scene in kind_scenes:
            assert scene.kind == kind
            assert scene.image.shape == (96, 96, 3) and scene.image.dtype == np.uint8
            assert scene.background.shape == (96, 96, 3) and scene.background.dtype == np.uint8
            for obj in scene.objects:
                assert obj.mask.shape == (96, 96) and obj.mask.dtype == bool
                assert obj.ink.shape == (96, 96) and obj.ink.dtype == bool
                assert obj.name == CLASSES[obj.label]
    images, labels = make_dataset(0, 7, 48)
    assert images.shape == (7, 48, 48, 3) and images.dtype == np.uint8
    assert labels.shape == (7,) and np.issubdtype(labels.dtype, np.integer)


def test_masks_are_non_empty_tight_in_their_boxes_and_clear_of_the_border(scenes, every_texture):
    for scene in _all(scenes, every_texture):
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            assert obj.mask.any()
            inside = np.zeros_like(obj.mask)
            inside[y0:y1, x0:x1] = True
            assert not (obj.mask & ~inside).any()
            assert obj.mask[y0].any() and obj.mask[y1 - 1].any()  # tight box
            assert obj.mask[:, x0].any() and obj.mask[:, x1 - 1].any()
            border = np.ones_like(obj.mask)
            border[1:-1, 1:-1] = False
            assert not (obj.mask & border).any(), "shape cut by the image border"
            assert not (obj.ink & ~obj.mask).any(), "ink outside the object's mask"


def test_objects_in_one_scene_do_not_overlap(scenes):
    for scene in scenes["pair"] + scenes["same"]:
        total = sum(obj.mask.astype(int) for obj in scene.objects)
        assert total.max() == 1


def test_mask_matches_the_drawn_shape_area():
    """A filled circle of radius r drawn alone has a mask of about pi r^2 pixels (SDF threshold)."""
    placement = heldout._Placement(label=0, cx=40.3, cy=50.7, radius=17.0, angle=0.0, stroke=0.0)
    _, _, region = heldout._shape_fields(placement, 96)
    assert abs((region <= 0).sum() - np.pi * 17.0**2) < 2 * np.pi * 17.0 * 0.5


def test_dataset_classes_are_balanced():
    _, labels = make_dataset(2, 23, 48)
    counts = np.bincount(labels, minlength=len(CLASSES))
    assert counts.max() - counts.min() <= 1 and counts.sum() == 23
    assert len(set(labels[:10].tolist())) > 2, "labels should be shuffled, not in class blocks"


def test_pair_has_two_different_classes_and_same_has_two_or_three_of_one(scenes):
    for scene in scenes["pair"]:
        assert len(scene.labels) == 2 and scene.labels[0] != scene.labels[1]
    for scene in scenes["same"]:
        assert len(scene.labels) in (2, 3) and len(set(scene.labels)) == 1
    for scene in scenes["single"]:
        assert len(scene.labels) == 1
    seen = {label for kind in scenes.values() for scene in kind for label in scene.labels}
    assert seen == set(range(len(CLASSES)))


def test_ink_colour_differs_from_the_background_under_it(scenes, every_texture):
    """The guarantee, recomputed here: 80 % of an object's visible ink pixels are at least
    MIN_INK_CONTRAST (RGB distance) away from the clean background beneath them."""
    contrasts = []
    for scene in _all(scenes, every_texture):
        for obj in scene.objects:
            under = scene.background[obj.ink].astype(float)
            distance = np.linalg.norm(under - np.array(obj.colour, float), axis=1)
            assert np.mean(distance >= MIN_INK_CONTRAST) >= 0.8, (scene.texture, obj.name)
            contrasts.append(np.quantile(distance, 0.2))
    # both bands occur: low-contrast objects are part of the test set
    assert np.mean(np.array(contrasts) < 80) > 0.1 and np.mean(np.array(contrasts) >= 110) > 0.4


def test_objects_remain_visible_after_post_effects(scenes, every_texture):
    """Noise, blur and brightness changes never wipe an object out of the final image."""
    for scene in _all(scenes, every_texture):
        for obj in scene.objects:
            change = np.linalg.norm(scene.image[obj.ink].astype(float) - scene.background[obj.ink], axis=1)
            assert np.median(change) >= 0.5 * MIN_INK_CONTRAST


def test_hard_case_is_a_filled_circle_square_or_triangle_of_radius_11_to_19_percent(every_texture):
    hard = [scene for scene in every_texture if scene.texture == "blocks_noisy"]
    assert len(hard) == 6
    for scene in hard:
        (obj,) = scene.objects
        assert obj.label in (0, 1, 2) and obj.filled
        distance = np.linalg.norm(scene.background[obj.ink].astype(float) - np.array(obj.colour, float), axis=1)
        assert np.mean(distance >= heldout.HARD_CASE_MIN_CONTRAST) >= 0.8
        x0, y0, x1, y1 = obj.box
        assert 2 * 0.11 * 96 * 0.7 - 2 <= max(x1 - x0, y1 - y0) <= 2 * 0.19 * 96 + 2
        # strong sensor noise: the image departs from the clean background away from the object
        away = ~obj.mask
        assert np.std(scene.image[away].astype(float) - scene.background[away]) > 15


def test_unknown_kind_or_texture_is_refused():
    with pytest.raises(ValueError, match="kind"):
        make_scene(np.random.default_rng(0), 64, "crowd")
    with pytest.raises(ValueError, match="texture"):
        make_scene(np.random.default_rng(0), 64, texture="paisley")
    with pytest.raises(ValueError, match="too small"):
        make_scene(np.random.default_rng(0), 16)


def test_contact_sheet_outlines_masks():
    scene_list = make_scenes(1, 2, 48)["pair"]
    sheet = heldout.contact_sheet(scene_list, columns=2)
    assert sheet.shape == (48 + 4, 2 * (48 + 4), 3)
    tile = sheet[:48, :48]
    outline = heldout._outline(scene_list[0].objects[0].mask)
    assert set(np.unique(tile[outline])) <= {0, 255}
