"""Target-layer search: the automatic rule, ``--layer`` look-ups and the candidates ``gradcam layers`` lists.

Layer choice follows a rule on output shapes rather than layer types (type checks break on Keras 3,
where SeparableConv2D no longer subclasses the private conv base): walking back from the output,
the last layer whose output is rank 4 ``(batch, h, w, c)`` with ``h * w > 1`` and which is not a
pooling layer, looking inside nested models. torchcam's locate-candidate-layer reads output shapes
in the same spirit.

Vision Transformers have no spatial map but a token sequence ``(batch, prefix + h * w, d)``. With
class-token pooling the final patch tokens never reach the output (their gradients are zero), so the
tap is in the last transformer block, where patch tokens still reach the class token through its
attention. In a pre-norm block (``x + attention(norm1(x))``, ViT, DeiT, keras-hub's encoders) the
automatic tap is the output of the block's first normalisation, the place pytorch-grad-cam's ViT
recipe taps (``blocks[-1].norm1``); the tokens *entering* the block, which this tool tapped before,
reach the class token only through that normalisation, which undoes any scaling of a token: the
derivative of the score along a token is zero, so ``sum_k g_k A_k`` vanishes at every position and
HiResCAM's map there is rounding noise (about 1e-8 of its terms on a keras-hub ViT;
``benchmarks/token_model.py`` prints both taps' figures on a trained ViT). A post-norm block, or one
whose normalisation is not found, is tapped at its input. Both taps are listed by ``gradcam layers``
and reachable with ``--layer``: the block's name for its input, ``BLOCK/NORM`` for the normalisation.

A transformer block is any layer holding an attention layer (``MultiHeadAttention``, a class named
``...Attention``) among its own sub-layers, found also inside layers such as keras-hub's encoders,
which are not graph nodes. The prefix tokens (class, distillation, registers) are dropped and the rest
reshaped row by row to the patch grid, whose shape follows the input's aspect ratio
(:func:`token_grid`); a count that forms no grid is an error. Methods see a ``(batch, h, w, d)`` map
and never know it came from tokens.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

from .errors import LayerNotFound, OptionConflict, UnsupportedModel, param, phrase
from .graph import (
    PATH_SEP,
    LayerInfo,
    is_model,
    iter_layers,
    model_channels,
    model_input_size,
    nested_models,
    sublayers,
    upstream_of,
    walk_back,
)
from .hooks import intercept, intercept_input
from .probe import MAX_PREFIX_TOKENS, token_grid


def _is_attention(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.MultiHeadAttention) or type(layer).__name__.endswith("Attention")


def _blocks_inside(layer, prefix: str) -> Iterator[tuple[str, Any]]:
    """(path, layer) of the transformer blocks among ``layer``'s sub-layers, at any depth."""
    for sub in sublayers(layer):
        path = f"{prefix}{sub.name}"
        if is_model(sub):
            continue
        if any(_is_attention(inner) for inner in sublayers(sub)):
            yield path, sub
        else:
            yield from _blocks_inside(sub, path + PATH_SEP)


def _is_normalization(layer) -> bool:
    import keras

    kinds = tuple(getattr(keras.layers, name) for name in ("LayerNormalization", "RMSNormalization")
                  if hasattr(keras.layers, name))
    return isinstance(layer, kinds)


def _traced_blocks(model, taps: list[tuple[str, Any]]) -> tuple[dict[int, tuple], dict[int, tuple]]:
    """From one forward pass on a zero image (sub-layers of a layer have no symbolic output to read):
    the shape of the tensor entering each tapped block, and for each pre-norm block its first
    normalisation, the one called on the block's own input, with the shape it returns."""
    import numpy as np

    shapes: dict[int, tuple] = {}
    norms: dict[int, tuple] = {}
    if not taps:
        return shapes, norms
    height, width = model_input_size(model)
    channels = model_channels(model)
    zeros = np.zeros((1, height or 224, width or 224, channels), np.float32)
    entering: dict[int, Any] = {}

    def keeper(layer):
        def keep(tensor):
            shapes[id(layer)] = (None, *tuple(tensor.shape)[1:])
            entering[id(layer)] = tensor
            return tensor
        return keep

    def norm_keeper(block, norm):
        def keep(args, output):
            if id(block) not in norms and args and args[0] is entering.get(id(block)):
                norms[id(block)] = (norm, (None, *tuple(output.shape)[1:]))
            return output
        return keep

    try:
        with ExitStack() as stack:
            for _, layer in taps:
                stack.enter_context(intercept_input(layer, keeper(layer)))
                for inner in sublayers(layer):
                    if _is_normalization(inner):
                        stack.enter_context(intercept(inner, norm_keeper(layer, inner)))
            model(zeros, training=False)
    except Exception:  # a model that cannot run on a blank image: no token taps, shapes rule only
        return {}, {}
    return shapes, norms


