"""Methods that weigh channels by extra forward passes: Score-CAM and Ablation-CAM; and Eigen-CAM.

The extra passes run in chunks of channels (at most 64 model inputs a pass by default) inside one
sequential loop of the compiled step (:func:`gradcam_cli.backend.map_chunks`), so memory holds one
chunk of perturbed inputs at a time, never all channels.
"""

from __future__ import annotations

from .. import backend
from ..errors import param
from .base import CamContext, CamMethod, first_component_projection


def _chunked_scores(score_chunk, channels: int, chunk_size: int, batch: int):
    """Run ``score_chunk(channel_indices (chunk,)) -> (B, chunk)`` over all channels; (B, channels)."""
    from keras import ops

    chunk_size = max(1, min(chunk_size, channels))
    chunks = -(-channels // chunk_size)

    def one(index):
        return ops.cast(score_chunk(index * chunk_size + ops.arange(chunk_size, dtype="int32")), "float32")

    scores = backend.map_chunks(one, chunks, (batch, chunk_size))
    scores = ops.reshape(ops.transpose(scores, (1, 0, 2)), (batch, chunks * chunk_size))
    return scores[:, :channels]


def _target_scores(logits, targets):
    """(B, n, classes) logits -> (B, n): each image's target class."""
    from keras import ops

    return ops.take_along_axis(logits, ops.reshape(targets, (-1, 1, 1)), axis=2)[:, :, 0]


class ScoreCAM(CamMethod):
    """Score-CAM (Wang et al., CVPR Workshops 2020, eq. 5-8).

    Each channel's activation map is upsampled to the input size and min-max normalised to
    ``H^k`` in [0, 1]; the input is masked with it, ``X * H^k``, and the target logit of the masked
    input is the channel's score. ``w = softmax_k(score)`` (the paper's baseline term is the same for
    every channel and cancels in the softmax); ``L = ReLU(sum_k w_k A^k)``. Gradient-free.

    ``max_channels`` keeps the channels of highest spatial variance (Faster Score-CAM, Wang et al.'s
    follow-up); :meth:`channels_per_pass` channels are masked and scored per forward pass.
    """

    uses_chunks = True
    uses_max_channels = True

    name = "scorecam"
    aliases = ("score-cam", "score_cam")
    uses_gradients = False
    description = f"gradient-free: masks the input with each channel (Wang 2020); slow, bound it with {param('max_channels')}"

    def weighted_activations(self, context: CamContext):
        from keras import ops

        activations, images = context.activations, context.images
        batch, height, width = images.shape[0], images.shape[1], images.shape[2]
        channels = activations.shape[-1]
        if self.max_channels and self.max_channels < channels:
            _, variance = ops.moments(activations, axes=(1, 2))
            keep = ops.top_k(variance, k=self.max_channels)[1]
            activations = ops.take_along_axis(activations, keep[:, None, None, :], axis=3)
            channels = self.max_channels

        def score_chunk(indices):
            valid = indices < channels
            chunk = ops.take(activations, ops.minimum(indices, channels - 1), axis=3)
            chunk = chunk * ops.cast(valid, chunk.dtype)
            upsampled = ops.image.resize(chunk, (height, width), interpolation="bilinear")
            low = ops.min(upsampled, axis=(1, 2), keepdims=True)
            high = ops.max(upsampled, axis=(1, 2), keepdims=True)
            masks = ops.divide_no_nan(upsampled - low, high - low)  # (B, H, W, chunk)
            masked = images[:, None] * ops.transpose(masks, (0, 3, 1, 2))[..., None]
            masked = ops.reshape(masked, (-1, height, width, images.shape[-1]))
            logits = context.class_scores(masked)
            return _target_scores(ops.reshape(logits, (batch, indices.shape[0], -1)), context.targets)

        scores = _chunked_scores(score_chunk, channels, self.channels_per_pass(batch), batch)
        weights = ops.softmax(scores, axis=-1)
        return activations * weights[:, None, None, :]


class AblationCAM(CamMethod):
    """Ablation-CAM (Desai & Ramaswamy, WACV 2020, eq. 3).

    ``w_k = (y^c - y^c_k) / y^c``: the relative drop of the target score when channel ``k`` of the
    target layer's map is set to zero; ``L = ReLU(sum_k w_k A^k)``. Choice: the drop is divided by
    ``|y^c|`` rather than ``y^c``, so a negative score does not invert the map.

    ``y^c_k`` comes from the full model run on copies of the images while the probe substitutes the
    ablated map for the layer's own output (for tokens, the ablated grid goes back into the token
    sequence), so the layer may sit inside a nested backbone or under a skip connection. Where the
    part of the model after the layer depends on it alone (:meth:`Probe.tail`), only that part is
    run on the ablated maps, which skips the layers before it; the scores are the same. Each pass
    holds :meth:`channels_per_pass` ablated copies per image, never all channels at once.
    """

    uses_chunks = True

    name = "ablationcam"
    aliases = ("ablation-cam", "ablation_cam")
    uses_gradients = False
    description = "gradient-free: score drop when each channel is zeroed (Desai 2020)"

    def prepare(self, spec, probe):
        return probe.tail()  # None: substitute inside the full forward pass

    def channel_weights(self, context: CamContext):
        from keras import ops

        tail = context.method_state
        activations = context.activations
        batch, channels = activations.shape[0], activations.shape[-1]
        base = ops.take_along_axis(context.logits, ops.reshape(context.targets, (-1, 1)), axis=1)[:, 0]
        images = context.images

        def score_chunk(indices):
            copies = indices.shape[0]
            keep = 1.0 - ops.one_hot(indices, channels)  # rows past the last channel keep all
            ablated = activations[:, None] * keep[None, :, None, None, :]
            ablated = ops.reshape(ablated, (-1, *activations.shape[1:]))
            if tail is not None:
                logits = context.scores_of_logits(tail(ablated))
            else:
                logits = context.class_scores(ops.repeat(images, copies, axis=0),
                                              replace=lambda computed: ops.cast(ablated, computed.dtype))
            return _target_scores(ops.reshape(logits, (batch, copies, -1)), context.targets)

        scores = _chunked_scores(score_chunk, channels, self.channels_per_pass(batch), batch)
        return (base[:, None] - scores) / ops.maximum(ops.abs(base[:, None]), 1e-7)


class EigenCAM(CamMethod):
    """Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): the target layer's activations projected on their
    first principal component (batched SVD, positions as samples, centred).

    Class-agnostic and gradient-free. The sign of a principal component is arbitrary; here it is
    chosen so that the map correlates positively with the mean activation (peers leave it to the SVD
    routine, so their maps can come out inverted). No ReLU (the paper has none); display min-max
    normalisation maps it to [0, 1].
    """

    name = "eigencam"
    aliases = ("eigen-cam", "eigen_cam")
    uses_gradients = False
    supports_eigen_smooth = False
    class_agnostic = True
    description = "class-agnostic first principal component of the activations (Muhammad 2020)"

    def cam(self, context: CamContext):
        return first_component_projection(context.activations)
