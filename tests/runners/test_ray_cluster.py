"""The Ray engine (gradcam_cli/runners/ray.py) on a real multi-node cluster: ``ray.cluster_utils.Cluster``
with a head node of 1 CPU, joined by address, and for each test a second node of 1 CPU whose workers
import gradcam-cli from a copy at another path (``PYTHONPATH`` of that node's raylet).

Specified here: the outputs equal the local engine's file for file; a node killed mid-run loses and
duplicates nothing; a driver started in a folder holding another copy of the package still has its
workers import what their nodes installed (the job's pinned runtime environment); a node that loads
other model bytes, or runs another gradcam-cli version, is refused with one line naming both sides.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import pytest
import ray
from PIL import Image
from ray._private import ray_constants
from ray.cluster_utils import Cluster

import gradcam_cli
from gradcam_cli.backend import configured_name
from gradcam_cli.errors import EngineError
from gradcam_cli.inputs import collect_inputs
from gradcam_cli.manifest import MANIFEST
from gradcam_cli.options import RunOptions
from gradcam_cli.runners.local import run_explain
from gradcam_cli.runners.ray import block_size, run_explain_ray
from gradcam_cli.runners.ray_session import ray_session
from tests.helpers import SHAPES
from tests.runners.test_ray import comparable, files_of, rows_of

pytestmark = [pytest.mark.ray, pytest.mark.slow]

DEMO = {"model": "demo"}
PACKAGE = Path(gradcam_cli.__file__).parent
GRADCAM = Path(sys.executable).with_name("gradcam")  # a console script: its driver imports the installed package
NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024**2}
# a killed node is declared dead after 3 missed checks of 0.5 s, not Ray's default 30 s
HEAD = {**NODE, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}}


def copy_package(folder: Path, announcing: str | None = None) -> Path:
    """gradcam_cli copied under ``folder`` (which is returned), optionally announcing another version."""
    shutil.copytree(PACKAGE, folder / "gradcam_cli", ignore=shutil.ignore_patterns("__pycache__"))
    if announcing is not None:
        init = folder / "gradcam_cli" / "__init__.py"
        init.write_text(re.sub(r'__version__ = ".*"', f'__version__ = "{announcing}"', init.read_text()))
    return folder


@pytest.fixture(scope="module")
def cluster():
    """The head node, joined by this process through the engine's own session (pinned runtime env)."""
    cluster = Cluster(initialize_head=True, head_node_args=HEAD)
    try:
        with ray_session(cluster.address, None):
            yield cluster
    finally:
        cluster.shutdown()


@contextlib.contextmanager
def second_node(cluster: Cluster, package_folder: Path | None = None):
    """A 1-CPU node for one test; its workers import gradcam_cli from ``package_folder`` when given."""
    node = cluster.add_node(**NODE, env_vars={"PYTHONPATH": str(package_folder)} if package_folder else None)
    cluster.wait_for_nodes()
    try:
        yield node
    finally:
        if node in cluster.worker_nodes:
            cluster.remove_node(node)


