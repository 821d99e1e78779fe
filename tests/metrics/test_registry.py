"""The metric registry (gradcam_cli/metrics/__init__.py): ``--metrics`` parsed against it."""

from __future__ import annotations

import pytest

from gradcam_cli.errors import EvaluationError


@pytest.mark.parametrize("text", ["", ",", " , "])
def test_empty_metrics_is_a_usage_error(text: str) -> None:
    # '--metrics ,' used to fall back silently to every metric, while '--methods ,' is an error.
    from gradcam_cli.metrics import parse_metrics

    with pytest.raises(EvaluationError, match="metrics is empty"):
        parse_metrics(text, have_ground_truth=True)
    assert parse_metrics(None, have_ground_truth=False) == ["deletion", "insertion", "drop", "increase"]
