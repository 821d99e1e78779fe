"""Independent references for the method and metric tests: activations, logit gradients, formulas and
metric definitions computed here in numpy or through sub-models built here, never through the tool's
probe; the small models they are defined on; and the one call each formula test makes to the tool."""

from __future__ import annotations

import numpy as np

STEPS = 5  # deletion / insertion steps in the metric tests
UNET_SIZE = 32  # the segmentation model's input (tests/conftest.py: unet)
NEVER = 2  # a class no pixel of the segmentation model is predicted as (its bias is very negative)
TOKEN_SIZE = 32  # the token models' input (tests/conftest.py: vit)


def deep_head_model(keras, size: int = 20):
    """target conv -> conv -> GAP -> Dense(softmax): gradients at 'target' vary over positions."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="target")(inputs)
    x = keras.layers.Conv2D(5, 3, activation="tanh", name="after")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="head")(x))


def kind_and_age_model(keras):
    """A softmax output `kind` (3 classes) and a linear output `age`, on one conv -> GAP trunk."""
    layers = keras.layers
    inputs = keras.Input((32, 32, 3))
    features = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, activation="relu", name="conv")(inputs))
    return keras.Model(inputs, [layers.Dense(3, activation="softmax", name="kind")(features),
                                layers.Dense(1, name="age")(features)])


class Reference:
    """For ``model`` (built by :func:`deep_head_model`) and ``images``: activations ``a`` of the
    target layer, gradients ``g`` of logit ``class_index``, and logit functions in numpy."""

    def __init__(self, keras, model, images: np.ndarray, class_index: int):
        import tensorflow as tf

        target, head = model.get_layer("target"), model.get_layer("head")
        to_activations = keras.Model(model.inputs, target.output)
        self._tail = keras.Model(target.output, head.input)
        self._kernel, self._bias = head.kernel.numpy(), head.bias.numpy()
        self._to_activations = to_activations
        activations = tf.constant(to_activations(images))
        with tf.GradientTape() as tape:
            tape.watch(activations)
            score = tf.reduce_sum(tf.matmul(self._tail(activations), head.kernel)[:, class_index])
        self.a = activations.numpy().astype(np.float64)
        self.g = tape.gradient(score, activations).numpy().astype(np.float64)

    def logits_of_activations(self, activations: np.ndarray) -> np.ndarray:
        return self._tail(activations.astype(np.float32)).numpy() @ self._kernel + self._bias

    def logits_of_images(self, images: np.ndarray) -> np.ndarray:
        return self.logits_of_activations(self._to_activations(images).numpy())


def relu(x):
    return np.maximum(x, 0)


def numpy_first_component(weighted):
    out = []
    for sample in weighted:
        flat = sample.reshape(-1, sample.shape[-1])
        centred = flat - flat.mean(axis=0)
        projection = centred @ np.linalg.svd(centred, full_matrices=False)[2][0]
        if (projection * centred.mean(axis=1)).sum() < 0:
            projection = -projection
        out.append(projection.reshape(sample.shape[:2]))
    return np.stack(out)


def numpy_principal_projection(weighted):
    """(B, h, w, k) -> ((B, h w) projections on the first principal component, (B, h w, k) centred rows),
    by numpy's SVD; the sign is numpy's."""
    flat = weighted.reshape(len(weighted), -1, weighted.shape[-1])
    centred = flat - flat.mean(axis=1, keepdims=True)
    projections = np.stack([sample @ np.linalg.svd(sample, full_matrices=False)[2][0] for sample in centred])
    return projections, centred


def same_up_to_sign(actual, expected, rtol=2e-3):
    """Each map equals its reference or its negation (a principal component's sign is arbitrary)."""
    for got, want in zip(actual, expected, strict=True):
        sign = 1.0 if np.abs(got - want).max() <= np.abs(got + want).max() else -1.0
        close(got, sign * want, rtol=rtol)


def numpy_elementwise_gradcam(a, g):
    """Element-wise Grad-CAM: sum_k ReLU(g A)."""
    return relu(g * a).sum(-1)


def numpy_seg_eigen(a, g):
    """Seg-Eigen-CAM: the first component of |g| A, negated where |min| > |max| (eq. 13)."""
    projections, _ = numpy_principal_projection(np.abs(g) * a)
    flip = np.abs(projections.min(axis=1)) > np.abs(projections.max(axis=1))
    return np.where(flip[:, None], -projections, projections).reshape(a.shape[:3])


def numpy_kpca(a, kernel="sigmoid", gamma=None, coef0=1.0):
    """KPCA-CAM: per image, the centred activations' kernel matrix, centred in feature space, and the
    positions' projections sqrt(lambda) v on its top eigenvector, signed to agree with the mean."""
    out = []
    for sample in a.reshape(len(a), -1, a.shape[-1]).astype(np.float64):
        x = sample - sample.mean(axis=0)
        g = 1.0 / x.shape[1] if gamma is None else gamma
        if kernel == "sigmoid":
            k = np.tanh(g * x @ x.T + coef0)
        elif kernel == "rbf":
            k = np.exp(-g * ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        else:
            k = x @ x.T
        n = len(k)
        ones = np.full((n, n), 1.0 / n)
        centred = k - ones @ k - k @ ones + ones @ k @ ones
        values, vectors = np.linalg.eigh(centred)
        projection = vectors[:, -1] * np.sqrt(max(values[-1], 0.0))
        if projection @ x.mean(axis=1) < 0:
            projection = -projection
        out.append(projection)
    return np.stack(out).reshape(a.shape[:3])


def numpy_fem(a, sigmas=2.0):
    """FEM: sum_k mean_k * [A_k > mean_k + sigmas * std_k] (population std)."""
    mean = a.mean(axis=(1, 2), keepdims=True)
    masks = a > mean + sigmas * a.std(axis=(1, 2), keepdims=True)
    return (mean * masks).sum(-1)


def finer_comparisons(logits, target, count):
    """Finer-CAM's comparison classes for one target per image: the ``count`` other classes whose
    logits are closest to the target's, and their probabilities renormalised over them."""
    distance = np.abs(logits - logits[:, target : target + 1]).astype(np.float64)
    distance[:, target] = np.inf
    picked = np.argsort(distance, axis=1, kind="stable")[:, :count]
    chosen = np.take_along_axis(logits, picked, axis=1).astype(np.float64)
    weights = np.exp(chosen - chosen.max(axis=1, keepdims=True))
    return picked, weights / weights.sum(axis=1, keepdims=True)


def hessian_times_map(keras, model, images, class_index, step=1e-2):
    """``H A`` for :func:`deep_head_model`: the derivative of the logit's gradient at the target map
    scaled by ``1 + t``, at ``t = 0``, by central finite differences (no second-order autodiff)."""
    import tensorflow as tf

    target, head = model.get_layer("target"), model.get_layer("head")
    activations = keras.Model(model.inputs, target.output)(images)
    tail = keras.Model(target.output, head.input)

    def gradient(scale):
        scaled = tf.constant(activations * scale)
        with tf.GradientTape() as tape:
            tape.watch(scaled)
            score = tf.reduce_sum(tf.matmul(tail(scaled), head.kernel)[:, class_index])
        return tape.gradient(score, scaled).numpy().astype(np.float64)

    return (gradient(1.0 + step) - gradient(1.0 - step)) / (2 * step)


def region_gradcam(unet, images, class_index, region):
    """Grad-CAM at 'dec' in numpy: z = a W + b (the 1x1 classifier before its softmax), the score
    sum_{ij in R} z_ij[c], so d score / d a_ij = R_ij W[:, c]."""
    import keras

    a = keras.Model(unet.inputs, unet.get_layer("dec").output)(images).numpy().astype(np.float64)
    kernel, bias = unet.get_layer("classifier").get_weights()
    weights_matrix = kernel[0, 0].astype(np.float64)
    z = a @ weights_matrix + bias
    if isinstance(region, str) and region == "pred":
        mask = (z.argmax(-1) == class_index).astype(np.float64)
    elif isinstance(region, str) and region == "all":
        mask = np.ones(z.shape[:3])
    else:
        mask = np.broadcast_to(region.astype(np.float64), z.shape[:3])
    gradients = mask[..., None] * weights_matrix[:, class_index]
    channel_weights = gradients.mean(axis=(1, 2))
    return np.maximum(np.einsum("bhwk,bk->bhw", a, channel_weights), 0), mask.sum(axis=(1, 2))


# ---- the metrics, from the papers' definitions, one image and one step at a time

def reference_order(shown: np.ndarray, seed: int = 13) -> np.ndarray:
    """Pixels by decreasing saliency, ties by their place in a seeded permutation of positions."""
    flat = shown.ravel()
    place = np.empty(flat.size, int)
    place[np.random.default_rng(seed).permutation(flat.size)] = np.arange(flat.size)
    return np.lexsort((place, -flat))


def reference_blur(image: np.ndarray) -> np.ndarray:
    """RISE's Gaussian (sigma 5 px at 224, radius sigma) along each axis, weights renormalised at borders."""
    out = image.astype(np.float64)
    for axis in (0, 1):
        size = out.shape[axis]
        sigma = 5 / 224 * size
        radius = max(1, int(round(sigma)))
        moved = np.moveaxis(out, axis, 0)
        result = np.zeros_like(moved)
        for position in range(size):
            window = range(max(0, position - radius), min(size, position + radius + 1))
            weights = np.array([np.exp(-((position - j) ** 2) / (2 * sigma**2)) for j in window])
            weights /= weights.sum()
            result[position] = sum(w * moved[j] for w, j in zip(weights, window, strict=True))
        out = np.moveaxis(result, 0, axis)
    return out


def probability(model, preprocess, image: np.ndarray, class_index: int) -> float:
    batch = preprocess(image[None].astype(np.float32).copy())
    return float(np.asarray(model(batch, training=False))[0, class_index])


# ---- the tool's side of the comparisons

def maps(model, images, method, classes=None, **options):
    """The first target's maps, explained at the layer named 'target' when the model has one."""
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.models.in_memory import spec_for_model

    layer = "target" if any(layer.name == "target" for layer in model.layers) else None
    explainer = Explainer(spec_for_model(model), method=method, layer=layer, batch_size=len(images), **options)
    return explainer.run(images, classes=classes).heatmaps[:, 0]


def close(actual, expected, rtol=2e-3):
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-5 * np.abs(expected).max())


def make_evaluator(spec, methods, metrics, batch_size=4, steps=STEPS, **extra):
    from gradcam_cli.scoring import EvaluateOptions, Evaluator

    return Evaluator(spec, EvaluateOptions(methods=methods, metrics=metrics, steps=steps, batch_size=batch_size,
                                           **extra))
