"""Decoding inputs (gradcam_cli/decode.py): once, at the scale needed, so memory does not grow with
resolution; colour modes and EXIF orientation; the pixel budget; decompression bombs refused."""

from __future__ import annotations

import io
import struct
import threading
import time

import numpy as np
import pytest
from PIL import Image

from gradcam_cli import decode as decode_module
from gradcam_cli.decode import PixelBudget, decode, load_image
from gradcam_cli.errors import ImageError
from tests.corpus import photo


def test_jpeg_is_decoded_in_the_dct_domain_at_the_smallest_scale_covering_model_and_overlay(phone_jpeg):
    decoded = decode(phone_jpeg, min_size=(224, 224), longest_side=1000)
    assert decoded.original_size == (4000, 3000)
    assert decoded.image.size == (1000, 750)  # 1/4 scale: the smallest that still covers 1000 px
    assert decode(phone_jpeg, min_size=(224, 224), longest_side=300).image.size == (500, 375)  # 1/8
    assert decode(phone_jpeg, min_size=(224, 224), longest_side=1200).image.size == (2000, 1500)  # 1/2
    assert decode(phone_jpeg, min_size=(512, 512), longest_side=256).image.size == (1000, 750)  # model needs 512
    # what DCT scaling gives agrees with a full decode shrunk afterwards (the same picture, no shift)
    full = Image.open(phone_jpeg).convert("RGB").resize((1000, 750), Image.BILINEAR)
    difference = np.abs(np.asarray(full, np.int16) - np.asarray(decoded.image, np.int16))
    assert difference.mean() < 3.0, difference.mean()


def test_exif_turned_jpeg_covers_the_model_input_along_each_displayed_axis(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    path = tmp_path / "turned.jpg"
    photo(4000, 1000).save(path, quality=90, exif=exif.tobytes())
    decoded = decode(path, min_size=(224, 224), longest_side=400)
    assert decoded.original_size == (1000, 4000)
    width, height = decoded.image.size
    assert height > width and width >= 224 and height >= 400
    assert decoded.image.size == (250, 1000)  # 1/4: 1/8 would leave the width at 125 < 224


@pytest.mark.slow
def test_other_formats_are_reduced_after_decoding_with_modes_kept(tmp_path):
    png = tmp_path / "wide.png"
    photo(3000, 2000).save(png)
    assert decode(png, min_size=(224, 224), longest_side=1000).image.size == (1500, 1000)  # reduce(2)
    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.tile(np.linspace(0, 65535, 2400), (1200, 1)).astype(np.uint16)).save(grey16)
    picture = np.asarray(decode(grey16, longest_side=600).image)
    assert picture.shape == (300, 600, 3) and picture[:, 0].max() <= 1 and picture[:, -1].min() >= 254
    rgba = Image.new("RGBA", (2000, 1000), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (1000, 0, 2000, 1000))
    transparent = tmp_path / "transparent.png"
    rgba.save(transparent)
    shrunk = np.asarray(decode(transparent, longest_side=500).image)
    assert shrunk.shape == (250, 500, 3)
    assert shrunk[:, :240].min() >= 250  # fully transparent red stays white, no red fringe
    assert tuple(shrunk[5, 400]) == (0, 0, 255)


def test_conversions_follow_exif_and_colour_modes(corpus):
    folder, _ = corpus
    rotated = load_image(folder / "exif_rotated.jpg")
    assert rotated.shape == (80, 40, 3)  # stored 80 wide x 40 high, displayed rotated
    grey = load_image(folder / "grey16.png")
    assert grey.shape == (48, 64, 3) and grey.max() == 255 and grey.min() == 0
    transparent = load_image(folder / "transparent.png")
    assert transparent[:, 0].min() >= 250  # alpha 0 composited on white
    assert load_image(folder / "animated.gif").shape == (30, 40, 3)


@pytest.mark.slow
def test_max_megapixels_refuses_a_full_size_decode_with_one_line_naming_the_option(tmp_path, phone_jpeg):
    png = tmp_path / "big.png"
    photo(2000, 1500).save(png)
    with pytest.raises(ImageError, match="max_megapixels=2") as caught:
        decode(png, longest_side=1000, max_megapixels=2)
    assert "\n" not in str(caught.value) and "big.png" in str(caught.value)
    assert decode(phone_jpeg, longest_side=1000, max_megapixels=2).image.size == (1000, 750)  # 0.75 MP decode
    with pytest.raises(ImageError, match="full resolution is asked for"):
        decode(phone_jpeg, longest_side=None, max_megapixels=2)
    progressive = tmp_path / "progressive.jpg"
    Image.open(phone_jpeg).save(progressive, quality=90, progressive=True)
    with pytest.raises(ImageError, match="progressive"):
        decode(progressive, longest_side=1000, max_megapixels=2)


def _set_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    start = data.index(b"\xff\xc0")  # baseline start-of-frame: length, precision, height, width
    return data[: start + 5] + struct.pack(">HH", height, width) + data[start + 9 :]


def test_a_photo_over_pillows_pixel_limit_is_decoded_reduced_but_a_bomb_is_refused(tmp_path, phone_jpeg, monkeypatch):
    monkeypatch.setattr(decode_module.Image, "MAX_IMAGE_PIXELS", 2_000_000)  # 12 MP is now over twice the limit
    decoded = decode(phone_jpeg, min_size=(224, 224), longest_side=1000)
    assert decoded.image.size == (1000, 750) and decoded.original_size == (4000, 3000)
    buffer = io.BytesIO()
    photo(64, 48).save(buffer, format="JPEG")
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(_set_jpeg_size(buffer.getvalue(), 40000, 30000))  # 1.2 gigapixels in ~2 KB
    with pytest.raises(ImageError, match="decompression bomb"):
        decode(bomb, min_size=(224, 224), longest_side=1000)


def test_pixel_budget_never_holds_more_than_its_limit_across_threads():
    budget = PixelBudget(megapixels=1.0)
    held, peak, lock = [0], [0], threading.Lock()

    def work(pixels: int) -> None:
        with budget.hold(pixels):
            with lock:
                held[0] += min(pixels, budget.limit)
                peak[0] = max(peak[0], held[0])
            time.sleep(0.01)
            with lock:
                held[0] -= min(pixels, budget.limit)

    threads = [threading.Thread(target=work, args=(p,)) for p in [600_000, 600_000, 300_000, 5_000_000, 100_000] * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert 0 < peak[0] <= 1_000_000 and held[0] == 0


def test_a_link_to_a_device_is_named_a_device_not_an_empty_file(tmp_path):
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")
    with pytest.raises(ImageError, match="not a regular file"):
        decode(link)
