"""``gradcam evaluate`` end to end: the files it writes, resuming, the --fail-under gate's exit codes,
usage errors and the CI job shown in docs/evaluate.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gradcam_cli.cli import cli
from tests.helpers import PAIR, ROOT, SHAPES, run

STEPS = 5


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    output = tmp_path_factory.mktemp("evaluate")
    result = run("evaluate", SHAPES, "--model", "demo", "--methods", "gradcam,random,center", "--steps", STEPS,
                 "--ground-truth", SHAPES / "ground_truth.json", "--sanity", "-o", output, "--report")
    return result, output


@pytest.mark.slow
def test_evaluate_writes_metrics_curves_and_report(evaluated):
    result, output = evaluated
    assert result.exit_code == 0, result.output
    summary = json.loads((output / "metrics.json").read_text())
    assert summary["metrics"] == ["deletion", "insertion", "drop", "increase", "pointing", "energy"]
    for method in ("gradcam", "random", "center"):
        for metric in summary["metrics"]:
            entry = summary["methods"][method][metric]
            # pointing and energy count apart the maps of a class the image's boxes do not hold
            # (the model's top-1 is wrong on one sample), never as misses
            apart = entry.get("without_class", 0) + entry.get("unannotated", 0)
            assert entry["n"] + apart == 12 and entry["ci95"][0] <= entry["mean"] <= entry["ci95"][1]
        assert len(summary["curves"][method]["deletion"]) == STEPS + 1
    assert summary["sanity"]["random"]["flagged"] and summary["sanity"]["center"]["flagged"]
    assert not summary["sanity"]["gradcam"]["flagged"]
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 36 and {row["ground_truth"] for row in rows} <= {"scored", "without_class"}
    assert sum(row["ground_truth"] == "scored" for row in rows) == sum(
        summary["methods"][m]["pointing"]["n"] for m in ("gradcam", "random", "center"))
    table = [line for line in result.output.splitlines() if line.split()[:1] in (["gradcam"], ["random"], ["center"])]
    ranked = [line.split()[0] for line in table]
    deletion = {m: summary["methods"][m]["deletion"]["mean"] for m in ranked}
    assert ranked == sorted(ranked, key=deletion.get)  # best first by the first metric (deletion: lower)
    from PIL import Image

    assert Image.open(output / "curves.png").size[0] > 600
    page = (output / "index.html").read_text()
    assert "Evaluation: " in page and "curves.png" in page and "flagged" in page
    assert summary["baselines"] == [m for m in summary["ranking"] if m in ("random", "center")]
    assert "<tr><th>gradcam</th>" in page  # the evaluation table marks the baselines, and only them
    for baseline in ("random", "center"):
        assert f"<tr class=baseline><th>{baseline} <small>(baseline)</small></th>" in page


@pytest.mark.slow
def test_a_rerun_reuses_rows_scored_with_the_same_settings(tmp_path):
    common = ["evaluate", SHAPES / "01_single_cross.png", SHAPES / "05_pair_circle_triangle.png", "--methods",
              "gradcam,center", "--steps", 2, "-q", "-o", tmp_path]
    first = run(*common)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert first.exit_code == 0 and summary["forward_passes"]["explained_images"] == 4
    again = run(*common)
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    assert again.exit_code == 0 and resumed["forward_passes"]["explained_images"] == 0
    assert resumed["methods"] == summary["methods"] and resumed["curves"] == summary["curves"]
    changed = run(*common, "--top-k", 2)  # other targets: scored afresh
    assert changed.exit_code == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["forward_passes"]["explained_images"] == 4
    run(*common, "--top-k", 2, "--overwrite")
    assert json.loads((tmp_path / "metrics.json").read_text())["forward_passes"]["explained_images"] == 4


@pytest.mark.slow
def test_gate_exit_codes(tmp_path, evaluated):
    # two samples whose Grad-CAM maximum lies on the object and whose random map's does not
    common = ["evaluate", SHAPES / "02_single_square.png", SHAPES / "03_single_triangle.png", "--methods",
              "gradcam,random", "--metrics", "insertion,pointing", "--ground-truth", SHAPES / "ground_truth.json",
              "--steps", 2, "-q"]
    passing = run(*common, "-o", tmp_path / "a", "--fail-under", "pointing:gradcam=0.5")
    assert passing.exit_code == 0, passing.output
    failing = run(*common, "-o", tmp_path / "b", "--fail-under", "insertion:gradcam=1.01", "--fail-under",
                  "pointing=0.9", "--fail-under", "pointing:random=0.9")
    assert failing.exit_code == 5
    missed = [line for line in failing.output.splitlines() if line.startswith("gradcam: fail-under:")]
    assert len(missed) == 2 and "insertion:gradcam=1.01: gradcam insertion" in missed[0]
    assert "pointing:random=0.9: random pointing = 0.000, below 0.9" in missed[1]
    bad_image = tmp_path / "broken.png"
    bad_image.write_bytes(b"not a picture")
    one_bad = run(*common[:3], bad_image, *common[3:], "-o", tmp_path / "c")
    assert one_bad.exit_code == 1 and "broken.png" in one_bad.output
    both = run(*common[:3], bad_image, *common[3:], "-o", tmp_path / "d", "--fail-under", "insertion=1.01")
    assert both.exit_code == 5
    usage = run(*common, "-o", tmp_path / "e", "--fail-under", "insertion>0.5")
    assert usage.exit_code == 2 and "METRIC[:METHOD]=VALUE" in usage.output
    for bad_methods in (",", "gradcam,nonsense"):
        wrong = run("evaluate", SHAPES / "01_single_cross.png", "--methods", bad_methods, "-o", tmp_path / "f")
        assert wrong.exit_code == 2 and "Traceback" not in wrong.output


@pytest.mark.parametrize(("gate", "says"), [
    ("pointing:gradcam++=0.9", "gradcam++ is not evaluated (add it to --methods)"),
    ("energy:gradcam=0.4", "energy is not scored (add --ground-truth FILE and energy to --metrics)"),
])
def test_gate_that_could_never_be_checked_is_a_usage_error_before_scoring(tmp_path, gate, says) -> None:
    # It used to be reported only after every image was scored, as a missed threshold (exit 5).


    shapes = Path(__file__).resolve().parents[2] / "sample_images" / "shapes"
    result = CliRunner().invoke(cli, ["evaluate", str(shapes / "01_single_cross.png"), "--model", "demo",
                                       "--methods", "gradcam,random", "--metrics", "insertion,pointing",
                                       "--ground-truth", str(shapes / "ground_truth.json"), "--steps", "2",
                                       "-o", str(tmp_path), "--fail-under", gate])
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing was scored


def test_pointing_without_ground_truth_and_bad_ground_truth_are_usage_errors(tmp_path):
    no_boxes = run("evaluate", SHAPES / "01_single_cross.png", "--metrics", "pointing", "-o", tmp_path)
    assert no_boxes.exit_code == 2 and "--ground-truth" in no_boxes.output
    broken = tmp_path / "gt.json"
    broken.write_text("{not json")
    bad = run("evaluate", SHAPES / "01_single_cross.png", "--ground-truth", broken, "-o", tmp_path)
    assert bad.exit_code == 2 and "gt.json" in bad.output and "Traceback" not in bad.output


@pytest.mark.slow
def test_maps_of_a_class_the_image_does_not_hold_are_counted_apart(tmp_path):
    result = run("evaluate", SHAPES / "01_single_cross.png", "--methods", "gradcam", "--metrics", "pointing,energy",
                 "--top-k", 2, "--ground-truth", SHAPES / "ground_truth.json", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    pointing = json.loads((tmp_path / "metrics.json").read_text())["methods"]["gradcam"]["pointing"]
    assert pointing["n"] == 1 and pointing["without_class"] == 1 and pointing["unannotated"] == 0
    assert "counted apart, not as misses: 1 map(s)" in result.output


def test_evaluate_help_imports_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from gradcam_cli.cli import cli; "
            "r = CliRunner().invoke(cli, ['evaluate', '--help']); assert r.exit_code == 0, r.output; "
            "print('tensorflow' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"


@pytest.mark.slow
def test_the_readme_ci_job_passes_on_the_bundled_samples(tmp_path):
    """.ci/evaluate (shown in docs/evaluate.md) must pass as shipped: the gate's thresholds hold for the demo model."""
    script = (ROOT / ".ci" / "evaluate").read_text()
    command = script[script.index(".venv/bin/gradcam evaluate"):].replace("\\\n", " ").split()
    assert command[1] == "evaluate" and command.count("--fail-under") >= 3
    arguments = [str(ROOT / a) if a.startswith("sample_images") else a for a in command[1:]]
    arguments[arguments.index("-o") + 1] = str(tmp_path)
    result = run(*arguments)
    assert result.exit_code == 0, result.output
    assert "fail-under" not in result.output


