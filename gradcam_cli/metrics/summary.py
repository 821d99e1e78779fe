"""From per-image scores to what a reader and a CI job need: means with 95 % bootstrap intervals,
methods ranked best first, and the ``--fail-under`` gate.

Interval: the percentile bootstrap (Efron & Tibshirani 1993), ``BOOTSTRAP_SAMPLES`` resamples of the
images with replacement, seeded, so a rerun prints the same interval. With n = 1 it is the point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import EvaluationError, param, phrase
from . import METRICS

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
GATE_EXIT_CODE = 5  # not 1 (some inputs failed), not 4 (an internal error)


def summarize(values) -> dict:
    """``{"mean", "ci95": [low, high], "n"}`` for a list of per-image scores (None left out)."""
    data = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(data):
        return {"mean": None, "ci95": [None, None], "n": 0}
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    resampled = data[rng.integers(0, len(data), (BOOTSTRAP_SAMPLES, len(data)))].mean(axis=1)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {"mean": round(float(data.mean()), 6), "ci95": [round(float(low), 6), round(float(high), 6)],
            "n": int(len(data))}


def rank_methods(summaries: dict[str, dict[str, dict]], metric: str) -> list[str]:
    """Methods best first by ``metric``'s mean (in its good direction); missing means go last."""
    higher = METRICS[metric].higher_is_better

    def key(method: str) -> float:
        mean = summaries[method].get(metric, {}).get("mean")
        if mean is None or math.isnan(mean):
            return math.inf
        return -mean if higher else mean

    return sorted(summaries, key=key)


@dataclass(frozen=True)
class Gate:
    """``--fail-under METRIC[:METHOD]=VALUE``: the mean must be at least VALUE, or, for the metrics
    where lower is better (deletion, drop), at most VALUE. Without METHOD it applies to every
    evaluated method except the baselines."""

    metric: str
    method: str | None
    value: float

    @property
    def text(self) -> str:
        return f"{self.metric}{':' + self.method if self.method else ''}={self.value:g}"

    def passes(self, mean: float) -> bool:
        return mean <= self.value if not METRICS[self.metric].higher_is_better else mean >= self.value


def parse_gate(text: str, canonical_method) -> Gate:
    """Parse one ``--fail-under``; ``canonical_method`` resolves method aliases."""
    left, equals, right = text.partition("=")
    metric, _, method = left.partition(":")
    metric = metric.strip().lower()
    usage = f"{param('gates', repr(text))}: use METRIC[:METHOD]=VALUE, e.g. insertion:gradcam=0.6"
    if not equals or metric not in METRICS:
        raise EvaluationError(f"{usage} (metrics: {', '.join(METRICS)}).")
    try:
        value = float(right)
    except ValueError:
        raise EvaluationError(f"{usage}; '{right}' is not a number.") from None
    if not math.isfinite(value):
        raise EvaluationError(f"{usage}; VALUE must be a finite number, not '{right.strip()}'.")
    return Gate(metric, canonical_method(method.strip()) if method.strip() else None, value)


def gate_problems(gates: list[Gate], methods: list[str], metrics: list[str], baselines: set[str]) -> list[str]:
    """One line per ``--fail-under`` that could never be checked with these methods and metrics: it
    names a method or metric that is not requested, or (without METHOD) only baselines would run."""
    problems = []
    for gate in gates:
        if gate.method is None and not [m for m in methods if m not in baselines]:
            problems.append(f"{gate.text}: no method but the baselines is evaluated (add one to {param('methods')}, "
                            f"or name a baseline: {gate.metric}:random=VALUE)")
        elif gate.method is not None and gate.method not in methods:
            problems.append(f"{gate.text}: {gate.method} is not evaluated (add it to {param('methods')})")
        if gate.metric not in metrics:
            fix = f"{param('ground_truth', 'FILE')} and " if METRICS[gate.metric].needs_ground_truth else ""
            problems.append(f"{gate.text}: {gate.metric} is not scored (add {fix}{gate.metric} to {param('metrics')})")
    return [phrase(problem) for problem in problems]


def check_gates(gates: list[Gate], summaries: dict[str, dict[str, dict]], baselines: set[str]) -> list[str]:
    """One line per missed threshold (empty when every gate passes). A gate whose method has no
    score (every image failed) is missed."""
    missed = []
    for gate in gates:
        methods = [gate.method] if gate.method else [m for m in summaries if m not in baselines]
        if not methods:
            missed.append(phrase(f"{gate.text}: no method but the baselines was evaluated (add one to {param('methods')}, "
                          f"or name a baseline: {gate.metric}:random=VALUE)"))
        for method in methods:
            mean = summaries.get(method, {}).get(gate.metric, {}).get("mean")
            if mean is None:
                missed.append(f"{gate.text}: {method} has no {gate.metric} score")
            elif not gate.passes(mean):
                relation = "above" if not METRICS[gate.metric].higher_is_better else "below"
                missed.append(f"{gate.text}: {method} {gate.metric} = {mean:.3f}, {relation} {gate.value:g}")
    return missed