@contextlib.contextmanager
def head_busy(cluster: Cluster):
    """The head node's CPU held by an idle actor, so that a pool of one actor runs on the second node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=1)
    class Placeholder:
        def ready(self) -> bool:
            return True

    placeholder = Placeholder.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        cluster.head_node.node_id, soft=False)).remote()
    ray.get(placeholder.ready.remote(), timeout=120)
    try:
        yield
    finally:
        ray.kill(placeholder)


def explaining_on(node) -> bool:
    """Whether an ExplainActor of ``node`` (a child of its raylet) is running a batch now: Ray titles
    a worker ``ray::CLASS.METHOD`` while it runs a call."""
    raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                title = (entry / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if parent == raylet and title.startswith(b"ray::") and b"ExplainActor" in title and b".submit" in title:
                return True
    return False


def imported_on(node) -> tuple[str, str]:
    """Where a worker of ``node`` (started for this job) imports gradcam_cli from, and its demo model."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False))
    def where() -> tuple[str, str]:
        import gradcam_cli
        from gradcam_cli.demo import demo_model_path

        return gradcam_cli.__file__, str(demo_model_path())

    return ray.get(where.remote(), timeout=120)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Sixteen demo shapes (rotated) and a file that is not an image."""
    folder = tmp_path_factory.mktemp("cluster") / "in"
    folder.mkdir()
    pictures = sorted(SHAPES.glob("*.png"))
    for index in range(16):
        Image.open(pictures[index % len(pictures)]).rotate(index * 20).save(folder / f"shape_{index:02d}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    return folder


def options(out: Path, **changes) -> RunOptions:
    """Batches of one image: 17 inputs on 2 actors make blocks of 2 (block_size), two batches each."""
    return RunOptions(output_dir=out, batch_size=1, **{"top_k": 2, **changes})


def test_two_nodes_write_the_local_engines_files_though_the_second_imports_the_package_from_elsewhere(
        cluster, folder, demo_spec, tmp_path):
    """The second node's gradcam_cli, and so its demo model file, live at another path: the model's
    identity is its bytes, so that node is accepted (a path-based identity refused it)."""
    with second_node(cluster, copy_package(tmp_path / "copy")) as node:
        package, model = imported_on(node)
        assert package == str(tmp_path / "copy" / "gradcam_cli" / "__init__.py")
        assert model != str(demo_spec.source)
        items = collect_inputs([str(folder)])
        assert block_size(len(items), 2, 1) == 2  # each actor's blocks go through the model in two batches
        local_out, ray_out = tmp_path / "local" / "out", tmp_path / "ray" / "out"
        local = run_explain(items, demo_spec, options(local_out))
        distributed = run_explain_ray(items, demo_spec, DEMO, options(ray_out), address=cluster.address, workers=2)
    assert (distributed.images_done, len(distributed.failures)) == (local.images_done, len(local.failures)) == (16, 1)
    local_files, ray_files = files_of(local_out), files_of(ray_out)
    assert sorted(ray_files) == sorted(local_files) and len(ray_files) == 16 * 2 * 2
    for name, data in local_files.items():
        if name.endswith(".npy"):
            assert ray_files[name] == data, f"{name} differs between the engines"
    assert comparable(rows_of(ray_out), ray_out) == comparable(rows_of(local_out), local_out)


NETS = '''
import keras


def build():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
'''


def test_a_driver_started_beside_another_copy_of_the_package_has_workers_import_their_nodes_own(
        cluster, folder, tmp_path):
    """Ray puts the driver's working folder first on its workers' import path: started in a
    checkout (here, a copy announcing another version), the workers imported it and were refused.
    The job's runtime environment pins their import path; a module the driver imported from
    beside it (``--model nets:build``) is still found, after what the node installed."""
    checkout = copy_package(tmp_path / "checkout", announcing="0.0.0+checkout")
    code = tmp_path / "code"
    code.mkdir()
    (code / "nets.py").write_text(NETS)
    with second_node(cluster, copy_package(tmp_path / "copy")):
        result = subprocess.run(
            [str(GRADCAM), "explain", str(folder / "shape_00.png"), str(folder / "shape_01.png"),
             "--model", "nets:build", "-o", str(tmp_path / "out"), "--engine", "ray",
             "--ray-address", cluster.address, "--workers", "2"],
            cwd=checkout, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(code), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 image(s) explained" in result.stdout + result.stderr and "(raylet)" not in result.stdout
    assert len(rows_of(tmp_path / "out")) == 2


def test_a_node_killed_mid_run_loses_and_duplicates_nothing(cluster, demo_spec, tmp_path):
    """The second node is killed (raylet, agents, its actor at once) while its actor runs a batch: that
    batch is redone elsewhere, and the driver records every input exactly once."""
    folder = tmp_path / "in"
    folder.mkdir()
    picture = Image.open(SHAPES / "05_pair_circle_triangle.png")
    for index in range(60):
        picture.rotate(index * 6).save(folder / f"img_{index:02d}.png")
    items = collect_inputs([str(folder)])
    out = tmp_path / "out"
    received: list[dict] = []
    with second_node(cluster, copy_package(tmp_path / "copy")) as node:

        def kill_the_second_node_mid_batch(row: dict) -> None:
            received.append(row)
            deadline = time.monotonic() + 60
            while node in cluster.worker_nodes and time.monotonic() < deadline:
                if explaining_on(node):
                    cluster.remove_node(node, allow_graceful=False)
                    break
                time.sleep(0.005)

        summary = run_explain_ray(items, demo_spec, DEMO, RunOptions(output_dir=out, batch_size=2),
                                  address=cluster.address, workers=2, on_row=kill_the_second_node_mid_batch)
        assert node not in cluster.worker_nodes, "the second node never ran a batch"
    assert summary.exit_code == 0 and summary.images_done == 60
    assert Counter(row["input"] for row in received) == Counter({item.real: 1 for item in items})
    rows = rows_of(out)
    assert sorted(r["input"] for r in rows) == sorted(i.real for i in items)
    assert sorted(p.name for p in out.iterdir() if p.name != MANIFEST) == sorted(
        name for r in rows for name in (Path(r["overlay"]).name, Path(r["heatmap"]).name))
    assert not list(out.rglob("*.tmp")), "a half-written file was left behind"
    for row in rows:
        Image.open(row["overlay"]).load()  # whole files


def test_a_node_whose_model_file_differs_is_refused_in_one_line(cluster, demo_spec, tmp_path):
    import keras

    other = copy_package(tmp_path / "other")
    model_file = other / "gradcam_cli" / "demo" / demo_spec.name
    model = keras.models.load_model(model_file, compile=False)
    model.weights[-1].assign(model.weights[-1] + 0.5)  # the same architecture, other weights
    model.save(model_file)
    items = collect_inputs([str(SHAPES / "01_single_cross.png"), str(SHAPES / "02_single_square.png")])
    with second_node(cluster, other), head_busy(cluster), pytest.raises(EngineError) as refused:
        run_explain_ray(items, demo_spec, DEMO, options(tmp_path / "out"), address=cluster.address, workers=1)
    message = str(refused.value)
    assert "\n" not in message
    assert f"loaded {demo_spec.identity} from {demo_spec.source}" in message  # the driver's side
    assert f"from {model_file}" in message and message.count("sha256:") == 2  # and the worker's
    assert not (tmp_path / "out" / MANIFEST).exists() or not rows_of(tmp_path / "out")


def test_a_node_with_another_gradcam_cli_version_is_refused_in_one_line_and_exit_2(cluster, tmp_path):
    """The command's whole output is that line: Ray's echo of the actor's traceback goes to the log."""
    other = copy_package(tmp_path / "other", announcing="0.0.1")
    with second_node(cluster, other), head_busy(cluster):
        result = subprocess.run(
            [str(GRADCAM), "explain", str(SHAPES / "01_single_cross.png"), "-o", str(tmp_path / "out"), "--json",
             "--engine", "ray", "--ray-address", cluster.address, "--workers", "1"],
            capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2 and result.stdout == "", result.stdout[-2000:]
    line = result.stderr.strip()
    assert "\n" not in line, result.stderr[-3000:]
    assert line.startswith("gradcam: error: the Ray worker on node ")
    assert f"runs gradcam-cli 0.0.1 (Keras {version('keras')}, {configured_name()}) from {other / 'gradcam_cli'}; " in line
    assert f"the driver runs gradcam-cli {gradcam_cli.__version__} (Keras {version('keras')}, {configured_name()}) from {PACKAGE}." in line
