"""Summaries and the ``--fail-under`` gate (gradcam_cli/metrics/summary.py)."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_cli.errors import EvaluationError
from gradcam_cli.methods import canonical_name
from gradcam_cli.metrics.summary import parse_gate


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible():
    from gradcam_cli.metrics.summary import summarize

    values = list(np.random.default_rng(1).random(50))
    summary = summarize(values)
    assert summary["n"] == 50 and summary["ci95"][0] < summary["mean"] < summary["ci95"][1]
    assert summarize(values) == summary
    assert summarize([0.3]) == {"mean": 0.3, "ci95": [0.3, 0.3], "n": 1}
    assert summarize([None])["n"] == 0


def test_gate_parsing_and_directions():
    from gradcam_cli.errors import EvaluationError
    from gradcam_cli.methods import canonical_name
    from gradcam_cli.metrics.summary import check_gates, parse_gate

    gates = [parse_gate("insertion:gradcampp=0.6", canonical_name), parse_gate("deletion=0.2", canonical_name)]
    assert gates[0].method == "gradcam++"
    summaries = {"gradcam++": {"insertion": {"mean": 0.5}, "deletion": {"mean": 0.1}},
                 "random": {"insertion": {"mean": 0.1}, "deletion": {"mean": 0.9}}}
    missed = check_gates(gates, summaries, baselines={"random"})
    assert missed == ["insertion:gradcam++=0.6: gradcam++ insertion = 0.500, below 0.6"]
    for bad in ("insertion", "nonsense=1", "insertion=high"):
        with pytest.raises(EvaluationError, match="METRIC"):
            parse_gate(bad, canonical_name)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_fail_under_rejects_non_finite_value(value: str) -> None:
    # 'insertion=nan' used to be accepted and reported as a missed threshold ("below nan", exit 5).
    with pytest.raises(EvaluationError, match="finite"):
        parse_gate(f"insertion={value}", canonical_name)


def test_gate_without_method_is_not_silently_passed_when_only_baselines_ran() -> None:
    # '--methods random,center --fail-under insertion=0.99' used to exit 0: the gate checked nothing.
    from gradcam_cli.metrics.summary import check_gates

    summaries = {"random": {"insertion": {"mean": 0.1}}, "center": {"insertion": {"mean": 0.2}}}
    gate = parse_gate("insertion=0.99", canonical_name)
    missed = check_gates([gate], summaries, baselines={"random", "center"})
    assert len(missed) == 1 and "no method but the baselines" in missed[0]
