"""The backend-aware room: everything else computes in ``keras.ops`` and runs on whichever backend
Keras runs on (TensorFlow or JAX).

What differs between backends, and only that, lives here:

- **compiling** a step for fixed input shapes: ``tf.function`` (with an input signature, XLA on
  request) on TensorFlow, ``jax.jit`` on JAX (always XLA);
- **the gradient at the tap**: on TensorFlow a ``GradientTape`` watches the tapped map while the
  model runs; JAX has no tape, so the map is given an added ``delta`` of zeros by the probe and the
  scores are differentiated with respect to ``delta`` (``jax.vjp``), which is the same gradient;
- **gradients with respect to the input** (guided backpropagation);
- **Hessian-vector products at the tap** (ShapleyCAM): nested ``GradientTape``s on TensorFlow,
  forward-over-reverse (``jax.jvp`` of the ``delta`` gradient) on JAX;
- **gradients at several taps at once** (FullGrad: the input and every biased layer's output), the
  same two ways as at one tap;
- **a sequential loop** over chunks (the perturbation passes): ``tf.map_fn`` with one iteration in
  flight, ``jax.lax.map``, so memory holds one chunk at a time on both.

The PyTorch backend is refused with one line (:func:`check_supported`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import UnsupportedBackend

SUPPORTED = ("tensorflow", "jax")


def name() -> str:
    import keras

    return keras.backend.backend()


def configured_name() -> str:
    """The backend Keras will run on, read as Keras reads it (``KERAS_BACKEND``, else the
    ``backend`` of ``$KERAS_HOME/keras.json`` or ``~/.keras/keras.json``), without importing Keras
    (whose import fails outright for a backend that is not installed)."""
    import json
    import os

    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as stream:
            return str(json.load(stream).get("backend") or "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def check_supported(backend: str | None = None) -> str:
    """The backend's name; a backend the tool does not run on is refused in one line."""
    backend = backend or name()
    if backend not in SUPPORTED:
        raise UnsupportedBackend(
            f"KERAS_BACKEND={backend}: gradcam-cli computes maps on the tensorflow and jax backends; set "
            "KERAS_BACKEND=tensorflow (the default install) or KERAS_BACKEND=jax (pip install 'gradcam-cli[jax]')."
        )
    return backend


def compile_step(step: Callable, specs: list[tuple[tuple, str]], xla: bool = False) -> Callable:
    """``step`` compiled for inputs of the given (shape, dtype) specs."""
    if check_supported() == "jax":
        import jax

        return jax.jit(step)
    import tensorflow as tf

    signature = [tf.TensorSpec(shape, dtype) for shape, dtype in specs]
    # No AutoGraph: the steps' loops are over fixed Python ranges, and tracing is 2-3x faster without
    # it. (Keras layers are never converted by AutoGraph anyway.)
    return tf.function(step, input_signature=signature, jit_compile=xla or None, autograph=False)


def tracing_count(compiled: Callable) -> int:
    """How many times a compiled step was traced (one per input signature used)."""
    if hasattr(compiled, "experimental_get_tracing_count"):
        return compiled.experimental_get_tracing_count()
    cache_size = getattr(compiled, "_cache_size", None)
    return int(cache_size()) if callable(cache_size) else 0


def tap_gradients(run: Callable, count: int, needs_gradients: bool):
    """``run(watch, replace) -> (tapped map, scores (B, count), extra)``, run once; returns
    ``(tapped map, gradients, extra)`` where ``gradients`` is one (B, h, w, k) gradient of
    ``scores[:, t]`` with respect to the map per target ``t`` (None without ``needs_gradients``)."""
    if not needs_gradients:
        activations, _, extra = run(None, None)
        return activations, None, extra
    if check_supported() == "jax":
        return _jax_tap_gradients(run, count)
    import tensorflow as tf

    with tf.GradientTape(persistent=count > 1) as tape:
        activations, scores, extra = run(tape.watch, None)
        per_target = [scores[:, t] for t in range(count)]  # on the tape: sliced inside its block
    gradients = [tape.gradient(target, activations) for target in per_target]
    del tape
    return activations, gradients, extra


def _jax_tap_gradients(run: Callable, count: int):
    import jax
    import jax.numpy as jnp

    shape = jax.eval_shape(lambda: run(None, None)[0])

    def forward(delta):
        activations, scores, extra = run(None, lambda tapped: tapped + delta.astype(tapped.dtype))
        return scores, (activations, extra)

    scores, pullback, (activations, extra) = jax.vjp(forward, jnp.zeros(shape.shape, shape.dtype), has_aux=True)
    gradients = [pullback(jnp.zeros_like(scores).at[:, t].set(1.0))[0] for t in range(count)]
    return activations, gradients, extra


