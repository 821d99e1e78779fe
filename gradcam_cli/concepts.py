"""Deep Feature Factorization (Collins, Achanta and Süsstrunk, ECCV 2018): the concepts a layer sees.

The target layer's activations of ``n`` images, ``A`` of shape ``(n, h, w, c)``, are read as a matrix
of ``n h w`` positions by ``c`` channels and factorised by non-negative matrix factorisation::

    A+ ~ W H,   W (n h w, K) >= 0,   H (K, c) >= 0,   A+ = max(A, 0)

Each column of ``W`` reshaped to ``(h, w)`` per image is a *concept map* (where the concept is);
each row of ``H`` is the concept's *direction* in channel space (what it is). Nothing here needs a
gradient or a class: the concepts are what the layer separates on its own, and each is named
afterwards by the classes its direction scores highest.

The choices, where implementations differ:

- **Per image or per batch** (``concepts_per``): ``'image'`` factorises each image on its own (as
  pytorch-grad-cam's ``run_dff_on_image``), so each sheet shows that picture's own parts;
  ``'batch'`` factorises every image together (the paper's setting), so concept ``k`` is the same
  direction in every image and its maps co-segment the set. Per image, the ``n`` factorisations run
  together as one stack of matrix products, not a loop.
- **The algorithm**: Lee and Seung's multiplicative updates for the Frobenius norm (NIPS 2001),
  ``H <- H * (W^T A) / (W^T W H)``, ``W <- W * (A H^T) / (W H H^T)``, for :data:`NMF_ITERATIONS`
  iterations from a random start drawn with :data:`NMF_SEED` (scikit-learn's ``'random'``
  initialisation: ``|N(0, 1)| * sqrt(mean(A) / K)``), in float32 numpy on the whole matrix, each
  group's matrix scaled to a maximum of 1 first. The same inputs give the same concepts.
- **Negative activations** (a layer before its ReLU, transformer tokens) are clipped to 0: NMF
  factorises a non-negative matrix, and the positive part is what a ReLU network passes on.
  pytorch-grad-cam shifts each channel by its minimum instead, which makes a constant offset part
  of every concept. :attr:`Concepts.clipped` says how much was clipped.
- **Scale and order**: ``W H`` fixes each concept only up to a factor; here each concept's map peaks
  at 1 within its group, so its direction ``H_k`` is the reconstructed activation where the concept
  is strongest. Concepts are numbered by their share of the reconstruction, largest first.
- **Naming a concept**: the model after the target layer is run on a map holding ``H_k`` at every
  position, and the head reports its class values (softmax probabilities for a softmax head). For a
  ``GAP -> Dense`` head this is exactly ``softmax(H_k @ kernel + bias)``, the Dense layer as the
  model computes it; for any other head it is the same question asked of that head. Where the part
  after the layer cannot be run on its own (a skip connection around the layer, a layer inside a
  nested model, transformer tokens, mixed precision), the whole model is run on the group's first
  image with the layer's map replaced by the concept's, so whatever else the head reads comes from
  that image.

>>> from gradcam_cli.concepts import DeepFeatureFactorization      # doctest: +SKIP
>>> factorization = DeepFeatureFactorization(spec, concepts=3)      # doctest: +SKIP
>>> found = factorization(pixels)      # (n, H, W, 3) RGB in [0, 255]  # doctest: +SKIP
>>> found.maps.shape, found.directions.shape                         # doctest: +SKIP
((n, h, w, 3), (n, 3, c))
"""

from __future__ import annotations

import colorsys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import outputs, render
from .decode import decode_item
from .errors import ImageError, OptionConflict, param
from .inputs import InputItem
from .models.spec import ModelSpec
from .options import DEFAULT_MAX_MEGAPIXELS

NMF_ITERATIONS = 200
NMF_SEED = 0
CONCEPTS_PER = ("image", "batch")
DEFAULT_CONCEPTS = 5
DEFAULT_TOP_CLASSES = 2
_EPSILON = 1e-9  # the matrices are scaled to a maximum of 1, so this stays far below any real product


