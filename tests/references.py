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
