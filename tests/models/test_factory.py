"""``--model FILE.py:FACTORY`` and ``--model package.module:FACTORY`` (gradcam_cli/models/factory.py):
what a reference may name, the sidecar beside the file, and each refusal as one line, exit code 2."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.models import resolve_model
from gradcam_cli.models.references import is_factory_reference, split_reference
from tests.helpers import run

SIZE = 16

NETS = f'''
import keras
import numpy

from helper import WIDTH  # a sibling of this file, found as `python nets.py` would find it


def build():
    """conv -> GAP -> Dense(3): the head's bias makes every image class 1 ('banana' in the sidecar)."""
    inputs = keras.Input(({SIZE}, {SIZE}, 3))
    x = keras.layers.Conv2D(WIDTH, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    head = keras.layers.Dense(3, activation="softmax", name="head")
    model = keras.Model(inputs, head(x), name="built")
    kernel, _ = head.get_weights()
    head.set_weights([kernel * 0.0, numpy.array([0.0, 8.0, 0.0], "float32")])
    return model


model = build()


class Small(keras.Model):
    """A subclassed model: called with no arguments, never called on an image."""

    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(WIDTH, 3, activation="relu", name="conv")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.head(self.pool(self.conv(x)))


class Nets:
    small = staticmethod(build)


def boom():
    raise ValueError("no weights for boom")


class Broken(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3)
        self.flat = keras.layers.Reshape((7,))

    def call(self, x):
        return self.flat(self.conv(x))


def wrapped():
    """Raises inside a Keras layer call: Keras wraps it in "Exception encountered when calling ..."."""
    broken = Broken()
    broken(keras.ops.zeros((1, {SIZE}, {SIZE}, 3)))
    return broken


def not_a_model():
    return 42


NUMBER = 7
'''


@pytest.fixture(scope="module")
def factory_dir(tmp_path_factory):
    """nets.py (with its sibling helper.py and a sidecar naming the classes), a package folder
    holding the same code as a module, and an image of the model's input size."""
    folder = tmp_path_factory.mktemp("factory")
    (folder / "nets.py").write_text(NETS)
    (folder / "helper.py").write_text("WIDTH = 4\n")
    (folder / "nets.gradcam.json").write_text(json.dumps({"labels": ["apple", "banana", "cherry"]}))
    package = folder / "packages" / "gradcam_test_zoo"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(NETS.replace("from helper import WIDTH", "WIDTH = 4"))
    picture = np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(picture).save(folder / "a.png")
    return folder


def explain(factory_dir, tmp_path, reference, *extra):
    return run("explain", factory_dir / "a.png", "--model", reference, "-o", tmp_path / "out", *extra)


def one_line_refusal(result) -> str:
    """The single line a refusal writes on stderr (asserting that it is single, exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("attribute", ["build", "model", "Nets.small"])
def test_a_factory_an_instance_and_a_dotted_attribute_build_the_model(factory_dir, tmp_path, attribute):
    reference = f"{factory_dir / 'nets.py'}:{attribute}"
    before = list(sys.path)
    result = explain(factory_dir, tmp_path, reference, "--json")
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["status"] == "ok" and row["layer"] == "conv" and row["model"] == f"nets.py:{attribute}"
    assert row["class_index"] == 1 and row["label"] == "banana"  # the sidecar's labels, the factory's bias
    assert sys.path == before  # the file's folder led sys.path only while it was imported


def test_the_sidecar_names_the_printed_class(factory_dir, tmp_path):
    result = explain(factory_dir, tmp_path, f"{factory_dir / 'nets.py'}:build")
    assert result.exit_code == 0, result.output
    assert "a.png: banana" in result.output
    spec = resolve_model(f"{factory_dir / 'nets.py'}:build")
    assert spec.labels == ["apple", "banana", "cherry"] and spec.input_size == (SIZE, SIZE)


def test_a_sibling_import_works_from_another_working_folder(factory_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # helper.py is not here: only beside nets.py
    spec = resolve_model(f"{factory_dir / 'nets.py'}:build")
    assert spec.model.get_layer("conv").filters == 4


def test_a_subclass_needs_the_input_size(factory_dir, tmp_path):
    reference = f"{factory_dir / 'nets.py'}:Small"
    line = one_line_refusal(explain(factory_dir, tmp_path, reference))
    assert "input size is unknown" in line and "--input-size" in line
    result = explain(factory_dir, tmp_path, reference, "--input-size", str(SIZE), "--json")
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["status"] == "ok" and row["label"] in ("apple", "banana", "cherry")


def test_a_module_reference(factory_dir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(factory_dir / "packages"))
    result = explain(factory_dir, tmp_path, "gradcam_test_zoo.nets:build", "--json")
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["status"] == "ok" and row["model"] == "gradcam_test_zoo.nets:build" and row["class_index"] == 1
    assert split_reference("gradcam_test_zoo.nets:Nets.small") == ("gradcam_test_zoo.nets", "Nets.small", False)


def test_a_factory_that_raises_is_named_with_the_cause(factory_dir, tmp_path):
    line = one_line_refusal(explain(factory_dir, tmp_path, f"{factory_dir / 'nets.py'}:boom"))
    assert "boom()" in line and "ValueError: no weights for boom" in line
    line = one_line_refusal(explain(factory_dir, tmp_path, f"{factory_dir / 'nets.py'}:wrapped"))
    assert "wrapped()" in line and "The total size of the tensor must be unchanged" in line
    assert "Exception encountered" not in line and "\x1b[" not in line  # Keras's wrapper and its bold


@pytest.mark.parametrize(("attribute", "expected"), [
    ("not_a_model", ["not_a_model()", "returned a", "int", "not a keras.Model"]),
    ("NUMBER", ["NUMBER", "int", "not a keras.Model"]),
    ("nothere", ["no attribute 'nothere'", "build", "boom", "Small"]),
    ("Nets.nothere", ["no attribute 'Nets.nothere'"]),
])
def test_references_that_name_no_model(factory_dir, tmp_path, attribute, expected):
    line = one_line_refusal(explain(factory_dir, tmp_path, f"{factory_dir / 'nets.py'}:{attribute}"))
    assert all(text in line for text in expected), line


def test_a_missing_attribute_lists_the_model_instances_too(factory_dir, tmp_path):
    """nets.py defines ``model = build()``: a keras.Model instance is a valid target, so it is offered."""
    line = one_line_refusal(explain(factory_dir, tmp_path, f"{factory_dir / 'nets.py'}:modle"))
    assert "it defines" in line, line
    offered = line.split("it defines", 1)[1].strip(" .").split(", ")
    assert "build" in offered and "model" in offered, line


def test_missing_files_and_modules(factory_dir, tmp_path):
    line = one_line_refusal(explain(factory_dir, tmp_path, f"{tmp_path / 'nope.py'}:build"))
    assert "no such Python file" in line and "nope.py" in line
    line = one_line_refusal(explain(factory_dir, tmp_path, "gradcam_no_such_package.nets:build"))
    assert "no module named 'gradcam_no_such_package'" in line and "FILE.py:FACTORY" in line


def test_weights_with_a_factory_is_refused(factory_dir, tmp_path):
    line = one_line_refusal(explain(factory_dir, tmp_path, f"{factory_dir / 'nets.py'}:build", "--weights", "none"))
    assert "--weights none" in line and "built by Python code" in line
    assert not (tmp_path / "out").exists()


def test_hub_is_a_preset_never_a_module(factory_dir, tmp_path, monkeypatch):
    """Even with a module named hub importable, ``hub:NAME`` goes to keras-hub (stubbed here)."""
    from gradcam_cli.errors import ModelNotFound
    from gradcam_cli.models import hub

    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "hub.py").write_text("def build():\n    raise AssertionError('hub.py was run')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "shadow"))
    asked = []

    def preset(name, **kwargs):
        asked.append(name)
        raise ModelNotFound(f"unknown keras-hub image classifier preset '{name}'.")

    monkeypatch.setattr(hub, "load_hub_preset", preset)
    assert split_reference("hub:build") is None and split_reference("HUB:build") is None
    assert not is_factory_reference("hub:build")
    line = one_line_refusal(explain(factory_dir, tmp_path, "hub:build"))
    assert asked == ["build"] and "keras-hub" in line and "hub.py was run" not in line


def test_layers_lists_the_candidates_and_the_pick(factory_dir):
    result = run("layers", "--model", f"{factory_dir / 'nets.py'}:build")
    assert result.exit_code == 0, result.output
    assert "conv" in result.stdout and "Conv2D" in result.stdout
    assert "automatic pick: conv" in result.output


def test_ray_actors_get_the_file_made_absolute(factory_dir, monkeypatch):
    from gradcam_cli.runners.ray import absolute_model_arguments

    monkeypatch.chdir(factory_dir)
    made = absolute_model_arguments({"model": "nets.py:build", "labels": None, "preprocess": "tf"})
    assert made == {"model": f"{factory_dir / 'nets.py'}:build", "labels": None, "preprocess": "tf"}
    assert os.path.isabs(made["model"].rsplit(":", 1)[0])
    for kept in ("gradcam_test_zoo.nets:build", "missing.py:build", "mobilenet_v2"):
        assert absolute_model_arguments({"model": kept})["model"] == kept


def test_reference_parsing():
    assert split_reference("nets.py:build") == ("nets.py", "build", True)
    assert split_reference("sub dir/my net.py:Nets.small") == ("sub dir/my net.py", "Nets.small", True)
    assert split_reference(r"C:\models\m.py:build") == (r"C:\models\m.py", "build", True)
    for text in ("resnet50", "model.keras", "nets.py:", "nets.py:1build", "hub:preset", "demo"):
        assert split_reference(text) is None, text


def test_hostile_references(factory_dir, tmp_path):
    spaced = tmp_path / "my models"
    spaced.mkdir()
    (spaced / "my net.py").write_text(NETS)
    (spaced / "helper.py").write_text("WIDTH = 4\n")
    result = explain(factory_dir, tmp_path, f"{spaced / 'my net.py'}:build", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["model"] == "my net.py:build"
    line = one_line_refusal(explain(factory_dir, tmp_path, r"C:\x\m.py:build"))
    assert "no such Python file" in line
    (tmp_path / "syntax.py").write_text("def build(:\n")
    line = one_line_refusal(explain(factory_dir, tmp_path, f"{tmp_path / 'syntax.py'}:build"))
    assert "importing syntax.py raised SyntaxError" in line


def test_a_keras_file_beside_a_py_file_and_demo_beside_demo_py(factory_dir, tmp_path, monkeypatch):
    """``model.keras`` is the file even where ``model.py`` exists; ``demo`` is the bundled model even
    where ``demo.py`` exists, and ``demo.py:build`` is that file's factory."""
    monkeypatch.chdir(tmp_path)
    for name in ("model.py", "demo.py"):
        (tmp_path / name).write_text(NETS)
    (tmp_path / "helper.py").write_text("WIDTH = 4\n")
    resolve_model(f"{factory_dir / 'nets.py'}:build").model.save(tmp_path / "model.keras")
    from_file = resolve_model("model.keras")
    assert from_file.name == "model.keras" and from_file.model.name == "built"
    built = resolve_model("model.py:build")
    assert built.name == "model.py:build" and built.source == f"{tmp_path / 'model.py'}:build"
    assert resolve_model("demo").name == "shapes_cnn.keras"
    assert resolve_model("demo.py:build").name == "demo.py:build"


def test_output_of_a_factory_does_not_corrupt_json_rows(factory_dir, tmp_path):
    """A factory that prints (``model.summary()`` is common) must not put text among --json rows."""
    (tmp_path / "talk.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(factory_dir)!r})
        from nets import build as _build

        def build():
            print("building the model")
            return _build()
    """))
    result = run("explain", factory_dir / "a.png", "--model", f"{tmp_path / 'talk.py'}:build", "--json",
                 "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    for line in result.stdout.splitlines():
        json.loads(line)


@pytest.mark.parametrize("code", ["import sys\nsys.exit(3)\n",
                                  "import argparse\nargparse.ArgumentParser().parse_args()\n"])
def test_a_file_that_exits_on_import_is_a_one_line_refusal(factory_dir, tmp_path, code):
    """A training script run on import (sys.exit, argparse reading gradcam's own arguments)."""
    (tmp_path / "script.py").write_text(code)
    line = one_line_refusal(explain(factory_dir, tmp_path, f"{tmp_path / 'script.py'}:build"))
    assert "script.py" in line


def test_two_factory_folders_each_import_their_own_sibling(tmp_path):
    """Python API: two files named alike in two folders, each beside its own helper.py; the second
    must not get the first folder's helper (still in sys.modules) and so build the wrong model."""
    for folder, width in (("first", 4), ("second", 9)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "nets.py").write_text(NETS)
        (tmp_path / folder / "helper.py").write_text(f"WIDTH = {width}\n")
    first = resolve_model(f"{tmp_path / 'first' / 'nets.py'}:build")
    second = resolve_model(f"{tmp_path / 'second' / 'nets.py'}:build")
    assert (first.model.get_layer("conv").filters, second.model.get_layer("conv").filters) == (4, 9)
