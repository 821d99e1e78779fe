"""Decoding inputs into RGB arrays, at the scale they are needed: the one decode path.

Every decode problem becomes an :class:`ImageError` with a one-line reason, so a batch can record
it and move on. Size is judged by what is actually decoded (:func:`decode`): a 120 MP JPEG needed at
1000 px is a 1.9 MP decode and is accepted; a PNG of more than ``max_megapixels`` is refused with
an error naming ``--max-megapixels``; a small file declaring a canvas over Pillow's
``MAX_IMAGE_PIXELS`` (89 MP) is a decompression bomb and refused whatever the options."""

from __future__ import annotations

import contextlib
import io
import math
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, JpegImagePlugin, UnidentifiedImageError

from .errors import ImageError, param
from .inputs import InputItem
from .options import DEFAULT_MAX_MEGAPIXELS
from .storage import is_uri, read_bytes

ImageFile.LOAD_TRUNCATED_IMAGES = False


BOMB_PIXELS_PER_BYTE = 1000
"""A canvas over Pillow's limit with more pixels than this per byte of file is a decompression bomb."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: 16-bit and float greys are scaled, transparency goes on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        # 16-bit by its full range; 32-bit integer and float by their own maximum (at least 1)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        grey = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def load_image(path: str | os.PathLike, **scale) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 RGB array, EXIF orientation applied, first frame only.

    ``scale``: the keywords of :func:`decode` (``min_size``, ``longest_side``, ``max_megapixels``).
    """
    return np.asarray(decode(path, **scale).image)


def open_rgb(path: str | os.PathLike | BinaryIO, **scale) -> Image.Image:
    """Decode ``path`` (or a binary stream, see :func:`decode`) to a loaded 8-bit RGB Pillow image."""
    return decode(path, **scale).image


@dataclass(frozen=True)
class Decoded:
    """An input decoded at the scale it is needed at."""

    image: Image.Image  # 8-bit RGB, EXIF orientation applied, at the reduced scale
    original_size: tuple[int, int]  # (width, height) of the full-resolution picture, as displayed


class PixelBudget:
    """Caps the full-resolution pixels being decoded at once, across threads.

    Formats that cannot be decoded at a reduced scale (PNG, TIFF, progressive JPEG ...) are decoded
    whole before :meth:`Image.reduce`; each decode holds its pixel count here until its reduced copy
    exists, so a folder of 48 MP PNGs decodes one or two at a time while small files decode in
    parallel. With ``--max-megapixels`` as the limit, decoding never holds more than that many
    full-resolution pixels, whatever the number of threads.
    """

    def __init__(self, megapixels: float):
        self.limit = max(1, int(megapixels * 1e6))
        self._used = 0
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(max(pixels, 0), self.limit)
        with self._condition:
            self._condition.wait_for(lambda: self._used + pixels <= self.limit)
            self._used += pixels
        try:
            yield
        finally:
            with self._condition:
                self._used -= pixels
                self._condition.notify_all()


_SWAPS_AXES = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the picture by 90 degrees


def _needed_size(displayed: tuple[int, int], min_size: tuple[int, int] | None,
                 longest_side: int | None) -> tuple[int, int]:
    """The smallest (width, height), as displayed, that still covers the model input ``min_size``
    (height, width; the model stretches, so each axis on its own) and a picture whose longest side is
    ``longest_side`` (None: the full resolution). Never more than the picture itself."""
    width, height = displayed
    if longest_side is None:
        return width, height
    shrink = min(1.0, longest_side / max(width, height))
    need_width, need_height = math.ceil(width * shrink), math.ceil(height * shrink)
    if min_size is not None:
        need_width, need_height = max(need_width, min_size[1]), max(need_height, min_size[0])
    return min(need_width, width), min(need_height, height)


