"""``gradcam compare``: one sheet, a row per (image, class) and a column per method, labelled."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import outputs, render
from .api import explain_with_options
from .boxes import pick_for_batch
from .decode import model_input
from .errors import ImageError, OptionConflict, param
from .methods import check_tuning, tuning_for
from .models.spec import ModelSpec
from .options import RunOptions
from .pictures import as_images
from .targets import empty_region_message

TILE = 224
CAPTION = 22
SHEET_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def sheet_format(output: str | Path) -> str:
    """The file format the sheet's name asks for (PNG or JPEG), checked before any work."""
    suffix = Path(output).suffix.lower()
    if suffix not in SHEET_FORMATS:
        raise OptionConflict(f"{output}: the sheet is written as PNG or JPEG; name it .png, .jpg or .jpeg.")
    return SHEET_FORMATS[suffix]


def fit_tile(picture: np.ndarray, size: int = TILE) -> Image.Image:
    """``picture`` scaled to fit a ``size`` square with its aspect ratio kept, centred on white."""
    image = Image.fromarray(np.asarray(picture))
    scale = size / max(image.width, image.height)
    shape = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    tile = Image.new("RGB", (size, size), "white")
    tile.paste(image.resize(shape, Image.BILINEAR), ((size - shape[0]) // 2, (size - shape[1]) // 2))
    return tile


def compare_sheet(
    spec: ModelSpec,
    images: list[str],
    methods: list[str],
    sheet_path: str | Path,
    options: RunOptions | None = None,
) -> tuple[Path, list[tuple[str, str]]]:
    """Explain ``images`` with every method and write the comparison sheet to ``sheet_path``; return its
    path and the (path, one-line reason) of what went wrong: files that could not be read (left out
    of the sheet) and, for a segmentation model, classes whose region is empty (their tiles show no
    map and say so).

    One row per image and explained class (each of ``options.classes``, or the top-1 class); a
    detector's: one row per explained box (``options.min_score``, ``options.boxes``), its overlays
    showing the box, captioned with its label and score; an image without a box is left out and
    listed in the failures. guided-gradcam's column shows its guided saliency image, every other
    method its overlay. ``options``: the run's layer, classes, opacity, colour map, region ... (its
    ``method`` is replaced by each of ``methods``).
    """
    options = options or RunOptions()
    if options.reference is not None:  # a similarity (gradcam_cli.reference): computed once for every method
        from .reference import Reference

        embedding = None if isinstance(options.reference, Reference) else spec.model_output
        options = replace(options, reference=Reference.of(options.reference, spec, embedding, options.overlay_size,
                                                          options.max_megapixels))
    if not methods:
        raise OptionConflict(f"{param('methods')} names no method; give one or more, comma-separated.")
    file_format = sheet_format(sheet_path)
    outputs.check_file_writable(sheet_path, "sheet_path")
    arrays, paths, unreadable = as_images(images, spec.input_size, TILE, options.max_megapixels)  # decoded once, at tile size, for every method
    failures = [(path, f"{reason.rstrip('.')}; left out of the sheet.") for path, reason in unreadable]
    check_tuning(methods, options.tuning)
    if spec.head.takes_boxes:  # a detector: the images with a box to explain, found once, refusals by file name
        arrays, paths, refused = _with_boxes(spec, arrays, paths, replace(options, method=methods[0],
                                                                          tuning=tuning_for(methods[0], options.tuning)))
        failures += refused
    results = [explain_with_options(spec, arrays, replace(options, method=m, tuning=tuning_for(m, options.tuning)))
               for m in methods]
    first = results[0]
    rows = [(image, target_index) for image in range(len(first.images)) for target_index in range(first.class_ids.shape[1])
            if first.class_ids[image, target_index] >= 0]  # a detector's image may have fewer boxes than the most
    empty = set()
    if first.region_pixels is not None:  # the region depends on the class and the image, not the method
        chosen = options.region or "pred"
        region = chosen if chosen in ("pred", "all") else "mask"
        for image, target_index in rows:
            if first.region_pixels[image, target_index] == 0:
                empty.add((image, target_index))
                source = paths[image] or f"image {image}"
                failures.append((source, empty_region_message(source, region, first.label(image, target_index))))
    columns = len(methods) + 1
    sheet = Image.new("RGB", (columns * TILE, len(rows) * (TILE + CAPTION) + CAPTION), "white")
    draw = ImageDraw.Draw(sheet)
    font = render.font()
    draw.text((4, 3), "original", fill="black", font=font)
    for column, method in enumerate(methods, start=1):
        draw.text((column * TILE + 4, 3), method, fill="black", font=font)
    for row, (image, target_index) in enumerate(rows):
        top = CAPTION + row * (TILE + CAPTION)
        name = Path(paths[image]).name if paths[image] else f"image {image}"
        if first.boxes is not None:
            name = f"{name[:20]} box {first.boxes[image][target_index]['box_index']}"
        draw.text((4, top + 3), f"{name[:28]}", fill="black", font=font)
        sheet.paste(fit_tile(first.images[image]), (0, top + CAPTION))
        for column, result in enumerate(results, start=1):
            if result.saliency is not None:
                picture = result.guided(image, target_index)
            else:
                picture = result.overlay(image, target_index, colormap=options.colormap)
            sheet.paste(fit_tile(picture), (column * TILE, top + CAPTION))
            class_index = result.class_ids[image, target_index]
            value = result.probabilities[image, target_index if result.boxes is not None else class_index]
            text = result.spec.head.format_prediction(result.label(image, target_index), float(value))
            if (image, target_index) in empty:
                text += " (empty region)"
            draw.text((column * TILE + 4, top + 3), text, fill="black", font=font)
    sheet_path = Path(sheet_path)
    data = render.png_bytes(np.asarray(sheet)) if file_format == "PNG" else render.jpeg_bytes(sheet, quality=92)
    outputs.write_file(sheet_path, data, "sheet_path")
    return sheet_path, failures


def _with_boxes(spec: ModelSpec, arrays: list[np.ndarray], paths: list[str | None],
                options: RunOptions) -> tuple[list[np.ndarray], list[str | None], list[tuple[str, str]]]:
    """A detector's pictures that have a box to explain, their paths, and (path, one-line reason) for
    the others: the detections are made here, where the files' names are known, so a refusal names
    its file; each method's run then finds the same boxes on the pictures kept."""
    from .api import explainer_for

    explainer = explainer_for(spec, {}, options)
    prepared = np.stack([model_input(picture, spec.input_size, spec.channels) for picture in arrays])
    sources = [path or f"image {position}" for position, path in enumerate(paths)]
    kept, _, refused = pick_for_batch(explainer.detect(prepared), sources, options.min_score, options.boxes,
                                      explainer.resolve_targets(options.classes, options.top_k))
    if not kept:
        raise ImageError(f"no image to compare: {refused[0][1]}" if len(refused) == 1 else
                         f"no image has a box to explain: {refused[0][1]} (and {len(refused) - 1} more)")
    return ([arrays[i] for i in kept], [paths[i] for i in kept],
            [(source, f"{reason.rstrip('.')}; left out of the sheet.") for source, reason in refused])
