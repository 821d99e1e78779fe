"""A similarity run on the Ray engine (gradcam_cli/runners/ray.py with gradcam_cli/reference.py): the
reference vectors travel to the actors inside the run's options, so the actors never read the
reference images (they are deleted before the run here), and the outputs are the local engine's,
file for file."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from gradcam_cli.inputs import collect_inputs
from gradcam_cli.manifest import MANIFEST
from gradcam_cli.models import resolve_model
from gradcam_cli.options import RunOptions
from gradcam_cli.reference import Reference
from gradcam_cli.runners.local import run_explain
from tests.helpers import SHAPES

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024**2,
             logging_level="ERROR", log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def rows_without_run(out) -> list[dict]:
    return [{key: value for key, value in json.loads(line).items() if key != "run"}
            for line in (out / MANIFEST).read_text().splitlines()]


def test_actors_get_the_reference_vectors_and_match_the_local_engine(cluster, tmp_path):
    from gradcam_cli.runners.ray import run_explain_ray

    concept = tmp_path / "triangles"
    concept.mkdir()
    for name in ("03_single_triangle.png", "12_same_triangle_x3.png"):
        shutil.copy(SHAPES / name, concept / name)
    spec = resolve_model("demo")
    reference = Reference.compute(spec, [str(concept)], "gap")
    shutil.rmtree(concept)  # the actors must not need the reference images
    applied = reference.apply(spec)
    items = collect_inputs([str(path) for path in sorted(SHAPES.glob("*.png"))[:6]])
    options = RunOptions(batch_size=2, classes=[0], reference=reference)
    local = run_explain(items, applied, dataclasses.replace(options, output_dir=tmp_path / "local"))
    distributed = run_explain_ray(items, applied, {"model": "demo", "model_output": "gap"},
                                  dataclasses.replace(options, output_dir=tmp_path / "ray"), workers=2)
    assert local.images_done == distributed.images_done == 6 and not distributed.failures
    local_rows, ray_rows = rows_without_run(tmp_path / "local"), rows_without_run(tmp_path / "ray")
    assert ray_rows == local_rows
    assert {row["reference"]["images"] for row in ray_rows} == {2} and {row["label"] for row in ray_rows} == {"triangles/"}
    for row in local_rows:
        assert (tmp_path / "ray" / row["heatmap"]).read_bytes() == (tmp_path / "local" / row["heatmap"]).read_bytes()