@pytest.mark.slow
def test_an_input_is_known_by_its_real_path_however_it_is_typed(tmp_path, monkeypatch):
    """Rows name the resolved real path, as explain's manifest does, so a rerun that reaches the same
    file by another spelling (relative, through a symlink) reuses its rows instead of scoring again."""
    folder = tmp_path / "inn"
    folder.mkdir()
    (folder / "a.png").write_bytes((SHAPES / "01_single_cross.png").read_bytes())
    (tmp_path / "link.png").symlink_to(folder / "a.png")
    monkeypatch.chdir(tmp_path)
    first = run("evaluate", "inn/a.png", "--methods", "gradcam", "--metrics", "drop", "-o", "ev")
    assert first.exit_code == 0, first.output
    rows = [json.loads(line) for line in (tmp_path / "ev" / "metrics.jsonl").read_text().splitlines()]
    assert [row["input"] for row in rows] == [str((folder / "a.png").resolve())]
    again = run("evaluate", "link.png", "--methods", "gradcam", "--metrics", "drop", "-o", "ev", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["forward_passes"]["explained_images"] == 0  # reused, not rescored
    reused = [json.loads(line) for line in (tmp_path / "ev" / "metrics.jsonl").read_text().splitlines()]
    assert reused == rows  # as written, not migrated like a manifest row


@pytest.mark.slow
def test_max_megapixels_bounds_evaluate_and_the_rest_is_scored(tmp_path):
    from PIL import Image

    folder = tmp_path / "inn"
    folder.mkdir()
    (folder / "small.png").write_bytes((SHAPES / "01_single_cross.png").read_bytes())
    Image.new("RGB", (1600, 1000), "gray").save(folder / "big.png")  # 1.6 MP, decoded whole (PNG)
    result = run("evaluate", folder, "--methods", "gradcam", "--metrics", "drop", "--max-megapixels", 1,
                 "-o", tmp_path / "ev")
    assert result.exit_code == 1, result.output
    assert "big.png" in result.output and "--max-megapixels 1" in result.output
    summary = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert summary["images"] == 1 and summary["methods"]["gradcam"]["drop"]["n"] == 1


def test_evaluate_scores_the_named_output_of_a_multi_output_model(two_output_model_file, tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes((SHAPES / "01_single_cross.png").read_bytes())
    refused = run("evaluate", image, "--model", two_output_model_file, "--methods", "gradcam", "--metrics", "drop",
                  "-o", tmp_path / "none")
    assert refused.exit_code == 2 and "--model-output NAME|INDEX" in refused.output, refused.output
    scored = run("evaluate", image, "--model", two_output_model_file, "--model-output", "kind", "--methods",
                 "gradcam", "--metrics", "drop", "-o", tmp_path / "kind")
    assert scored.exit_code == 0, scored.output
    assert json.loads((tmp_path / "kind" / "metrics.json").read_text())["methods"]["gradcam"]["drop"]["n"] == 1


@pytest.mark.slow
def test_an_interrupted_evaluate_keeps_its_rows_and_a_rerun_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    from gradcam_cli.scoring import Evaluator

    arguments = [SHAPES, "--methods", "gradcam,random", "--metrics", "drop,deletion", "--steps", 3, "-b", 4,
                 "--ground-truth", SHAPES / "ground_truth.json"]
    whole = run("evaluate", *arguments, "-o", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output

    real_score_batch = Evaluator.score_batch
    calls = []

    def interrupted_on_the_second_batch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_score_batch(self, *args, **kwargs)

    monkeypatch.setattr(Evaluator, "score_batch", interrupted_on_the_second_batch)
    stopped = run("evaluate", *arguments, "-o", tmp_path / "resumed")
    assert stopped.exit_code == 130, stopped.output
    assert "interrupted after 4 image(s)" in stopped.output and "a rerun resumes" in stopped.output
    kept = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert len(kept) == 4 * 2 and not (tmp_path / "resumed" / "metrics.json").exists()

    monkeypatch.setattr(Evaluator, "score_batch", real_score_batch)
    resumed = run("evaluate", *arguments, "-o", tmp_path / "resumed", "--json")
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    assert summary["forward_passes"]["explained_images"] == 2 * 8  # the 8 images not scored before
    expected = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    for key in ("methods", "curves", "ranking", "images", "failures", "gate"):
        assert summary[key] == expected[key], key
    assert len((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()) == 12 * 2


def test_an_evaluate_interrupted_before_the_first_image_promises_nothing_to_resume(tmp_path, monkeypatch):
    # it said "interrupted after 0 image(s); metrics.jsonl holds the rows scored so far" of an empty file
    from gradcam_cli.scoring import Evaluator

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Evaluator, "score_batch", interrupted)
    stopped = run("evaluate", PAIR, "--methods", "gradcam", "--metrics", "drop", "-o", tmp_path / "out")
    assert stopped.exit_code == 130, stopped.output
    assert "interrupted before the first image was scored; nothing to resume." in stopped.output
    assert "rerun resumes" not in stopped.output


@pytest.mark.slow
def test_rows_are_reused_for_the_same_model_at_another_path_and_old_path_fingerprints(tmp_path, monkeypatch):
    """The model enters the fingerprint by its content (issue 29), as explain's runs: a copy of the
    model file elsewhere reuses the rows; rows of before (fingerprinted by the model's path) too."""
    import shutil

    from gradcam_cli.demo import demo_model_path

    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        shutil.copy(demo_model_path(), tmp_path / name / "m.keras")
        for sidecar in demo_model_path().parent.glob(demo_model_path().stem + ".*"):
            if sidecar.suffix != ".keras":
                shutil.copy(sidecar, tmp_path / name / ("m" + sidecar.name[len(demo_model_path().stem):]))
    image = SHAPES / "01_single_cross.png"
    first = run("evaluate", image, "--model", tmp_path / "one" / "m.keras", "--methods", "gradcam", "--metrics",
                "drop", "-o", tmp_path / "ev")
    assert first.exit_code == 0, first.output
    again = run("evaluate", image, "--model", tmp_path / "two" / "m.keras", "--methods", "gradcam", "--metrics",
                "drop", "-o", tmp_path / "ev", "--json")
    assert json.loads(again.stdout)["forward_passes"]["explained_images"] == 0  # the same bytes: reused
    from gradcam_cli import evaluate as evaluate_module

    real = evaluate_module.config_fingerprint
    monkeypatch.setattr(evaluate_module, "config_fingerprint",  # as the tool wrote rows before: by path
                        lambda spec, layer, options, legacy=False: real(spec, layer, options, legacy=True))
    (tmp_path / "old").mkdir()
    old = run("evaluate", image, "--model", tmp_path / "one" / "m.keras", "--methods", "gradcam", "--metrics", "drop",
              "-o", tmp_path / "old")
    assert old.exit_code == 0, old.output
    monkeypatch.setattr(evaluate_module, "config_fingerprint", real)
    resumed = run("evaluate", image, "--model", tmp_path / "one" / "m.keras", "--methods", "gradcam", "--metrics",
                  "drop", "-o", tmp_path / "old", "--json")
    assert json.loads(resumed.stdout)["forward_passes"]["explained_images"] == 0
