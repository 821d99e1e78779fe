"""Awkward and broken image files and names, made on the spot (nothing downloaded)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

GOOD = "good"
BAD = "bad"
NASTY = "<img src=x onerror=alert(1)>.jpg"  # a file name that is markup


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png() -> bytes:
    """A valid PNG header claiming 100000 x 100000 pixels (10 gigapixels), with a tiny body."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def scene(width: int = 80, height: int = 60) -> Image.Image:
    rng = np.random.default_rng(width * 7 + height)
    array = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(array)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour fields plus mild noise: compresses like a photo, not like a flat test card."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    noisy = np.asarray(coarse, np.int16) + rng.integers(-6, 7, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def make_corpus(folder: Path) -> dict[str, str]:
    """Write the corpus into ``folder``; return {relative name: GOOD or BAD}."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    def put(name: str, data: bytes, verdict: str) -> None:
        (folder / name).write_bytes(data)
        expected[name] = verdict

    base = scene()
    put("zero_bytes.jpg", b"", BAD)
    put("truncated.jpg", _jpeg(scene(400, 300))[:1500], BAD)
    put("text_named.jpg", b"just some notes, not a picture\n" * 4, BAD)
    put("page_named.png", b"<!doctype html><html><body><h1>404</h1></body></html>", BAD)
    corrupt = bytearray(_png(base))
    corrupt[29] ^= 0xFF  # inside IHDR's CRC
    put("corrupt_crc.png", bytes(corrupt), BAD)
    put("bomb.png", bomb_png(), BAD)

    grey16 = Image.fromarray((np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16))
    put("grey16.png", _png(grey16), GOOD)
    put("cmyk.jpg", _jpeg(base.convert("CMYK")), GOOD)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(80, dtype=np.uint8) * 3, (60, 1))))
    put("transparent.png", _png(rgba), GOOD)
    palette = io.BytesIO()
    base.convert("P", palette=Image.ADAPTIVE, colors=16).save(palette, format="GIF")
    put("palette.gif", palette.getvalue(), GOOD)
    animated = io.BytesIO()
    frames = [scene(40 + i, 30).resize((40, 30)).convert("P") for i in range(3)]
    frames[0].save(animated, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    put("animated.gif", animated.getvalue(), GOOD)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    put("exif_rotated.jpg", _jpeg(scene(80, 40), exif=exif.tobytes()), GOOD)
    put("one_pixel.png", _png(Image.new("RGB", (1, 1), (200, 10, 10))), GOOD)
    put("very_wide.png", _png(scene(10000, 20)), GOOD)
    put("name with spaces, ünïcødé & <html> 'quotes' $(rm -rf).png", _png(base), GOOD)
    put("bmp_image.bmp", (lambda b: (base.save(b, format="BMP"), b.getvalue())[1])(io.BytesIO()), GOOD)
    put("webp_image.webp", (lambda b: (base.save(b, format="WEBP"), b.getvalue())[1])(io.BytesIO()), GOOD)
    put("tiff_image.tiff", (lambda b: (base.save(b, format="TIFF"), b.getvalue())[1])(io.BytesIO()), GOOD)

    (folder / "folder_named.jpg").mkdir(exist_ok=True)  # listed by no one: folders are skipped
    nested = folder / "nested"
    nested.mkdir(exist_ok=True)
    (nested / "inner.png").write_bytes(_png(base))
    expected["nested/inner.png"] = GOOD
    loop = nested / "loop"
    if not loop.exists():
        os.symlink("..", loop)  # nested/loop -> folder: a symlink loop under --recursive
    return expected