def _open(path: Path | BinaryIO) -> Image.Image:
    """``Image.open`` without Pillow's pixel-count refusal: :func:`decode` judges size itself, by
    what it will actually decode. Pillow refuses canvases over twice ``MAX_IMAGE_PIXELS`` outright
    (before any scale can be chosen); a JPEG is then reopened through its own plugin."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError:
            if hasattr(path, "read"):
                path.seek(0)
                is_jpeg = path.read(3) == b"\xff\xd8\xff"
                path.seek(0)
            else:
                with open(path, "rb") as stream:
                    is_jpeg = stream.read(3) == b"\xff\xd8\xff"
            if not is_jpeg:
                raise
            image = JpegImagePlugin.jpeg_factory(path if hasattr(path, "read") else str(path))
        image.seek(0)  # a multi-picture JPEG checks its size again here
        return image


def _turned(image: Image.Image) -> bool:
    """Whether EXIF orientation turns the picture by 90 degrees, from what the header gave: a PNG
    whose eXIf chunk follows the pixels would have to be decoded whole to find out (it is then
    turned by ``exif_transpose`` after decoding, as before)."""
    if image.format == "PNG" and "exif" not in image.info:
        return False
    return image.getexif().get(ExifTags.Base.Orientation) in _SWAPS_AXES


def _bomb_error(shown: str, canvas: int, size: int) -> ImageError:
    return ImageError(
        f"{shown}: declares {canvas / 1e6:.0f} MP in a {size:,}-byte file, a decompression bomb "
        "(it would take gigabytes of memory); refused."
    )


def decode(
    path: str | os.PathLike | BinaryIO,
    min_size: tuple[int, int] | None = None,
    longest_side: int | None = None,
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
    budget: PixelBudget | None = None,
    name: str | None = None,
) -> Decoded:
    """Decode ``path`` once, at the smallest scale covering ``min_size`` (the model's (height, width))
    and ``longest_side`` (the overlay's longest side; None: full resolution).

    A baseline JPEG is scaled in the DCT domain while it is decoded (``Image.draft``: 1/2, 1/4 or 1/8,
    libjpeg's scaled IDCT), so a 12 MP photo needed at 1000 px costs a 0.75 MP decode. Other formats
    (and progressive JPEGs, whose coefficients libjpeg holds at full resolution whatever the output
    scale) are decoded whole, then shrunk by an integer box filter (``Image.reduce``) before any
    further work. The result is never smaller than asked; callers resize it to exact sizes.

    Refused with an :class:`ImageError`: a decode of more than ``max_megapixels`` (None: no limit),
    and a decompression bomb: a canvas over Pillow's ``MAX_IMAGE_PIXELS`` declared by a file with
    fewer than one byte per :data:`BOMB_PIXELS_PER_BYTE` pixels (real photos, even a flat grey
    JPEG, need far more). ``budget`` caps the pixels decoded at once across threads.

    ``path`` may be a seekable binary stream (an object fetched from a store), called ``name`` in
    messages.
    """
    stream = path if hasattr(path, "read") else None
    path = Path(path) if stream is None else Path(name or "stream")
    shown = str(path) if stream is None else (name or "stream")  # a URI keeps its '//'

    def file_size() -> int:
        if stream is not None:
            return stream.seek(0, os.SEEK_END)
        return path.stat().st_size if path.exists() else 0

    if stream is None and path.is_dir():
        raise ImageError(f"{shown}: is a folder, not an image file.")
    if stream is None and path.exists() and not path.is_file():
        raise ImageError(f"{shown}: not a regular file (a device, a pipe or a socket); pass image files.")
    try:
        with _open(path if stream is None else stream) as image:
            canvas = image.width * image.height
            if Image.MAX_IMAGE_PIXELS and canvas > Image.MAX_IMAGE_PIXELS \
                    and canvas > file_size() * BOMB_PIXELS_PER_BYTE:
                raise _bomb_error(shown, canvas, file_size())
            turned = _turned(image)
            displayed = (image.height, image.width) if turned else image.size
            need_width, need_height = _needed_size(displayed, min_size, longest_side)
            need = (need_height, need_width) if turned else (need_width, need_height)  # as stored
            progressive = bool(image.info.get("progressive") or image.info.get("progression"))
            if image.format in ("JPEG", "MPO") and not progressive and need != image.size:
                image.draft(None, need)
            decoded_pixels = canvas if progressive else image.width * image.height
            if max_megapixels is not None and decoded_pixels > max_megapixels * 1e6:
                if need == image.size:
                    why = "the full resolution is asked for"
                elif progressive:
                    why = "a progressive JPEG is decoded at full resolution"
                else:
                    why = f"{image.format or 'this format'} cannot be decoded at a reduced scale"
                raise ImageError(
                    f"{shown}: {displayed[0]}x{displayed[1]} is a {decoded_pixels / 1e6:.0f} MP decode ({why}), "
                    f"over {param('max_megapixels', f'{max_megapixels:g}')}; raise {param('max_megapixels')} or downscale the file."
                )
            with budget.hold(decoded_pixels) if budget else contextlib.nullcontext():
                image.load()
                factor = min(image.width // need[0], image.height // need[1])
                shrunk = _shrink(image, factor)
                rgb = to_rgb(ImageOps.exif_transpose(shrunk))
                rgb.load()
            return Decoded(rgb, displayed)
    except ImageError:
        raise
    except Image.DecompressionBombError:  # over twice Pillow's limit and not a JPEG: nothing can shrink it
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ImageError(
            f"{shown}: declares over {limit:.0f} MP, Pillow's hard limit (a possible decompression bomb, which "
            "would take gigabytes of memory); downscale it first."
        ) from None
    except UnidentifiedImageError:
        what = "an empty file" if file_size() == 0 else "not an image Pillow can read"
        raise ImageError(f"{shown}: {what}; pass jpg, png, bmp, gif, webp or tiff files.") from None
    except PermissionError:
        raise ImageError(f"{shown}: permission denied; make it readable (chmod +r).") from None
    except FileNotFoundError:
        raise ImageError(f"{shown}: no such file.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ImageError(f"{shown}: damaged or truncated image ({detail}); re-export or remove it.") from None


_REDUCIBLE_MODES = frozenset({"L", "RGB", "RGBA", "LA", "CMYK", "I", "F", "YCbCr"})


def _shrink(image: Image.Image, factor: int) -> Image.Image:
    """Box-filter ``image`` down ``factor`` times (``Image.reduce``; alpha premultiplied by Pillow).
    Modes it cannot reduce (palette, 1-bit, 16-bit) are made 8-bit RGB first."""
    if factor < 2:
        return image
    if image.mode not in _REDUCIBLE_MODES:
        info = image.info
        image = to_rgb(image)
        image.info = info  # keeps the EXIF orientation for exif_transpose
    return image.reduce(factor)


def fit_longest_side(image: Image.Image, longest_side: int | None) -> Image.Image:
    """``image`` resized (bilinear, antialiased) so that its longest side is ``longest_side``;
    unchanged when it is already that small or ``longest_side`` is None (never enlarged)."""
    if longest_side is None or max(image.size) <= longest_side:
        return image
    shrink = longest_side / max(image.size)
    size = (max(1, round(image.width * shrink)), max(1, round(image.height * shrink)))
    return image.resize(size, Image.BILINEAR)


GREY_CONVERSION = "grey: L = 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2 luma)"
"""How a colour picture becomes a one-channel model's input (Pillow's mode 'L'); manifest rows of a
grayscale model say so (``model_input``), and the overlay is still drawn on the colour picture."""


def model_input(rgb: np.ndarray | Image.Image, size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Resize (stretch, bilinear) to the model's (height, width); float32 in [0, 255]. A one-channel
    model gets the picture's luma (:data:`GREY_CONVERSION`)."""
    height, width = size
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    if channels == 1:
        image = image.convert("L")
        return np.asarray(image, dtype=np.float32)[..., None]
    return np.asarray(image, dtype=np.float32)


def decode_item(item: InputItem, input_size: tuple[int, int], channels: int, overlay_size: int | None,
                max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS, budget: PixelBudget | None = None,
                source: str | None = None) -> tuple[Image.Image, np.ndarray, tuple[int, int]]:
    """Decode one input once, at the scale needed: (the picture at the overlay's size, the model's
    float32 input, the original (width, height)). ``source``: where to read the file when that differs from ``item.path`` (an object-store URI
    is fetched whole and decoded from memory; messages still name ``item.path``). Raises
    :class:`ImageError`. Every command decodes its inputs here, under the same pixel budget."""
    if item.error:
        raise ImageError(f"{item.path}: {item.error}.")
    source = source or item.path
    if is_uri(source):
        picture = io.BytesIO(read_bytes(source))
        decoded = decode(picture, input_size, overlay_size, max_megapixels, budget, name=item.path)
    else:
        decoded = decode(source, input_size, overlay_size, max_megapixels, budget)
    prepared = model_input(decoded.image, input_size, channels)
    return fit_longest_side(decoded.image, overlay_size), prepared, decoded.original_size