def tap_hessian_products(run: Callable, count: int):
    """As :func:`tap_gradients` with gradients, plus ``H A``: per target ``t``, the Hessian of
    ``scores[:, t]`` with respect to the tapped map ``A`` times ``A`` itself (the map held fixed as
    the vector), one (B, h, w, k) tensor each. Returns ``(tapped map, gradients, products, extra)``.

    ``H A`` is the gradient of ``<g(A), A_fixed>`` with respect to ``A``: TensorFlow takes it with a
    tape around the tape that gives ``g``; JAX as ``jax.jvp`` of the gradient (taken of the ``delta``
    added to the map) in the direction of the map."""
    if check_supported() == "jax":
        return _jax_tap_hessian_products(run, count)
    import tensorflow as tf

    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape(persistent=count > 1) as inner:
            def watch(tensor):
                inner.watch(tensor)
                outer.watch(tensor)

            activations, scores, extra = run(watch, None)
            per_target = [scores[:, t] for t in range(count)]
        gradients = [inner.gradient(target, activations) for target in per_target]
        fixed = tf.stop_gradient(activations)
        along_map = [tf.reduce_sum(gradient * fixed) for gradient in gradients]
    products = [outer.gradient(value, activations, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                for value in along_map]
    return activations, gradients, products, extra


def _jax_tap_hessian_products(run: Callable, count: int):
    import jax
    import jax.numpy as jnp

    shape = jax.eval_shape(lambda: run(None, None)[0])
    zeros = jnp.zeros(shape.shape, shape.dtype)

    def forward(delta):
        activations, scores, extra = run(None, lambda tapped: tapped + delta.astype(tapped.dtype))
        return scores, (activations, extra)

    _, _, (activations, extra) = jax.vjp(forward, zeros, has_aux=True)
    direction = jax.lax.stop_gradient(activations).astype(shape.dtype)

    def gradient_of(t):
        def gradient(delta):
            scores, pullback, _ = jax.vjp(forward, delta, has_aux=True)
            return pullback(jnp.zeros_like(scores).at[:, t].set(1.0))[0]
        return gradient

    pairs = [jax.jvp(gradient_of(t), (zeros,), (direction,)) for t in range(count)]
    return activations, [gradient for gradient, _ in pairs], [product for _, product in pairs], extra


def taps_gradients(run: Callable, count: int):
    """Gradients at several tensors of one forward pass. ``run(watch, replace) -> (taps, scores
    (B, count))`` where the code making each tap calls ``tensor = replace(index, tensor)`` when
    ``replace`` is given (JAX: adds that tap's ``delta``) and ``watch(tensor)`` when ``watch`` is given
    (TensorFlow's tape), then appends it to ``taps``, the same taps in the same order on every run.
    Returns ``(taps, gradients)``: ``gradients[t][i]`` is the gradient of ``scores[:, t]`` with
    respect to ``taps[i]`` (zeros where the tap does not reach the score). A ``run`` that returns a
    third value, ``(taps, scores, extra)``, gets ``(taps, gradients, extra)`` back (the explainer's
    several target layers: the targets and reported values of the same pass)."""
    if check_supported() == "jax":
        import jax
        import jax.numpy as jnp

        shapes = jax.eval_shape(lambda: run(None, None)[0])
        zeros = [jnp.zeros(shape.shape, shape.dtype) for shape in shapes]

        def forward(deltas):
            taps, scores, *extra = run(None, lambda index, tensor: tensor + deltas[index].astype(tensor.dtype))
            return scores, (taps, extra)

        scores, pullback, (taps, extra) = jax.vjp(forward, zeros, has_aux=True)
        return (taps, [list(pullback(jnp.zeros_like(scores).at[:, t].set(1.0))[0]) for t in range(count)], *extra)
    import tensorflow as tf

    with tf.GradientTape(persistent=count > 1) as tape:
        taps, scores, *extra = run(tape.watch, None)
        per_target = [scores[:, t] for t in range(count)]
    gradients = [tape.gradient(target, taps, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                 for target in per_target]
    del tape
    return (taps, gradients, *extra)


def input_gradient(score: Callable, images):
    """The gradient of ``score(images)`` (a scalar) with respect to ``images``."""
    if check_supported() == "jax":
        import jax

        return jax.grad(score)(images)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(images)
        value = score(images)
    return tape.gradient(value, images)


def map_chunks(one: Callable, chunks: int, output_shape: tuple) -> Any:
    """``one(index) -> array of output_shape`` for ``index`` in ``range(chunks)``, stacked, one at a time."""
    import keras

    if check_supported() == "jax":
        import jax

        return jax.lax.map(one, keras.ops.arange(chunks, dtype="int32"))
    import tensorflow as tf

    return tf.map_fn(one, tf.range(chunks), parallel_iterations=1,
                     fn_output_signature=tf.TensorSpec(output_shape, tf.float32))


def limit_threads(cpus: int) -> None:
    """Keep one process to ``cpus`` cores (a Ray actor among others on a node). Call it before the
    first op runs: TensorFlow ignores the setting afterwards; on JAX it applies to a process that has
    not imported JAX yet."""
    import os
    import sys

    if configured_name() == "jax":
        if "jax" not in sys.modules:
            flags = os.environ.get("XLA_FLAGS", "")
            os.environ["XLA_FLAGS"] = (f"{flags} --xla_cpu_multi_thread_eigen=false "
                                       f"intra_op_parallelism_threads={cpus}").strip()
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(cpus)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, cpus))


def to_numpy(value):
    import numpy as np

    if hasattr(value, "numpy"):
        return value.numpy()
    return np.asarray(value)