def transformer_taps(model) -> list[LayerInfo]:
    """The taps of each transformer block, in forward order: the tokens entering it, then, for a
    pre-norm block, its first normalisation's output (module docstring). Blocks are found among the
    sub-layers of graph layers, and graph-level attention layers (their query input)."""
    found: list[tuple[str, Any]] = []
    for info in iter_layers(model):
        if _is_attention(info.layer) or any(_is_attention(inner) for inner in sublayers(info.layer)):
            found.append((info.path, info.layer))
        else:
            found.extend(_blocks_inside(info.layer, info.path + PATH_SEP))
    shapes, norms = _traced_blocks(model, found)
    taps = []
    for path, layer in found:
        if id(layer) in shapes and len(shapes[id(layer)]) == 3:
            taps.append(LayerInfo(path, layer, shapes[id(layer)], tap="input"))
            norm, shape = norms.get(id(layer), (None, ()))
            if norm is not None and len(shape) == 3:
                taps.append(LayerInfo(f"{path}{PATH_SEP}{norm.name}", norm, shape))
    return taps


def _is_pooling(layer) -> bool:
    return "pool" in type(layer).__name__.lower()


def _has_conv_kernel(layer) -> bool:
    """A layer with a spatial kernel (Conv2D, SeparableConv2D, DepthwiseConv2D, ...)."""
    return any(len(weight.shape) == 4 for weight in getattr(layer, "weights", []))


def candidate_layers(model) -> list[LayerInfo]:
    """Layers that may serve as a CAM target (spatial, not pooling; token layers whose tokens form
    a grid; the taps of each transformer block), in forward order."""
    size = model_input_size(model)
    taps = transformer_taps(model)
    listed = []
    for info in iter_layers(model):
        if _is_candidate(info) or (info.is_tokens and _grid_of(info, size) is not None and not _mixes_positions(info)):
            listed.append(info)
        listed.extend(tap for tap in taps if tap.path.startswith(info.path + PATH_SEP) or tap.layer is info.layer)
    return listed


def _mixes_positions(info: LayerInfo) -> bool:
    """A ``Reshape`` into rows that are not one position each: a detector's (h, w, anchors x values)
    map folded into (h w anchors, values) rows (keras-hub RetinaNet's ``cls_pred_P3``) interleaves the
    anchors of a position, so its rows laid on a grid are no picture. A map folded into tokens keeps
    its channels: (h, w, c) -> (h w, c)."""
    import keras

    if not isinstance(info.layer, keras.layers.Reshape):
        return False
    try:
        shape_in = tuple(info.layer.input.shape)
    except (AttributeError, ValueError, TypeError):
        return False
    return (len(shape_in) == 4 and shape_in[-1] is not None and info.output_shape is not None
            and shape_in[-1] != info.output_shape[-1])  # a map's (h, w, c), refolded with other rows


def _grid_of(info: LayerInfo, size) -> tuple[int, int, int] | None:
    tokens = info.output_shape[1] if info.output_shape else None
    return token_grid(tokens, size) if tokens else None


def _is_candidate(info: LayerInfo) -> bool:
    """Spatial, not pooling, and not a layout layer: ``Permute`` and ``Reshape`` move the values of a
    map without computing anything, and a map read after ``Permute((2, 1, 3))`` (mtcnn's ONet) is
    the transpose of the picture's."""
    import keras

    return (
        info.is_spatial
        and not _is_pooling(info.layer)
        and not isinstance(info.layer, (keras.layers.InputLayer, keras.layers.Permute, keras.layers.Reshape))
    )


def auto_target_layer(model, head=None) -> LayerInfo:
    """The last transformer tap of a model that has one (the last block's first norm, or the tokens
    entering it: module docstring); otherwise, walking
    back from the output, the first spatial, non-pooling layer (module docstring). For a
    segmentation ``head``, the head's own layers (the per-pixel classifier and its softmax) are
    passed over: their maps are the output itself."""
    taps = transformer_taps(model)
    if taps:
        return taps[-1]
    skip = {id(layer) for layer in head.own_layers()} if head is not None else set()
    if not any(_has_conv_kernel(info.layer) for info in iter_layers(model)):
        raise UnsupportedModel(
            f"{model.name}: no convolutional layer found, so there is no spatial feature map "
            "to explain. Class activation maps need a CNN."
        )
    try:
        layers = list(walk_back(model))
    except (AttributeError, IndexError):  # a subclassed model has no graph to walk
        layers = list(reversed(list(iter_layers(model))))
    for info in layers:
        if _is_candidate(info) and id(info.layer) not in skip:
            return info
    raise UnsupportedModel(
        f"{model.name}: no layer has a spatial output (rank 4, more than one position). "
        f"Pass {param('layer', 'NAME')}."
    )


