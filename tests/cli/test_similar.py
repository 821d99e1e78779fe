"""``gradcam similar`` (gradcam_cli/cli/similar.py): rows with the similarity and the reference, the map
on the patch that matches it, a broken query among good ones, one-line refusals, and a
keras.applications backbone used as a feature extractor end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gradcam_cli.manifest import MANIFEST
from tests.helpers import ROOT, SHAPES, run
from tests.similarity_models import PATTERN_A, PATTERN_B, left_share, pattern_model, two_patch

PHOTOS = ROOT / "sample_images" / "photos"


@pytest.fixture(scope="module")
def pattern_file(keras, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "patterns.keras"
    pattern_model(keras).save(path)
    return path


def rows_of(out) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


@pytest.mark.slow
def test_rows_record_the_similarity_and_each_reference_and_a_broken_query_leaves_the_rest(pattern_file, tmp_path):
    queries, concept = tmp_path / "queries", tmp_path / "concept"
    queries.mkdir()
    concept.mkdir()
    Image.fromarray(two_patch(PATTERN_A, PATTERN_B)).save(queries / "ab.png")
    Image.fromarray(PATTERN_A).save(queries / "a.png")
    (queries / "broken.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(PATTERN_B).save(tmp_path / "b.png")
    for shift in (0, 1):  # a concept of B: vertical stripes at two phases
        Image.fromarray(np.roll(PATTERN_B, shift, axis=1)).save(concept / f"b{shift}.png")
    out = tmp_path / "out"
    result = run("similar", queries, "--reference", queries / "a.png", "--reference", concept, "--model",
                 pattern_file, "-o", out)
    assert result.exit_code == 1, result.output  # one input failed, the others were explained
    assert "broken.jpg" in result.stderr and "Traceback" not in result.output
    assert "cosine 1.000 to a.png" in result.stdout  # the reference itself, through the same decode path
    rows = rows_of(out)
    ok = {(row["input"].rsplit("/", 1)[-1], row["label"]): row for row in rows if row["status"] == "ok"}
    assert sorted(ok) == [("a.png", "a.png"), ("a.png", "concept/"), ("ab.png", "a.png"), ("ab.png", "concept/")]
    assert [row["input"].rsplit("/", 1)[-1] for row in rows if row["status"] == "error"] == ["broken.jpg"]
    to_a, to_concept = ok[("ab.png", "a.png")], ok[("ab.png", "concept/")]
    assert to_a["head"] == "similarity" and to_a["probability"] is None
    assert to_a["reference"] == {"path": str((queries / "a.png").resolve()), "images": 1}
    assert to_concept["reference"] == {"path": str(concept.resolve()), "images": 2}
    assert ok[("a.png", "a.png")]["similarity"] == pytest.approx(1.0, abs=1e-5)
    # at cos = 1 the gradient vanishes: that map is rounding noise, flagged (found by the hostile pass)
    assert ok[("a.png", "a.png")]["rounding_noise"] is True and to_a["rounding_noise"] is False
    assert ok[("a.png", "a.png")]["similarity"] <= 1.0
    assert ok[("a.png", "concept/")]["similarity"] == pytest.approx(0.0, abs=1e-3)  # no vertical stripe in A
    assert 0.6 < to_a["similarity"] < 0.8 and 0.6 < to_concept["similarity"] < 0.8
    assert left_share(np.load(out / to_a["heatmap"])) > 0.95  # A lies on the left of ab.png
    assert left_share(np.load(out / to_concept["heatmap"])) < 0.05  # B on the right
    run("similar", queries, "--reference", queries / "a.png", "--reference", concept, "--model", pattern_file,
        "-o", out, "-q")
    assert {row["run"] for row in rows_of(out) if row["status"] == "ok"} == {to_a["run"]}  # resumed
    run("similar", queries, "--reference", tmp_path / "b.png", "--model", pattern_file, "-o", out, "-q")
    redone = [row for row in rows_of(out) if row["status"] == "ok" and row["run"] != to_a["run"]]
    assert sorted(row["label"] for row in redone) == ["b.png", "b.png"]  # another reference: another run


@pytest.mark.parametrize("case", ["missing", "empty folder", "classifier output", "broken reference"])
def test_bad_references_and_class_outputs_are_one_line_and_exit_2(case, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    reference, expected = {
        "missing": (tmp_path / "nope.png", "nope.png: no such reference image or folder"),
        "empty folder": (empty, "the reference folder holds no image file"),
        "classifier output": (SHAPES / "03_single_triangle.png",
                              "is a softmax over 5 classes, class probabilities rather than an embedding; name the "
                              "embedding layer with --model-output LAYER (e.g. --model-output gap"),
        "broken reference": (tmp_path / "broken.png", "reference image"),
    }[case]
    embedding = () if case == "classifier output" else ("--model-output", "gap")
    result = run("similar", SHAPES / "05_pair_circle_triangle.png", "--reference", reference, "--model", "demo",
                 *embedding, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradcam: error: ") and expected in lines[0], result.stderr
    if case == "broken reference":  # one piece of advice, not the decoder's and a second one
        assert lines[0].count("; ") == 1 and "fix or remove it" not in lines[0], lines[0]
    assert "Traceback" not in result.output and not (tmp_path / "out" / MANIFEST).exists()


@pytest.mark.slow
def test_a_keras_applications_backbone_as_feature_extractor_on_photos(tmp_path):
    factory = tmp_path / "backbone.py"
    factory.write_text("import keras\n\n\ndef build():\n    keras.utils.set_random_seed(3)\n"
                       "    return keras.applications.MobileNetV2(include_top=False, pooling='avg', weights=None,\n"
                       "                                          input_shape=(64, 64, 3))\n")
    out = tmp_path / "out"
    result = run("similar", PHOTOS / "cat.jpg", PHOTOS / "astronaut.jpg", PHOTOS / "coffee.jpg",
                 "--reference", PHOTOS / "cat.jpg", "--model", f"{factory}:build", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    rows = {row["input"].rsplit("/", 1)[-1]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {"cat.jpg", "astronaut.jpg", "coffee.jpg"}
    assert rows["cat.jpg"]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert all(-1 <= rows[name]["similarity"] < 0.9999 for name in ("astronaut.jpg", "coffee.jpg"))
    assert {row["layer"] for row in rows.values()} == {"out_relu"}  # the backbone's last map, as for the classifier
    assert all(row["heatmap_shape"] == [2, 2] and (out / row["overlay"]).exists() for row in rows.values())
    assert all(row["output"].startswith("global_average_pooling2d") for row in rows.values())  # Keras numbers it


@pytest.mark.parametrize("command", ["compare", "evaluate"])
def test_compare_and_evaluate_refuse_a_missing_reference_in_one_line_before_the_model_loads(command, tmp_path):
    result = run(command, SHAPES / "05_pair_circle_triangle.png", "--reference", tmp_path / "nope.png",
                 "--model", tmp_path / "no_such_model.keras", "-o", tmp_path / ("sheet.png" if command == "compare"
                                                                                else "out"))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "nope.png: no such reference image or folder" in lines[0], result.output


@pytest.mark.slow
def test_compare_and_evaluate_explain_the_similarity_to_each_reference_on_the_command_line(pattern_file, tmp_path,
                                                                                           monkeypatch):
    from PIL import ImageDraw

    from gradcam_cli.compare import CAPTION, TILE

    queries = tmp_path / "queries"
    queries.mkdir()
    Image.fromarray(two_patch(PATTERN_A, PATTERN_B)).save(queries / "ab.png")
    Image.fromarray(two_patch(PATTERN_B, PATTERN_A)).save(queries / "ba.png")
    Image.fromarray(PATTERN_A).save(tmp_path / "a.png")
    Image.fromarray(PATTERN_B).save(tmp_path / "b.png")
    written = []
    plain_text = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text",
                        lambda self, xy, text, *a, **k: written.append(text) or plain_text(self, xy, text, *a, **k))
    sheet = tmp_path / "sheet.png"
    result = run("compare", queries / "ab.png", "--reference", tmp_path / "a.png", "--reference", tmp_path / "b.png",
                 "--model", pattern_file, "--methods", "gradcam,layercam", "-o", sheet)
    assert result.exit_code == 0, result.output
    assert Image.open(sheet).size == (3 * TILE, 2 * (TILE + CAPTION) + CAPTION)  # a row per reference
    assert written.count("cosine 0.707 to a.png") == 2 and written.count("cosine 0.707 to b.png") == 2
    # --model-output names the embedding, here an inner layer (the pooled features the Dense layer mixes)
    out = tmp_path / "evaluated"
    result = run("evaluate", queries, "--reference", tmp_path / "a.png", "--model", pattern_file, "--model-output",
                 "gap", "--methods", "gradcam,center", "--steps", "4", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert scored["metrics"] == ["deletion", "insertion", "increase"]  # Average Drop divides by a cosine: left out
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {row["label"] for row in rows} == {"a.png"} and {round(row["probability"], 3) for row in rows} == {0.707}
    deletion = {method: scored["methods"][method]["deletion"]["mean"] for method in ("gradcam", "center")}
    assert deletion["gradcam"] < deletion["center"] - 0.15  # the reference's half deleted first kills the similarity
