"""References of a similarity run: which embedding is read, and the reference vectors it is compared with.

``gradcam similar QUERY... --reference IMAGE|FOLDER --model M`` and ``gradcam_cli.explain(...,
reference=...)`` explain the cosine similarity of each query's embedding to a reference embedding
(:mod:`gradcam_cli.heads.similarity` has the score). This module computes the references once,
before the run, and turns a model spec into one whose head is that similarity.

The embedding (``model_output``) is the model's output (a ``keras.applications`` backbone built with
``include_top=False, pooling='avg'``, a user's embedding model), one output of a multi-output model,
or any inner layer named by its name or nested path (a classifier's penultimate layer, ``gap`` in
the bundled demo). A rank-4 embedding is mean-pooled over its positions. A classifier's softmax or
sigmoid output is refused: probabilities are no embedding, and the message names the layer that
feeds the classifier.

A reference is one image, or a folder whose images make a *concept*. A concept's vector is the mean
of its images' embeddings each normalised to length 1 first, renormalised: ``r = m / |m|`` with
``m = mean_i e_i / |e_i|``. Normalising first weighs every image of the concept the same (the
cosine ignores an embedding's length, so the concept should too; without it, the images whose
features fire hardest, often the brightest or busiest, would pull the concept towards them), and
it makes the score an average: ``cos(q, r) = mean_i cos(q, e_i) / |m|``, the query's mean cosine
similarity to the concept's images, up to the constant ``|m|``. Reference images go through the
queries' decode path (:func:`gradcam_cli.decode.decode_item`, the same sizes and pixel limit) and
the model's preprocessing, so an image given as both query and reference has similarity 1.

A :class:`Reference` is small (an (R, D) float32 array and some strings) and picklable: it travels
inside the run's options (:attr:`gradcam_cli.options.RunOptions.reference`) to the Ray engine's
actors, which apply it to the model they load (:meth:`Reference.apply`) without decoding the
reference images again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .decode import decode_item
from .errors import ImageError, OptionConflict, TargetError, UnsupportedModel, param
from .graph import (
    LayerInfo,
    has_graph,
    input_layer_of,
    iter_layers,
    outputs_of,
    select_output,
    upstream_of,
)
from .heads import SQUASHES, SimilarityHead, detect_head
from .heads.similarity import EMBEDDING_RANKS, pooled
from .inputs import IMAGE_EXTENSIONS, collect_inputs
from .models.spec import ModelSpec
from .options import DEFAULT_MAX_MEGAPIXELS, DEFAULT_OVERLAY_SIZE
from .probe import Probe

EMBEDDING_BATCH = 16  # reference images per forward pass
_NO_TARGET = LayerInfo("", None, None)  # computing an embedding taps no layer


@dataclass(frozen=True)
class EmbeddingSite:
    """Where a model's embedding is read: ``source`` 'output' (output ``output_index`` as the model
    returns it) or 'layer' (an inner ``layer``'s output); ``model_output``: what the spec's own
    ``model_output`` becomes; ``after``: an inner layer's downstream layers."""

    source: str
    layer: Any
    output_index: int
    name: str
    shape: tuple
    model_output: str | int | None
    after: tuple = ()


def _feeding_classifier(model, layer) -> str | None:
    """The layer a classifier reads (past Dropout and its own Softmax/Activation), to name in a hint."""
    import keras

    node = layer
    for _ in range(4):
        source = input_layer_of(model, node)
        if source is None:
            return None
        if not isinstance(source, (keras.layers.Dropout, keras.layers.Dense, keras.layers.Softmax,
                                   keras.layers.Activation, keras.layers.Identity)) or source is node:
            return source.name
        node = source
    return None


def _squash_of(layer) -> str | None:
    import keras

    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    return name if name in SQUASHES else None


def _refuse_classifier(model, name: str, layer, what: str) -> None:
    hint = _feeding_classifier(model, layer) if layer is not None else None
    also = f" (e.g. {param('model_output', hint)}, the layer its classifier reads)" if hint else ""
    raise UnsupportedModel(f"{model.name}: {name} is {what}, class probabilities rather than an embedding; name "
                           f"the embedding layer with {param('model_output', 'LAYER')}{also}.")


def embedding_site(model, embedding: str | int | None = None) -> EmbeddingSite:
    """The embedding ``embedding`` names (``model_output``: an output's name or index, or an inner
    layer's name or nested path; None: the model's single output), checked to be one."""
    outputs = outputs_of(model)
    text = None if embedding is None or str(embedding).strip() == "" else str(embedding).strip()
    names = [info.name for info in outputs]
    if text is None or text in names or (text.lstrip("-").isdigit() and 0 <= int(text) < len(outputs)):
        index = select_output(model, text)  # a multi-output model without a choice: one line listing them
        info = outputs[index]
        site = EmbeddingSite("output", info.layer, index, f"output '{info.name}'", tuple(info.shape),
                             None if text is None else text)
        try:
            detected = detect_head(model, index)
        except UnsupportedModel:
            detected = None
        if detected is not None and detected.source != "output" and detected.squash in SQUASHES:
            _refuse_classifier(model, site.name, info.layer, f"a {detected.describe()}")
    else:
        matches = [info for info in iter_layers(model) if text in (info.path, info.name)]
        if not matches:
            raise UnsupportedModel(f"{param('model_output', text)}: {model.name} has no output or layer of that name; "
                                   f"its outputs: {', '.join(names) or 'none'} ('gradcam layers --all' lists the layers).")
        if len(matches) > 1:
            raise UnsupportedModel(f"{param('model_output', text)} is ambiguous in {model.name}: "
                                   f"{', '.join(info.path for info in matches)}; give the full path.")
        info = matches[0]
        after: tuple = ()
        if has_graph(model):
            upstream = upstream_of(info.layer)
            after = tuple(other.layer for other in iter_layers(model) if id(other.layer) not in upstream)
        site = EmbeddingSite("layer", info.layer, 0, f"layer '{info.path}'", tuple(info.output_shape or ()),
                             None if len(outputs) < 2 else 0, after)
        squash = _squash_of(info.layer)
        if squash:
            _refuse_classifier(model, site.name, info.layer, f"a {squash}")
    if len(site.shape) not in EMBEDDING_RANKS or site.shape[-1] is None:
        raise UnsupportedModel(f"{model.name}: {site.name} has shape {site.shape}; an embedding is (batch, D), or a "
                               f"(batch, h, w, D) map, mean-pooled; pick another with {param('model_output')}.")
    return site


def similarity_head(site: EmbeddingSite, references: np.ndarray | None = None,
                    names: Sequence[str] = ()) -> SimilarityHead:
    """The similarity head reading ``site``, compared with ``references`` (R, D) unit vectors."""
    count = 1 if references is None else len(references)
    return SimilarityHead(source=site.source, layer=site.layer, squash="none", units=count,
                          output_index=site.output_index, output_name=site.name.split("'")[1],
                          head_layers=site.after, references=references, names=tuple(names),
                          dimensions=int(site.shape[-1]))


def embed(spec: ModelSpec, site: EmbeddingSite, pixels: np.ndarray) -> np.ndarray:
    """(n, D) float32 embeddings of ``pixels`` (n, H, W, C) in [0, 255] at the model's input size:
    the model's preprocessing, one forward pass per :data:`EMBEDDING_BATCH` images, through the
    explainer's probe (so a mixed-precision or subclassed model is read as when it is explained)."""
    from .backend import compile_step, to_numpy

    probe = Probe(spec.model, _NO_TARGET, similarity_head(site))
    batch = max(1, min(EMBEDDING_BATCH, len(pixels)))
    step = compile_step(lambda images: pooled(probe.logits(images)),
                        [((batch, *spec.input_size, spec.channels), "float32")])
    found = []
    for start in range(0, len(pixels), batch):
        chunk = np.asarray(spec.preprocess(np.array(pixels[start:start + batch], np.float32)), np.float32)
        filled = len(chunk)
        if filled < batch:  # padded, so that one compiled graph serves every chunk
            chunk = np.concatenate([chunk, np.zeros((batch - filled, *chunk.shape[1:]), np.float32)])
        found.append(to_numpy(step(chunk))[:filled])
    return np.concatenate(found).astype(np.float32)


def _unit(vector: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(vector))
    return None if not np.isfinite(norm) or norm <= 1e-12 else (vector / norm).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Reference:
    """The references of a similarity run, computed once (module docstring).

    ``vectors``: (R, D) float32 unit vectors, one per reference; ``names``: their labels (the file's
    name, a folder's name and ``/``); ``paths``: their real paths; ``counts``: the images each
    averages; ``embedding``: the ``model_output`` they were read at (None: the model's output);
    ``digest``: 12 hex digits of the vectors, names and embedding (part of a run's settings, so a
    rerun with another reference redoes its inputs).
    """

    vectors: np.ndarray = dataclasses.field(repr=False)
    names: tuple[str, ...]
    paths: tuple[str, ...]
    counts: tuple[int, ...]
    embedding: str | int | None
    digest: str

    @classmethod
    def compute(cls, spec: ModelSpec, sources: Sequence[str | os.PathLike], embedding: str | int | None = None,
                overlay_size: int | None = DEFAULT_OVERLAY_SIZE,
                max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS) -> Reference:
        """The references ``sources`` (image files or folders) name, read at ``embedding`` of
        ``spec``'s model; images decoded as the queries are (``overlay_size``, ``max_megapixels``).
        A source reached twice (its real path: two spellings, a symlink) is one reference. Raises :class:`TargetError` for a missing path, an empty folder, an unreadable image or
        an all-zero embedding."""
        unique: dict[str, str] = {}  # real path -> the first spelling: a reference given twice counts once, as inputs
        for source in sources:
            unique.setdefault(os.path.realpath(source), os.fspath(source))
        sources = list(unique.values())
        if not sources:
            raise TargetError(f"no reference given: pass {param('reference', 'IMAGE|FOLDER')}.")
        site = embedding_site(spec.model, embedding)
        vectors, names, paths, counts = [], [], [], []
        for source in sources:
            items = reference_items(source)
            pixels = np.stack([_decoded(item, spec, overlay_size, max_megapixels) for item in items])
            units = []
            for item, vector in zip(items, embed(spec, site, pixels), strict=True):
                unit = _unit(vector)
                if unit is None:
                    raise TargetError(f"{item.path}: its embedding ({site.name}) is all zeros, so it has no direction "
                                      f"to compare with; pick another reference or another {param('model_output')}.")
                units.append(unit)
            concept = _unit(np.mean(units, axis=0))
            if concept is None:
                raise TargetError(f"{source}: the mean of its images' embeddings is zero (they point in opposite "
                                  "directions); split the concept into several references.")
            folder = os.path.isdir(source)
            vectors.append(concept)
            names.append(Path(source).name + ("/" if folder else "") or source)
            paths.append(os.path.realpath(source))
            counts.append(len(units))
        stacked = np.stack(vectors).astype(np.float32)
        digest = hashlib.sha1(stacked.tobytes() + repr((names, site.name)).encode()).hexdigest()[:12]
        return cls(stacked, tuple(names), tuple(paths), tuple(counts), embedding, digest)

    @classmethod
    def of(cls, value: Any, spec: ModelSpec, embedding: str | int | None = None,
           overlay_size: int | None = DEFAULT_OVERLAY_SIZE,
           max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS) -> Reference:
        """``reference=`` as the API takes it (a path, a list of paths, or a :class:`Reference`) as
        a :class:`Reference` (computed unless given)."""
        if isinstance(value, Reference):
            if embedding is not None and str(embedding) != str(value.embedding):
                raise OptionConflict(f"{param('model_output', embedding)}: the reference was computed at "
                                     f"{value.embedding if value.embedding is not None else 'the model output'}; "
                                     "compute it again or drop one.")
            return value
        if isinstance(value, (str, os.PathLike)):
            return cls.compute(spec, [value], embedding, overlay_size, max_megapixels)
        if isinstance(value, (list, tuple)) and all(isinstance(v, (str, os.PathLike)) for v in value):
            return cls.compute(spec, list(value), embedding, overlay_size, max_megapixels)
        raise OptionConflict(f"{param('reference')} is {_kind(value)}: give an image or folder path, a list of them, "
                             "or a gradcam_cli.reference.Reference (pixels in memory: save them to a file first).")

    def apply(self, spec: ModelSpec) -> ModelSpec:
        """A copy of ``spec`` whose head is the similarity to these references (the model is shared)."""
        site = embedding_site(spec.model, self.embedding)
        if site.shape[-1] != self.vectors.shape[1]:
            raise TargetError(f"the reference embeddings have {self.vectors.shape[1]} dimensions and {spec.name}'s "
                              f"{site.name} has {site.shape[-1]}: compute the reference with this model.")
        applied = dataclasses.replace(spec, model_output=site.model_output)
        if "identity" in spec.__dict__:  # the same model: its content digest is not computed again
            applied.__dict__["identity"] = spec.__dict__["identity"]
        applied._head = similarity_head(site, self.vectors, self.names)
        return applied

    def entry(self, index: int) -> dict:
        """What a manifest row records of reference ``index``: its path and how many images it averages."""
        return {"path": self.paths[index], "images": self.counts[index]}

    def describe(self) -> str:
        """One line: ``cats/ (12 images, mean of unit embeddings), dog.jpg``."""
        return ", ".join(f"{name} ({count} images, mean of unit embeddings)" if count > 1 or name.endswith("/")
                         else name for name, count in zip(self.names, self.counts, strict=True))


def _kind(value: Any) -> str:
    """What a refused ``reference`` is, in a few words: never the whole of an array."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)} ({type(value).__name__})"
    if isinstance(value, (list, tuple)):
        wrong = next(v for v in value if not isinstance(v, (str, os.PathLike)))
        return f"{_article(type(value).__name__)} holding {_kind(wrong)}"
    text = repr(value)
    return text if len(text) <= 40 else _article(type(value).__name__)


def _article(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def reference_items(source: str) -> list:
    """The image files ``source`` names (one file, or a folder's images), checked to exist: called
    before a model loads, so that a mistyped reference fails at once."""
    if not os.path.exists(source):
        raise TargetError(f"{source}: no such reference image or folder; give {param('reference', 'IMAGE|FOLDER')} "
                          "an existing path.")
    items = collect_inputs([source])
    if not items:
        raise TargetError(f"{source}: the reference folder holds no image file (looked for "
                          f"{', '.join(sorted(IMAGE_EXTENSIONS))}); put the concept's images there or name one image.")
    return items


def _decoded(item, spec: ModelSpec, overlay_size: int | None, max_megapixels: float | None) -> np.ndarray:
    try:
        return decode_item(item, spec.input_size, spec.channels, overlay_size, max_megapixels)[1]
    except ImageError as error:
        message = str(error).rstrip(".")
        advice = "" if "; " in message else "; fix or remove it"  # the decoder's own advice, else one
        raise TargetError(f"reference image {message}{advice} (a concept must not silently lose an image).") from None


def similarity_explainer(model: Any, model_options: dict, options: Any) -> tuple[Any, Any]:
    """For :func:`gradcam_cli.explain` with ``reference``: the explainer of a similarity run and the run's
    options (a :class:`~gradcam_cli.options.RunOptions`) with the references computed (once a call; a
    :class:`Reference` given is reused) and, without ``classes``, every reference a target. The model
    is resolved and the explainer kept as the API keeps them (:mod:`gradcam_cli.model_cache`), per
    reference. ``model_options['model_output']`` names the embedding, which may be an inner layer."""
    from .explainer import Explainer
    from .model_cache import _kept_explainer, _kept_spec, _options_key
    from .models import resolve_model

    plain = {**model_options, "model_output": None}
    spec = _kept_spec(model, plain) if isinstance(model, (str, os.PathLike)) else resolve_model(model, **plain)
    reference = Reference.of(options.reference, spec, model_options.get("model_output"), options.overlay_size,
                             options.max_megapixels)
    every = options.classes is None and options.top_k == 1
    options = dataclasses.replace(options, reference=reference,
                                  classes=list(range(len(reference.names))) if every else options.classes)
    arguments = options.explainer_arguments()
    owner = spec if isinstance(model, (str, os.PathLike)) else model
    key = _options_key({**plain, **arguments, "reference": reference.digest})
    return _kept_explainer(owner, key, lambda: Explainer(reference.apply(spec), **arguments)), options
