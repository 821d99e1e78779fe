"""Inputs are decoded once, at the scale needed; memory does not grow with resolution (issue 11)."""

from __future__ import annotations

import io
import json
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gradcam_cli import decode as decode_module
from gradcam_cli.cli import cli
from gradcam_cli.decode import PixelBudget, decode
from gradcam_cli.errors import ImageError
from gradcam_cli.manifest import Manifest


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour fields plus mild noise: compresses like a photo, not like a flat test card."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    noisy = np.asarray(coarse, np.int16) + rng.integers(-6, 7, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def phone_jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("phone") / "phone photo #1.jpg"
    photo(4000, 3000).save(path, quality=90)
    return path


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


def test_cli_max_megapixels_fails_that_input_only(tmp_path, phone_jpeg):
    folder = tmp_path / "in"
    folder.mkdir()
    photo(2000, 1500).save(folder / "scan.png")
    (folder / "phone.jpg").write_bytes(phone_jpeg.read_bytes())
    result = run("explain", folder, "-o", tmp_path / "out", "--max-megapixels", "2", "-q")
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if "scan.png" in line]
    assert len(lines) == 1 and "--max-megapixels" in lines[0]
    rows = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert {Path(r["input"]).name: r["status"] for r in rows} == {"scan.png": "error", "phone.jpg": "ok"}


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


def test_overlay_size_option_sets_the_longest_side_and_keeps_raw_heatmaps(tmp_path):
    source = tmp_path / "in.jpg"
    photo(1600, 1200).save(source, quality=90)
    sizes = {}
    for value in ("500", "original", None):
        out = tmp_path / f"out_{value}"
        extra = [] if value is None else ["--overlay-size", value]
        assert run("explain", source, "-o", out, "-q", *extra).exit_code == 0
        row = Manifest.read_rows(out / "manifest.jsonl")[0]  # paths made absolute
        sizes[value] = Image.open(row["overlay"]).size
        assert row["image_size"] == [1200, 1600]  # height, width
        assert np.load(row["heatmap"]).shape == tuple(row["heatmap_shape"]) and max(row["heatmap_shape"]) < 64
    assert sizes == {"500": (500, 375), "original": (1600, 1200), None: (1000, 750)}
    result = run("explain", source, "-o", tmp_path / "bad", "--overlay-size", "huge")
    assert result.exit_code == 2 and "original" in result.output


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


def test_api_decodes_files_at_the_overlay_size_like_the_cli(tmp_path, phone_jpeg):
    """The Python API used to keep every file at full resolution (36 MB per 12 MP photo, for a
    whole folder); it now decodes as the CLI does, and so gives the CLI's heatmap."""
    from gradcam_cli import explain

    monkeypatched = []
    real = decode_module.Image.Image.load

    def counting_load(image):  # the largest decode made
        monkeypatched.append(image.size)
        return real(image)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decode_module.Image.Image, "load", counting_load)
        result = explain("demo", str(phone_jpeg))
    assert result.images[0].shape == (750, 1000, 3)
    assert max(width * height for width, height in monkeypatched) <= 1000 * 750  # DCT-scaled, never 12 MP
    assert explain("demo", str(phone_jpeg), overlay_size=500).images[0].shape == (375, 500, 3)
    # decoded at 1/2 scale (2000 px) for a 1200 px overlay: the model input comes from the decode,
    # not from the fitted picture, in the API as in the CLI
    for size, extra in ((None, []), (1200, ["--overlay-size", "1200"])):
        api = result if size is None else explain("demo", str(phone_jpeg), overlay_size=size)
        out = tmp_path / f"cli{size}"
        assert run("explain", phone_jpeg, "-o", out, "-q", *extra).exit_code == 0
        row = Manifest.read_rows(out / "manifest.jsonl")[0]
        assert api.images[0].shape[:2] == tuple(reversed(Image.open(row["overlay"]).size))
        np.testing.assert_allclose(np.load(row["heatmap"]), api.heatmaps[0, 0], rtol=1e-4, atol=1e-6)
