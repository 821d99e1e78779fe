"""The traced call of a subclassed ``keras.Model`` (gradcam_cli/trace.py) and what gradcam_cli/graph.py
and gradcam_cli/layers.py answer from it: calls in the order they end, paths through the attributes'
layer names, output shapes, input links, outputs matched to their layer, a squash written in
``call()``, and the refusals (never called, several inputs, a model failing on the traced batch)."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli import graph
from gradcam_cli.errors import UnsupportedModel
from gradcam_cli.layers import auto_target_layer, candidate_layers, find_layer
from gradcam_cli.models.in_memory import spec_for_model
from gradcam_cli.trace import has_graph, trace

SIZE = 16
# the calls of Net, in the order they end: a block's inner layers before the block
ORDER = ["stem/s1", "stem/s2", "stem", "block1/c1", "block1/c2", "block1", "pool", "head"]
SHAPES = {"stem/s1": (None, 14, 14, 3), "stem/s2": (None, 14, 14, 3), "stem": (None, 14, 14, 3),
          "block1/c1": (None, 14, 14, 4), "block1/c2": (None, 14, 14, 5), "block1": (None, 14, 14, 5),
          "pool": (None, 5), "head": (None, 3)}


def _net(keras, squash=None, name="net"):
    """stem (a Sequential) -> block1 (a custom Layer holding two convs) -> GAP -> Dense, with
    ``squash`` (a function, or None) applied to the Dense output in ``call()``."""
    layers = keras.layers

    class Block(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.c1 = layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")
            self.c2 = layers.Conv2D(5, 3, padding="same", name="c2")

        def call(self, x):
            return self.c2(self.c1(x))

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name=name)
            self.stem = keras.Sequential([layers.Conv2D(3, 3, name="s1"), layers.ReLU(name="s2")], name="stem")
            self.block1 = Block(name="block1")
            self.pool = layers.GlobalAveragePooling2D(name="pool")
            self.head = layers.Dense(3, name="head")

        def call(self, x):
            logits = self.head(self.pool(self.block1(self.stem(x))))
            return logits if squash is None else squash(logits)

    return Net()


def _called(model, size=SIZE):
    model(np.zeros((2, size, size, 3), np.float32))
    return model


def test_calls_are_listed_in_the_order_they_end_with_paths_and_shapes(keras):
    model = _called(_net(keras))
    assert not has_graph(model)
    spec = spec_for_model(model)
    assert spec.input_size == (SIZE, SIZE)
    found = trace(model)
    assert found.input_shape == (None, SIZE, SIZE, 3)
    assert [call.path for call in found.calls] == ORDER  # a built model runs once
    assert {call.path: call.output_shape for call in found.calls} == SHAPES
    assert [call.path for call in found.calls if call.is_model] == ["stem"]  # a Sequential; block1 is a Layer
    assert found.calls[ORDER.index("block1/c2")].layer is model.block1.c2
    assert found.calls[ORDER.index("stem/s1")].layer is model.stem.get_layer("s1")
    # what graph.py answers from it: plain layers (the Sequential itself left out), backwards
    assert [info.path for info in graph.iter_layers(model)] == [path for path in ORDER if path != "stem"]
    assert [info.path for info in graph.walk_back(model)] == [path for path in reversed(ORDER) if path != "stem"]
    assert [info.path for info in graph.nested_models(model)] == ["stem"]
    assert graph.model_input_size(model) == (SIZE, SIZE)


def test_input_links_point_to_the_innermost_call_that_produced_the_input(keras):
    model = _called(_net(keras))
    found = trace(model)
    assert found.input_of(model.head) is model.pool
    assert found.input_of(model.pool) is model.block1.c2  # block1 returned c2's own tensor
    assert found.input_of(model.block1.c2) is model.block1.c1
    assert found.input_of(model.block1.c1) is model.stem.get_layer("s2")
    assert found.input_of(model.block1) is model.stem.get_layer("s2")
    assert found.input_of(model.stem.get_layer("s1")) is None  # the image itself
    assert found.input_of(model.stem) is None
    assert graph.input_layer_of(model, model.head) is model.pool


def test_a_never_called_model_traced_at_input_size_lists_each_layer_once_at_its_last_call(keras):
    model = _net(keras, name="fresh")
    with pytest.raises(UnsupportedModel, match="input_size") as error:
        spec_for_model(model)
    assert "never been called" in str(error.value)
    spec = spec_for_model(model, input_size=(32, 32))
    assert spec.input_size == (32, 32)
    found = trace(model)
    assert found.input_shape == (None, 32, 32, 3)
    assert [call.path for call in found.last_calls()] == ORDER
    shapes = {call.path: call.output_shape for call in found.last_calls()}
    assert shapes["block1/c2"] == (None, 30, 30, 5) and shapes["head"] == (None, 3)
    assert graph.model_input_size(model) == (32, 32)
    assert graph.outputs_of(model)[0].layer is model.head


def test_the_automatic_layer_and_layer_look_ups_read_the_trace(keras):
    model = _called(_net(keras))
    spec_for_model(model)
    # walking back from the head: pool is pooling; the custom block's output is the last map
    assert auto_target_layer(model).path == "block1"
    assert [info.path for info in candidate_layers(model)] == ["stem/s1", "stem/s2", "block1/c1", "block1/c2",
                                                                "block1"]
    assert find_layer(model, "c2").path == "block1/c2"
    assert find_layer(model, "stem/s1").layer is model.stem.get_layer("s1")
    assert find_layer(model, "stem").layer is model.stem  # a nested model may be named


@pytest.mark.parametrize(("squash", "expected"), [
    ("tf.nn.softmax", "softmax"),
    ("keras.ops.softmax", "softmax"),
    ("tf.nn.sigmoid", "sigmoid"),
    ("keras.ops.sigmoid", "sigmoid"),
    (None, None),
])
def test_a_squash_written_in_call_is_recognised_after_the_last_layer(keras, squash, expected):
    import tensorflow as tf

    functions = {"tf.nn.softmax": tf.nn.softmax, "keras.ops.softmax": keras.ops.softmax,
                 "tf.nn.sigmoid": tf.nn.sigmoid, "keras.ops.sigmoid": keras.ops.sigmoid, None: None}
    model = _called(_net(keras, functions[squash]))
    (output,) = trace(model).outputs
    assert output.squash_after == expected
    assert output.shape == (None, 3)
    assert output.name == "head"
    assert trace(model).calls[output.call].layer is model.head
    (info,) = graph.outputs_of(model)
    assert info.layer is model.head and info.squash_after == expected


def test_an_activation_inside_the_last_layer_is_no_squash_after_it(keras):
    layers = keras.layers

    class Inside(keras.Model):
        def __init__(self):
            super().__init__(name="inside")
            self.conv = layers.Conv2D(4, 3)
            self.pool = layers.GlobalAveragePooling2D()
            self.head = layers.Dense(3, activation="softmax", name="probs")

        def call(self, x):
            return self.head(self.pool(self.conv(x)))

    model = _called(Inside())
    (output,) = trace(model).outputs
    assert output.squash_after is None
    assert trace(model).calls[output.call].layer is model.head
    assert output.name == "probs"


def test_outputs_are_matched_to_the_innermost_layer_that_returned_them(keras):
    layers = keras.layers

    class TwoHeads(keras.Model):
        def __init__(self):
            super().__init__(name="two_heads")
            self.conv = layers.Conv2D(4, 3, name="conv")
            self.pool = layers.GlobalAveragePooling2D(name="pool")
            self.top = keras.Sequential([layers.Dense(6, name="hidden"), layers.Dense(3, name="kind")], name="top")
            self.age = layers.Dense(1, name="age")

        def call(self, x):
            features = self.pool(self.conv(x))
            return {"kind": self.top(features), "age": self.age(features)}

    model = _called(TwoHeads())
    found = trace(model)
    by_name = {output.name: output for output in found.outputs}
    assert set(by_name) == {"kind", "age"}
    assert found.calls[by_name["kind"].call].layer is model.top.get_layer("kind")  # not the Sequential
    assert found.calls[by_name["age"].call].layer is model.age
    assert by_name["kind"].shape == (None, 3) and by_name["age"].shape == (None, 1)
    assert all(output.squash_after is None for output in found.outputs)
    assert found.input_of(model.age) is model.pool


def _two_input_models(keras):
    layers = keras.layers
    image = np.zeros((1, 8, 8, 3), np.float32)

    class ListInput(keras.Model):
        def __init__(self):
            super().__init__(name="list_input")
            self.conv = layers.Conv2D(3, 3)

        def call(self, x):
            return self.conv(x[0]) + self.conv(x[1])

    class DictInput(ListInput):
        def call(self, x):
            return self.conv(x["image"]) + self.conv(x["mask"])

    class TwoArguments(ListInput):
        def call(self, image, mask):
            return self.conv(image) + self.conv(mask)

    list_model, dict_model, two_arguments = ListInput(), DictInput(), TwoArguments()
    list_model([image, image])
    dict_model({"image": image, "mask": image})
    two_arguments(image, image)
    return {"list": list_model, "dict": dict_model, "arguments": two_arguments}


@pytest.mark.parametrize("form", ["list", "dict", "arguments"])
def test_a_model_called_on_two_inputs_is_refused(keras, form):
    model = _two_input_models(keras)[form]
    with pytest.raises(UnsupportedModel) as error:
        spec_for_model(model)
    message = str(error.value)
    assert model.name in message and "\n" not in message
    if form != "arguments":  # Keras records only the first argument's shape for call(image, mask)
        assert "one image input" in message


def test_a_model_failing_on_the_traced_batch_gives_one_line(keras):
    layers = keras.layers

    class Picky(keras.Model):
        def __init__(self):
            super().__init__(name="picky")
            self.conv = layers.Conv2D(3, 3)

        def call(self, x):
            if x.shape[1] != 32:
                raise ValueError(f"wants 32 px, got {x.shape[1]}\nsecond line of the traceback-like text")
            return self.conv(x)

    model = _called(Picky(), size=32)
    with pytest.raises(UnsupportedModel) as error:
        spec_for_model(model, input_size=(20, 20))
    message = str(error.value)
    assert "\n" not in message
    assert "picky" in message and "ValueError" in message and "wants 32 px, got 20" in message
    assert "second line" not in message
    assert "input_size" in message
    assert spec_for_model(model, input_size=(32, 32)).input_size == (32, 32)  # the size it takes works


def test_a_built_in_shape_mismatch_gives_one_line(keras):
    """Keras' own multi-line error (a Dense built for another size) comes back as one line too."""
    layers = keras.layers

    class Flat(keras.Model):
        def __init__(self):
            super().__init__(name="flat")
            self.conv = layers.Conv2D(3, 3)
            self.flatten = layers.Flatten()
            self.head = layers.Dense(2)

        def call(self, x):
            return self.head(self.flatten(self.conv(x)))

    model = _called(Flat())
    with pytest.raises(UnsupportedModel, match="20x20x3") as error:
        spec_for_model(model, input_size=(20, 20))
    assert "\n" not in str(error.value) and "flat" in str(error.value)
