"""Call interception: routing one layer instance's ``call`` through a hook while a model runs, then
restoring it. The probe (activations and logits in one pass), the trace of a model without a graph,
guided backpropagation and the token-shape search all read or replace tensors this way, without
rebuilding or editing the user's model."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def intercept(layer, hook):
    """Route ``layer.call`` through ``hook(args, output)`` on this instance only, then restore."""
    with _replaced_call(layer, lambda original: lambda *args, **kwargs: hook(args, original(*args, **kwargs))):
        yield


@contextmanager
def intercept_input(layer, hook):
    """Call ``layer`` on ``hook(x)`` instead of its first input ``x`` (every argument that is ``x``
    itself is replaced, so self-attention's query, key and value all read the hooked tensor)."""

    def wrap(original):
        def call(*args, **kwargs):
            first = args[0]
            hooked = hook(first)
            args = tuple(hooked if arg is first else arg for arg in args)
            kwargs = {key: hooked if value is first else value for key, value in kwargs.items()}
            return original(*args, **kwargs)
        return call

    with _replaced_call(layer, wrap):
        yield


@contextmanager
def bypass_activation(layer, keep):
    """Run ``layer`` with its own activation turned off, pass the pre-activation output to
    ``keep``, and return the activation of it, so the model's output is unchanged."""
    import keras

    activation = layer.activation

    def wrap(original):
        def call(*args, **kwargs):
            object.__setattr__(layer, "activation", keras.activations.linear)
            try:
                pre_activation = original(*args, **kwargs)
            finally:
                object.__setattr__(layer, "activation", activation)
            keep(pre_activation)
            return activation(pre_activation)
        return call

    with _replaced_call(layer, wrap):
        yield


@contextmanager
def _replaced_call(layer, wrap):
    had_own = "call" in vars(layer)
    original = layer.call
    object.__setattr__(layer, "call", wrap(original))
    try:
        yield
    finally:
        if had_own:
            object.__setattr__(layer, "call", original)
        else:
            object.__delattr__(layer, "call")


LOW_PRECISION = ("float16", "bfloat16")


def low_precision_layers(model) -> list:
    """The layers of ``model`` (itself included, at any depth) that compute in float16 or bfloat16
    under a mixed-precision policy; quantized layers are left out (their policy is their weights)."""
    try:
        layers = list(model._flatten_layers(include_self=True, recursive=True))
    except (AttributeError, TypeError):
        return []
    return [layer for layer in layers
            if getattr(getattr(layer, "dtype_policy", None), "compute_dtype", None) in LOW_PRECISION
            and getattr(layer.dtype_policy, "quantization_mode", None) is None]


@contextmanager
def float32_compute(layers):
    """Run ``layers`` in float32 while the block runs, then give them back their policies.

    A ``mixed_float16`` model keeps float32 variables and computes in float16; its gradients, small
    products of many factors, underflow to zero in float16 (the reason Keras scales a training loss).
    Class activation maps are therefore computed with the same float32 variables in float32, which is
    the float32 model exactly."""
    import keras

    saved = [(layer, layer._dtype_policy) for layer in layers]
    float32 = keras.dtype_policies.get("float32")
    try:
        for layer, _ in saved:
            object.__setattr__(layer, "_dtype_policy", float32)
        yield
    finally:
        for layer, policy in saved:
            object.__setattr__(layer, "_dtype_policy", policy)