def spatial_branches(model, head=None) -> list[LayerInfo]:
    """The spatial layers the head reads directly: walking back from the output, the first candidate
    on every path. One for a plain CNN (its last block); several when parallel branches are pooled
    and joined before the head, and the automatic pick then shows the first of them only."""
    skip = {id(layer) for layer in head.own_layers()} if head is not None else set()

    def candidate(info: LayerInfo) -> bool:
        return _is_candidate(info) and id(info.layer) not in skip

    try:
        return [info for info in walk_back(model, stop=candidate) if candidate(info)]
    except (AttributeError, IndexError):  # a subclassed model has no graph to walk
        return []


def branch_note(model, pick: LayerInfo, head=None) -> str | None:
    """One line when the head also reads spatial branches the automatic ``pick`` leaves out."""
    # a branch computed from the pick (a block after it, where the pick's map is still spatial) is
    # the pick's own path; only branches beside it are left out of its maps
    others = [info for info in spatial_branches(model, head)
              if info.layer is not pick.layer and id(pick.layer) not in upstream_of(info.layer)]
    if not others or pick.tap != "output" or pick.is_tokens:  # a transformer's tap: its tokens carry the rest
        return None
    listed = ", ".join(f"{info.path} ({info.shape_text()})" for info in others)
    return phrase(f"note: the head of {model.name} also reads {listed}, besides the automatic pick {pick.path} "
                  f"({pick.shape_text()}); the maps show {pick.path} only: pass "
                  f"{param('layer', others[0].path)} to explain another.")


def layer_names(layer: Any) -> list[str]:
    """The ``layer`` parameter as a list of names: [] for None (the automatic pick), one name, or
    several (their maps are combined), each kept once in the order given."""
    if layer is None:
        return []
    if isinstance(layer, str):
        return [layer]
    if isinstance(layer, (list, tuple)) and all(isinstance(name, str) for name in layer):
        return list(dict.fromkeys(layer))
    raise OptionConflict(f"{param('layer', repr(layer))}: give a layer name or nested path (str), a list of them "
                         "(their maps are combined), or None for the automatic pick.")


def find_layer(model, name: str) -> LayerInfo:
    """``--layer``: a layer name (searched in nested models too), a nested path ``outer/inner``, a
    nested model itself (its output is then the target, e.g. a MobileNetV2 backbone's 3x3x1280), or
    a transformer block's name (the tokens entering it), or the tail of a path (``block_2/ln_1``) where
    the whole path is longer."""
    taps = transformer_taps(model)
    tapped = {id(tap.layer) for tap in taps}
    layers = taps + [info for info in [*iter_layers(model), *nested_models(model)] if id(info.layer) not in tapped]
    matches = [info for info in layers if name in (info.path, info.name)] or [
        info for info in layers if info.path.endswith(PATH_SEP + name)]  # a path's tail: 'block_2/ln_1'
    if not matches:
        names = [info.path for info in layers]
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        if not close:
            close = [info.path for info in candidate_layers(model)][-5:]
        raise LayerNotFound(
            f"no layer named '{name}' in {model.name}. Close candidates: {', '.join(close)}. "
            f"'gradcam layers' lists them all."
        )
    if len(matches) > 1:
        raise LayerNotFound(
            f"layer name '{name}' is ambiguous in {model.name}: "
            f"{', '.join(m.path for m in matches)}. Pass the full path."
        )
    info = matches[0]
    if info.is_tokens and _mixes_positions(info):
        raise LayerNotFound(
            f"layer '{info.path}' folds a map of {tuple(info.layer.input.shape)[1:]} into {info.output_shape[1]} rows of "
            f"{info.output_shape[-1]}: several rows per position (a detector's anchors), so its rows form no "
            "picture. Pick the layer before it; 'gradcam layers' lists the candidates."
        )
    if info.is_tokens:
        if _grid_of(info, model_input_size(model)) is None:
            raise LayerNotFound(
                f"layer '{info.path}' has {info.output_shape[1]} tokens, which form no patch grid "
                f"for a {'x'.join(str(d) for d in model_input_size(model))} input even after dropping up "
                f"to {MAX_PREFIX_TOKENS} prefix tokens. Pick a transformer block or a layer with a "
                "spatial output; 'gradcam layers' lists them."
            )
        return info
    if not info.is_spatial:
        raise LayerNotFound(
            f"layer '{info.path}' has output shape {info.output_shape}, not a spatial map "
            "(batch, height, width, channels) with more than one position. Pick a convolutional "
            "layer; 'gradcam layers' lists the candidates."
        )
    return info
