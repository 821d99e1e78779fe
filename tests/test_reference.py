"""References (gradcam_cli/reference.py) on a trained model, and through ``evaluate`` and ``compare``.

The trained model is the bundled demo classifier's penultimate layer as an embedding
(``model_output='gap'``), on bundled scenes it was not trained on (drawn by ``scripts/``, not the
lab's generator): no embedding model with its weights inside a PyPI package could be installed here
(docs/similarity.md says which were checked). ``evaluate`` and ``compare`` run on the two-texture
model of tests/similarity_models.py, where the answer is known."""

from __future__ import annotations

import json

import pytest

from gradcam_cli import explain
from tests.helpers import SHAPES

# (scene with two shapes, the scene holding the reference shape alone, that shape)
PAIRS = [("05_pair_circle_triangle.png", "03_single_triangle.png", "triangle"),
         ("08_pair_triangle_circle.png", "03_single_triangle.png", "triangle"),
         ("06_pair_square_star.png", "02_single_square.png", "square")]


@pytest.mark.slow
def test_the_penultimate_layer_of_the_demo_finds_the_shape_the_reference_shows():
    truth = json.loads((SHAPES / "ground_truth.json").read_text())
    for query, reference, shape in PAIRS:
        result = explain("demo", str(SHAPES / query), reference=str(SHAPES / reference), model_output="gap")
        shown = result.heatmap(0)
        boxes = {item["class"]: item["box_xyxy"] for item in truth[query]["objects"]}
        (left, top, right, bottom), = [box for name, box in boxes.items() if name == shape]
        (o_left, o_top, o_right, o_bottom), = [box for name, box in boxes.items() if name != shape]
        inside = shown[top:bottom, left:right].sum() / shown.sum()
        other = shown[o_top:o_bottom, o_left:o_right].sum() / shown.sum()
        area = (right - left) * (bottom - top) / shown.size
        # measured 2026-12-06 (benchmarks/similarity.py): inside 0.23, 0.16, 0.31 of the mass (1.6 to 14 times
        # the box's share of the picture), the other shape's box 0.006 at most
        assert inside > 1.3 * area and inside > 20 * other, (query, inside, other, area)
        assert 0.6 < result.probabilities[0, 0] < 1.0


@pytest.fixture(scope="module")
def two_patch_files(tmp_path_factory):
    """Two queries (A|B and B|A) and the reference A, as files."""
    from PIL import Image

    from tests.similarity_models import PATTERN_A, PATTERN_B, two_patch

    folder = tmp_path_factory.mktemp("two_patch")
    (folder / "queries").mkdir()
    Image.fromarray(two_patch(PATTERN_A, PATTERN_B)).save(folder / "queries" / "ab.png")
    Image.fromarray(two_patch(PATTERN_B, PATTERN_A)).save(folder / "queries" / "ba.png")
    Image.fromarray(PATTERN_A).save(folder / "a.png")
    return folder


@pytest.mark.slow
def test_evaluate_reads_deletion_and_insertion_on_the_similarity_and_refuses_average_drop(keras, two_patch_files):
    from gradcam_cli.errors import EvaluationError
    from gradcam_cli.evaluate import evaluate
    from gradcam_cli.inputs import collect_inputs
    from gradcam_cli.models.in_memory import spec_for_model
    from gradcam_cli.scoring import EvaluateOptions
    from tests.similarity_models import pattern_model

    spec = spec_for_model(pattern_model(keras))
    items = collect_inputs([str(two_patch_files / "queries")])
    reference = str(two_patch_files / "a.png")
    options = EvaluateOptions(reference=reference, methods=["gradcam", "center"], steps=4, batch_size=2)
    assert options.metrics == ["deletion", "insertion", "increase"]  # Average Drop left out by default
    scored = evaluate(items, spec, options)
    deletion = {method: scored.summaries[method]["deletion"]["mean"] for method in ("gradcam", "center")}
    insertion = {method: scored.summaries[method]["insertion"]["mean"] for method in ("gradcam", "center")}
    # removing the reference's half first kills the similarity at once; the centre baseline removes both halves
    # (measured: deletion 0.38 against 0.62, insertion 0.80 against 0.71)
    assert deletion["gradcam"] < deletion["center"] - 0.15 and insertion["gradcam"] > insertion["center"] + 0.05
    assert {row["label"] for row in scored.rows} == {"a.png"}
    assert {round(row["probability"], 3) for row in scored.rows} == {0.707}  # the similarity, not a probability
    with pytest.raises(EvaluationError, match="drop divides by the unaltered image's score"):
        evaluate(items, spec, EvaluateOptions(reference=reference, methods=["gradcam"], metrics=["drop"]))


@pytest.mark.slow
def test_compare_sheet_takes_the_reference_once_for_every_method(keras, two_patch_files, tmp_path):
    from gradcam_cli.compare import compare_sheet
    from gradcam_cli.errors import MethodError
    from gradcam_cli.models.in_memory import spec_for_model
    from gradcam_cli.options import RunOptions
    from tests.similarity_models import pattern_model

    spec = spec_for_model(pattern_model(keras))
    sheet, failures = compare_sheet(spec, [str(two_patch_files / "queries" / "ab.png")], ["gradcam", "layercam"],
                                    tmp_path / "sheet.png", RunOptions(reference=str(two_patch_files / "a.png")))
    assert not failures and sheet.exists()
    with pytest.raises(MethodError, match="class-agnostic"):
        compare_sheet(spec, [str(two_patch_files / "queries" / "ab.png")], ["eigencam"], tmp_path / "other.png",
                      RunOptions(reference=str(two_patch_files / "a.png")))
