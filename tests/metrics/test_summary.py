"""Regression tests from a user review of ``gradcam evaluate`` (hostile inputs)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gradcam_cli.errors import EvaluationError
from gradcam_cli.methods import canonical_name
from gradcam_cli.metrics.summary import parse_gate


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_fail_under_rejects_non_finite_value(value: str) -> None:
    # 'insertion=nan' used to be accepted and reported as a missed threshold ("below nan", exit 5).
    with pytest.raises(EvaluationError, match="finite"):
        parse_gate(f"insertion={value}", canonical_name)


@pytest.mark.parametrize("text", ["", ",", " , "])
def test_empty_metrics_is_a_usage_error(text: str) -> None:
    # '--metrics ,' used to fall back silently to every metric, while '--methods ,' is an error.
    from gradcam_cli.metrics import parse_metrics

    with pytest.raises(EvaluationError, match="metrics is empty"):
        parse_metrics(text, have_ground_truth=True)
    assert parse_metrics(None, have_ground_truth=False) == ["deletion", "insertion", "drop", "increase"]


def test_gate_without_method_is_not_silently_passed_when_only_baselines_ran() -> None:
    # '--methods random,center --fail-under insertion=0.99' used to exit 0: the gate checked nothing.
    from gradcam_cli.metrics.summary import check_gates

    summaries = {"random": {"insertion": {"mean": 0.1}}, "center": {"insertion": {"mean": 0.2}}}
    gate = parse_gate("insertion=0.99", canonical_name)
    missed = check_gates([gate], summaries, baselines={"random", "center"})
    assert len(missed) == 1 and "no method but the baselines" in missed[0]


@pytest.mark.parametrize(("gate", "says"), [
    ("pointing:gradcam++=0.9", "gradcam++ is not evaluated (add it to --methods)"),
    ("energy:gradcam=0.4", "energy is not scored (add --ground-truth FILE and energy to --metrics)"),
])
def test_gate_that_could_never_be_checked_is_a_usage_error_before_scoring(tmp_path, gate, says) -> None:
    # It used to be reported only after every image was scored, as a missed threshold (exit 5).
    from click.testing import CliRunner

    from gradcam_cli.cli import cli

    shapes = Path(__file__).resolve().parent.parent / "sample_images" / "shapes"
    result = CliRunner().invoke(cli, ["evaluate", str(shapes / "01_single_cross.png"), "--model", "demo",
                                       "--methods", "gradcam,random", "--metrics", "insertion,pointing",
                                       "--ground-truth", str(shapes / "ground_truth.json"), "--steps", "2",
                                       "-o", str(tmp_path), "--fail-under", gate])
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing was scored
