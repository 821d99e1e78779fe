"""Labels files (gradcam_cli/models/labels.py): checked against the model, each problem one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradcam_cli.manifest import MANIFEST
from tests.helpers import PAIR, run


def stored_rows(folder: Path) -> list[dict]:
    """The rows as stored (output paths relative to the manifest's folder)."""
    return [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]


NAMES = ["circle", "square", "triangle", "star", "cross"]


@pytest.mark.parametrize(("content", "message"), [
    ("\n".join(NAMES[:4]).encode(), "4 labels for a model with 5 classes"),
    ("\n".join(["circle", "", *NAMES[1:]]).encode(), "line 2 is blank"),
    ("\n".join(["circle", "circle", *NAMES[2:]]).encode(), "line 2 repeats 'circle'"),
    ("\n".join(NAMES).encode("utf-16"), "not UTF-8"),
    ("\n".join(["circl\xe9", *NAMES[1:]]).encode("latin-1"), "not UTF-8 text (line 1)"),
])
def test_bad_labels_files_fail_with_one_line(tmp_path, content, message):
    labels = tmp_path / "labels.txt"
    labels.write_bytes(content)
    result = run("explain", PAIR, "--labels", labels, "-o", tmp_path / "out")
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and str(labels) in result.output


@pytest.mark.slow
def test_labels_with_a_byte_order_mark_and_trailing_blank_lines_work(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_bytes("\n".join(NAMES + ["", ""]).encode("utf-8-sig"))
    result = run("explain", PAIR, "--labels", labels, "--class", "circle", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert stored_rows(tmp_path / "out")[0]["label"] == "circle"


@pytest.mark.slow
def test_imagenet_names_ship_with_the_package_and_need_no_download(tmp_path, monkeypatch, capsys):
    from gradcam_cli.models import resolve_model
    from gradcam_cli.models.labels import IMAGENET_CLASS_INDEX, imagenet_labels

    def no_network(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    monkeypatch.setattr("urllib.request.urlretrieve", no_network)
    names = imagenet_labels()
    assert len(names) == 1000 and names[0] == "tench" and names[281] == "tabby" and names[999] == "toilet_tissue"
    assert json.loads(IMAGENET_CLASS_INDEX.read_text())["281"] == ["n02123045", "tabby"]
    spec = resolve_model("mobilenet_v2", weights="none", input_size=(32, 32))
    assert spec.label(281) == "tabby"
    assert "Downloading" not in capsys.readouterr().out


def test_a_class_is_named_by_label_index_or_the_tools_own_class_n(demo_spec):
    from gradcam_cli.targets import resolve_classes

    assert resolve_classes(demo_spec, ["triangle", "1", "class_4"], demo_spec.num_classes) == [2, 1, 4]
