"""Finding inputs and decoding them into RGB arrays.

Every decode problem becomes an :class:`ImageError` with a one-line reason, so a batch can record
it and move on. Pillow's decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``, 89 MP by default) is
turned into such an error too, at its warning level rather than only at twice the limit.
"""

from __future__ import annotations

import glob
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
ImageFile.LOAD_TRUNCATED_IMAGES = False


@dataclass(frozen=True)
class InputItem:
    """One input file and the name its outputs are derived from (relative, '/'-separated)."""

    path: str
    relative: str
    error: str | None = None  # set when the argument itself is bad (missing, unreadable folder)


def _walk(folder: Path, recursive: bool) -> tuple[list[Path], list[InputItem]]:
    files: list[Path] = []
    problems: list[InputItem] = []
    if not recursive:
        try:
            entries = sorted(folder.iterdir())
        except OSError as error:
            return [], [InputItem(str(folder), folder.name, f"cannot list folder: {error.strerror}")]
        return [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS], problems
    visited: set[tuple[int, int]] = set()

    def onerror(error: OSError) -> None:
        problems.append(InputItem(str(error.filename), Path(str(error.filename)).name, f"cannot list folder: {error.strerror}"))

    for root, dirs, names in os.walk(folder, followlinks=True, onerror=onerror):
        try:
            stat = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (stat.st_dev, stat.st_ino) in visited:  # a symlink loop: each real folder once
            dirs[:] = []
            continue
        visited.add((stat.st_dev, stat.st_ino))
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(path)
    return files, problems


def collect_inputs(arguments: list[str], recursive: bool = False) -> list[InputItem]:
    """Files, folders (``recursive`` descends) and glob patterns, in a stable order.

    Folders contribute files with an image extension; files named explicitly are always tried.
    Missing paths come back as items with ``error`` set.
    """
    items: list[InputItem] = []
    seen: set[str] = set()

    def add(path: Path, relative: str, error: str | None = None) -> None:
        key = os.path.abspath(path)
        if key in seen:
            return
        seen.add(key)
        items.append(InputItem(str(path), relative, error))

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            files, problems = _walk(path, recursive)
            for file in files:
                add(file, file.relative_to(path).as_posix())
            items.extend(problems)
        elif path.exists() or path.is_symlink():
            add(path, path.name)
        elif glob.has_magic(argument):
            matches = sorted(glob.glob(argument, recursive=recursive))
            if not matches:
                add(path, path.name, "no file matches this pattern")
            for match in matches:
                if Path(match).is_file():
                    add(Path(match), Path(match).name)
        else:
            add(path, path.name, "no such file or folder")
    return items


def _to_rgb(image: Image.Image) -> Image.Image:
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


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 RGB array, EXIF orientation applied, first frame only."""
    return np.asarray(open_rgb(path))


def open_rgb(path: str | os.PathLike | BinaryIO, name: str | None = None) -> Image.Image:
    """Decode ``path`` to a loaded 8-bit RGB Pillow image (see :func:`load_image`). ``path`` may
    be a binary stream (an object fetched from a store), named ``name`` in messages."""
    stream = path if hasattr(path, "read") else None
    path = Path(path) if stream is None else Path(name or "stream")
    shown = str(path) if stream is None else (name or "stream")  # a URI keeps its '//'
    if stream is None and path.is_dir():
        raise ImageError(f"{shown}: is a folder, not an image file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path if stream is None else stream) as image:
                image.seek(0)
                image = ImageOps.exif_transpose(image)
                rgb = _to_rgb(image)
                rgb.load()
                return rgb
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ImageError(
            f"{shown}: over Pillow's {limit:.0f} MP limit (a possible decompression bomb, which would take "
            "gigabytes of memory); downscale it first."
        ) from None
    except UnidentifiedImageError:
        if stream is not None:
            size = stream.seek(0, os.SEEK_END)
        else:
            size = path.stat().st_size if path.exists() else 0
        what = "an empty file" if size == 0 else "not an image Pillow can read"
        raise ImageError(f"{shown}: {what}; pass jpg, png, bmp, gif, webp or tiff files.") from None
    except PermissionError:
        raise ImageError(f"{shown}: permission denied; make it readable (chmod +r).") from None
    except FileNotFoundError:
        raise ImageError(f"{shown}: no such file.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ImageError(f"{shown}: damaged or truncated image ({detail}); re-export or remove it.") from None


def model_input(rgb: np.ndarray | Image.Image, size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Resize (stretch, bilinear) to the model's (height, width); float32 in [0, 255]."""
    height, width = size
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    if channels == 1:
        image = image.convert("L")
        return np.asarray(image, dtype=np.float32)[..., None]
    return np.asarray(image, dtype=np.float32)