# --- the factorisation --------------------------------------------------------------------------

def nmf(
    matrices: np.ndarray,
    concepts: int,
    iterations: int = NMF_ITERATIONS,
    seed: int = NMF_SEED,
    initial: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative factorisation ``V ~ W H`` of a stack of matrices, all at once.

    Args:
        matrices: (G, m, c) non-negative; each of the G matrices is factorised on its own.
        concepts: K, the inner dimension.
        iterations: multiplicative updates (Lee and Seung 2001, Frobenius norm), no early stop.
        seed: the random start, scikit-learn's ``'random'`` rule per matrix.
        initial: (W (G, m, K), H (G, K, c)) to start from instead.

    Returns:
        W (G, m, K) and H (G, K, c), float32, non-negative; the products of each pair approximate
        each matrix. Every matrix is scaled to a maximum of 1 while it is factorised and ``H`` is
        scaled back, so the result does not depend on the activations' units.
    """
    matrices = np.asarray(matrices, np.float32)
    if matrices.ndim != 3:
        raise ValueError(f"nmf factorises a (G, m, c) stack of matrices, not shape {matrices.shape}")
    if matrices.size and matrices.min() < 0:
        raise ValueError("nmf factorises non-negative matrices; clip or shift the negative values first")
    groups, rows, channels = matrices.shape
    peaks = matrices.reshape(groups, -1).max(axis=1, initial=0.0)
    scales = np.where(peaks > 0, peaks, 1.0).astype(np.float32)[:, None, None]
    scaled = matrices / scales
    if initial is None:
        rng = np.random.default_rng(seed)
        start = np.sqrt(scaled.mean(axis=(1, 2)) / concepts).astype(np.float32)[:, None, None]
        weights = (start * np.abs(rng.standard_normal((groups, rows, concepts)))).astype(np.float32)
        directions = (start * np.abs(rng.standard_normal((groups, concepts, channels)))).astype(np.float32)
    else:
        weights = np.array(initial[0], np.float32)
        directions = np.array(initial[1], np.float32) / scales
    transposed = np.ascontiguousarray(np.swapaxes(scaled, 1, 2))  # (G, c, m): numpy's stacked matmul
    for _ in range(iterations):                                      # is fastest on contiguous operands
        gram = np.swapaxes(weights, 1, 2) @ weights  # W^T W, (G, K, K)
        directions *= np.swapaxes(transposed @ weights, 1, 2) / (gram @ directions + _EPSILON)
        across = np.swapaxes(directions, 1, 2)  # H^T, (G, c, K)
        weights *= (scaled @ across) / (weights @ (directions @ across) + _EPSILON)
    return weights, directions * scales


def relative_error(matrices: np.ndarray, weights: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """(G,) ``||V - W H|| / ||V||`` (Frobenius) per matrix; 0 for an all-zero matrix."""
    matrices = np.asarray(matrices, np.float32)
    residual = np.linalg.norm((matrices - weights @ directions).reshape(len(matrices), -1), axis=1)
    norms = np.linalg.norm(matrices.reshape(len(matrices), -1), axis=1)
    return np.where(norms > 0, residual / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)


def peak_normalized(weights: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each concept's map scaled to peak at 1 and its direction by the inverse, ``W H`` unchanged,
    then the concepts ordered by their share of the reconstruction, largest first."""
    peaks = weights.max(axis=1)  # (G, K)
    safe = np.where(peaks > 0, peaks, 1.0)
    weights = weights / safe[:, None, :]
    directions = directions * safe[:, :, None]
    mass = weights.sum(axis=1) * directions.sum(axis=2)  # (G, K): each concept's part of sum(W H)
    order = np.argsort(-mass, axis=1, kind="stable")
    weights = np.take_along_axis(weights, order[:, None, :], axis=2)
    directions = np.take_along_axis(directions, order[:, :, None], axis=1)
    return weights.astype(np.float32), directions.astype(np.float32)


# --- the concepts of a model's layer ------------------------------------------------------------

@dataclass
class Concepts:
    """The factorisation of one batch of images (module docstring).

    ``maps``: (n, h, w, K) float32, ``W`` per image; each concept peaks at 1 within its group.
    ``directions``: (G, K, c) float32, ``H`` per group: G = n per image, 1 per batch.
    ``scores``: (G, K, classes) float32, what the head reports for each direction.
    ``errors``: (G,) relative reconstruction error ``||A+ - W H|| / ||A+||``.
    ``shares``: (n, K) each concept's share of the image's reconstructed activation (rows sum to 1,
    or 0 for an image whose activations are all zero).
    ``clipped``: the share of the activations' absolute sum that was negative, clipped to 0.
    """

    maps: np.ndarray
    directions: np.ndarray
    scores: np.ndarray
    errors: np.ndarray
    shares: np.ndarray
    clipped: float
    layer: str
    concepts_per: str

    def group(self, image: int) -> int:
        """The factorisation image ``image`` belongs to."""
        return image if self.concepts_per == "image" else 0

    def top_classes(self, image: int, concept: int, count: int) -> list[tuple[int, float]]:
        """(class index, reported value) of the ``count`` classes concept ``concept`` scores highest."""
        values = self.scores[self.group(image), concept]
        ranked = np.argsort(-values, kind="stable")[:count]
        return [(int(index), float(values[index])) for index in ranked]


class DeepFeatureFactorization:
    """The concepts of ``spec``'s target layer in batches of images (module docstring).

    Args:
        spec: the model.
        concepts: K, the concepts per factorisation.
        layer: the target layer (a name or nested path); None: the automatic pick, as the CAM methods'.
        batch_size: images per forward pass.
        iterations, seed: of the NMF (:func:`nmf`).
    """

    def __init__(self, spec: ModelSpec, concepts: int = DEFAULT_CONCEPTS, layer: str | None = None,
                 batch_size: int = 16, iterations: int = NMF_ITERATIONS, seed: int = NMF_SEED):
        from . import backend
        from .layers import auto_target_layer, find_layer
        from .probe import Probe

        backend.check_supported()
        if int(concepts) < 1:
            raise OptionConflict(f"{param('concepts', concepts)} asks for no concept; use 1 or more.")
        self.spec = spec
        self.concepts = int(concepts)
        self.batch_size = max(1, int(batch_size))
        self.iterations = int(iterations)
        self.seed = int(seed)
        head = spec.head
        self.target = find_layer(spec.model, layer) if layer else auto_target_layer(spec.model, head=head)
        self.probe = Probe(spec.model, self.target, head)

    @property
    def layer_name(self) -> str:
        return self.target.path

    def activations(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the target layer's (n, h, w, c) activations, the preprocessed inputs) for RGB pixels in
        [0, 255] at the model's input size, in forward passes of ``batch_size`` images."""
        from keras import ops

        inputs = np.asarray(self.spec.preprocess(np.array(pixels, np.float32)), np.float32)
        chunks = []
        for start in range(0, len(inputs), self.batch_size):
            activations, _ = self.probe(ops.convert_to_tensor(inputs[start : start + self.batch_size]))
            chunks.append(np.asarray(ops.convert_to_numpy(ops.cast(activations, "float32"))))
        return np.concatenate(chunks), inputs

    def __call__(self, pixels: np.ndarray, concepts_per: str = "image") -> Concepts:
        """Factorise the activations of ``pixels`` ((n, H, W, C) RGB in [0, 255] at the model's input
        size, not yet preprocessed): each image on its own (``concepts_per='image'``) or all together
        (``'batch'``)."""
        if concepts_per not in CONCEPTS_PER:
            raise OptionConflict(f"{param('concepts_per', concepts_per)} is neither 'image' nor 'batch'.")
        activations, inputs = self.activations(pixels)
        images, height, width, channels = activations.shape
        groups = images if concepts_per == "image" else 1
        rows = height * width * images // groups
        if self.concepts > min(rows, channels):
            where = "per image" if concepts_per == "image" else f"for {images} image(s)"
            more = concepts_per == "image" and rows < channels  # positions are the limit, and a batch has more
            fix = f", or use {param('concepts_per', 'batch')}" if more else ""
            raise OptionConflict(
                f"{param('concepts', self.concepts)} is more than layer '{self.target.path}' can hold: its "
                f"{height}x{width}x{channels} map has {rows} positions {where} and {channels} channels; "
                f"ask for at most {min(rows, channels)}{fix}.")
        magnitude = float(np.abs(activations).sum())
        clipped = float(-np.minimum(activations, 0).sum() / magnitude) if magnitude > 0 else 0.0
        matrices = np.maximum(activations, 0).reshape(groups, rows, channels)
        weights, directions = nmf(matrices, self.concepts, self.iterations, self.seed)
        errors = relative_error(matrices, weights, directions)
        weights, directions = peak_normalized(weights, directions)
        maps = weights.reshape(images, height, width, self.concepts)
        own = directions if groups == images else np.repeat(directions, images, axis=0)  # (n, K, c)
        mass = maps.sum(axis=(1, 2)) * own.sum(axis=2)  # (n, K): each concept's part of the image's sum(W H)
        totals = mass.sum(axis=1, keepdims=True)
        shares = np.where(totals > 0, mass / np.where(totals > 0, totals, 1.0), 0.0).astype(np.float32)
        scores = self.direction_scores(directions, (height, width), inputs if groups == images else inputs[:1])
        return Concepts(maps, directions, scores, errors, shares, clipped, self.target.path, concepts_per)

    def direction_scores(self, directions: np.ndarray, size: tuple[int, int], inputs: np.ndarray) -> np.ndarray:
        """(G, K, classes): what the head reports for a map holding each direction at every position;
        ``inputs``: each group's first preprocessed image, read only where the model after the layer
        cannot run on its own (module docstring)."""
        from keras import ops

        groups, count, channels = directions.shape
        flat = directions.reshape(groups * count, channels)
        tail = self.probe.tail()
        reported = []
        for start in range(0, len(flat), self.batch_size):
            chunk = flat[start : start + self.batch_size]
            maps = np.ascontiguousarray(np.broadcast_to(chunk[:, None, None, :], (len(chunk), *size, channels)))
            if tail is not None:
                raw = tail(maps)
            else:
                images = ops.convert_to_tensor(inputs[np.arange(start, start + len(chunk)) // count])
                raw = self.probe.logits(images, replace=lambda spatial, maps=maps: ops.cast(maps, spatial.dtype))
            head = self.probe.head
            values = head.reported(raw, head.regions(raw, "pred"))
            reported.append(np.asarray(ops.convert_to_numpy(values), np.float32))
        return np.concatenate(reported).reshape(groups, count, -1)


# --- the sheet ----------------------------------------------------------------------------------

TILE = 224
TEXT = 15  # pixels per caption line
GAP = 4
SHEET_COLUMNS = 6
CONCEPT_OPACITY = 0.85  # a concept's colour where its map peaks
FADE = 0.5  # the picture under the concepts: its grey, half-way to white

_TABLEAU = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def concept_colours(count: int) -> np.ndarray:
    """(count, 3) uint8: ten well-separated colours, then hues spaced by the golden angle."""
    colours = list(_TABLEAU[:count])
    for index in range(len(colours), count):
        hue = (index * 0.618033988749895) % 1.0
        colours.append(tuple(round(255 * v) for v in colorsys.hsv_to_rgb(hue, 0.75, 0.9)))
    return np.asarray(colours, np.uint8).reshape(count, 3)


def concept_overlays(picture: Image.Image, maps: np.ndarray) -> tuple[Image.Image, list[Image.Image]]:
    """(the picture with every concept coloured where it dominates, one picture per concept with its
    map in its colour). ``maps``: (h, w, K) on the group's scale (peak 1), upsampled bilinearly. The
    picture is shown faded to grey so that the colours read; a pixel's colour opacity is
    :data:`CONCEPT_OPACITY` times its concept's value there, so where no concept is strong the
    picture shows through."""
    size = (picture.height, picture.width)
    values = np.clip(np.stack([render.upsample(maps[..., k], size) for k in range(maps.shape[-1])], axis=-1), 0, 1)
    colours = concept_colours(maps.shape[-1]).astype(np.float32)
    grey = np.asarray(picture.convert("L"), np.float32)[..., None]
    base = FADE * 255.0 + (1 - FADE) * grey

    def blend(strength: np.ndarray, colour: np.ndarray) -> Image.Image:
        opacity = CONCEPT_OPACITY * strength[..., None]
        return Image.fromarray(np.round(base * (1 - opacity) + colour * opacity).astype(np.uint8))

    dominant = values.argmax(axis=-1)
    combined = blend(values.max(axis=-1), colours[dominant])
    return combined, [blend(values[..., k], colours[k]) for k in range(maps.shape[-1])]


def concept_sheet(picture: Image.Image, maps: np.ndarray, captions: list[list[str]], title: str) -> Image.Image:
    """One image's sheet: a title line, then tiles of the picture, all concepts together, and each
    concept (its colour swatch, its name and share on the first caption line, its classes below), in
    rows of at most :data:`SHEET_COLUMNS` tiles as even as they can be.

    ``captions``: per concept, its lines of text (the first one beside the swatch)."""
    count = maps.shape[-1]
    scale = TILE / max(picture.width, picture.height)
    picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                             Image.BILINEAR)
    combined, singles = concept_overlays(picture, maps)
    colours = concept_colours(count)
    tiles = [(picture, ["picture"], None), (combined, ["all concepts"], None)]
    tiles += [(single, captions[k], tuple(int(v) for v in colours[k])) for k, single in enumerate(singles)]
    lines = max(len(text) for _, text, _ in tiles)
    rows = -(-len(tiles) // SHEET_COLUMNS)
    columns = -(-len(tiles) // rows)
    cell_width, cell_height = picture.width + GAP, picture.height + GAP + lines * TEXT
    header = TEXT + 10
    font = render.font(13)
    width = max(columns * cell_width + GAP, round(font.getlength(title)) + 12)
    sheet = Image.new("RGB", (width, header + rows * cell_height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 5), title, fill="black", font=font)
    for index, (image, text, colour) in enumerate(tiles):
        left = GAP + (index % columns) * cell_width
        top = header + (index // columns) * cell_height
        sheet.paste(image, (left, top))
        below = top + picture.height + 3
        for line, words in enumerate(text):
            indent = 0
            if colour is not None and line == 0:
                draw.rectangle((left, below + 2, left + 11, below + 13), fill=colour)
                indent = 16
            draw.text((left + indent, below + line * TEXT), words, fill="black", font=font)
    return sheet


# --- the command's job --------------------------------------------------------------------------

@dataclass
class ConceptRun:
    """What :func:`write_concepts` did: the files per image, the failures (input, one line), the layer."""

    layer: str = ""
    sheets: list[Path] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def output_names(output_dir: Path, stem: str) -> dict[str, Path]:
    """The sheet and the concept maps of one image (the directions too, per image)."""
    return {suffix: output_dir / f"{stem}.{suffix}" for suffix in
            ("concepts.png", "concept_maps.npy", "concept_directions.npy")}


def write_concepts(
    spec: ModelSpec,
    items: list[InputItem],
    output_dir: str | Path,
    concepts: int = DEFAULT_CONCEPTS,
    concepts_per: str = "image",
    layer: str | None = None,
    top_k: int = DEFAULT_TOP_CLASSES,
    batch_size: int = 16,
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
    on_image: Callable[[str, Concepts, int], None] | None = None,
) -> ConceptRun:
    """Factorise the inputs' activations and write, per image, ``STEM.concepts.png`` (the sheet),
    ``STEM.concept_maps.npy`` ((h, w, K) float32) and, per image, ``STEM.concept_directions.npy``
    ((K, c)); per batch the directions are one ``concept_directions.npy``. ``STEM`` is the input's
    name with its extension (``cat_jpg``), as ``gradcam explain`` names its outputs.

    Args:
        spec: the model.
        items: the inputs; one that cannot be decoded is a failure and the rest go on.
        output_dir: a local folder, made if missing.
        concepts: K.
        concepts_per: 'image' (each image on its own, in groups of ``batch_size``) or 'batch' (all
            inputs together).
        layer: the target layer; None: automatic.
        top_k: classes named per concept on the sheet.
        batch_size: images per forward pass and, per image, per stack of factorisations.
        max_megapixels: the decode limit.
        on_image: called after each image's files are written, with (input path, its batch's
            Concepts, the image's index in it).
    """
    started = time.perf_counter()
    if concepts_per not in CONCEPTS_PER:
        raise OptionConflict(f"{param('concepts_per', concepts_per)} is neither 'image' nor 'batch'.")
    if int(top_k) < 1:
        raise OptionConflict(f"{param('top_k', top_k)} names no class; use 1 or more.")
    output_dir = Path(output_dir)
    factorization = DeepFeatureFactorization(spec, concepts, layer, batch_size)
    run = ConceptRun(layer=factorization.layer_name)
    stems = dict(zip((item.real for item in items), outputs.unique_stems(item.relative for item in items),
                     strict=True))
    group = batch_size if concepts_per == "image" else len(items)
    for start in range(0, len(items), group):
        decoded = []
        for item in items[start : start + group]:
            try:
                picture, prepared, _ = decode_item(item, spec.input_size, spec.channels, TILE, max_megapixels)
                decoded.append((item, picture, prepared))
            except ImageError as error:
                run.failures.append((item.path, str(error)))
        if not decoded:
            continue
        found = factorization(np.stack([prepared for _, _, prepared in decoded]), concepts_per)
        if concepts_per == "batch":
            outputs.write_file(output_dir / "concept_directions.npy", render.npy_bytes(found.directions[0]),
                               "output_dir")
        for index, (item, picture, _) in enumerate(decoded):
            names = output_names(output_dir, stems[item.real])
            sheet = concept_sheet(picture, found.maps[index], sheet_captions(spec, found, index, top_k),
                                  sheet_title(Path(item.path).name, found, index))
            outputs.write_file(names["concepts.png"], render.png_bytes(np.asarray(sheet)), "output_dir")
            outputs.write_file(names["concept_maps.npy"], render.npy_bytes(found.maps[index]), "output_dir")
            if concepts_per == "image":
                outputs.write_file(names["concept_directions.npy"], render.npy_bytes(found.directions[index]),
                                   "output_dir")
            run.sheets.append(names["concepts.png"])
            if on_image is not None:
                on_image(item.path, found, index)
    run.seconds = time.perf_counter() - started
    return run


def describe_concept(spec: ModelSpec, found: Concepts, image: int, concept: int, top_k: int) -> str:
    """``circle 97.1%, square 2.0%``: the classes a concept's direction scores highest."""
    return ", ".join(spec.head.format_prediction(spec.label(index), value)
                     for index, value in found.top_classes(image, concept, top_k))


def sheet_captions(spec: ModelSpec, found: Concepts, image: int, top_k: int) -> list[list[str]]:
    """Per concept: ``concept 1 (62% of the map)`` and its ``top_k`` classes, a line each."""
    captions = []
    for concept in range(found.maps.shape[-1]):
        lines = [f"concept {concept + 1}: {found.shares[image, concept]:.0%} of the activation"]
        lines += [spec.head.format_prediction(spec.label(index), value)[:34]
                  for index, value in found.top_classes(image, concept, top_k)]
        captions.append(lines)
    return captions


def sheet_title(name: str, found: Concepts, image: int) -> str:
    height, width, count = found.maps.shape[1:]
    channels = found.directions.shape[-1]
    per = "this image" if found.concepts_per == "image" else f"all {len(found.maps)} images together"
    return (f"{name[:40]}: {count} concepts of {found.layer} ({height}x{width}x{channels}), factorised over {per}; "
            f"reconstruction error {found.errors[found.group(image)]:.1%}")
