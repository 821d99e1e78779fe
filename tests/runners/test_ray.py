"""The Ray runner (gradcam_cli/runners/ray.py), ``--engine ray``: the local engine's outputs, file
for file, from Ray Data actors; its errors (no cluster, no Ray extra, a model the actors cannot load).

One embedded 2-CPU Ray serves the whole module (the engine uses a session its process already
has); the Ctrl-C case runs the CLI in a subprocess that joins that cluster by its address. The
object-store case runs against moto's S3 server, started and stopped here; its endpoint and dummy
credentials are in the environment before Ray starts, so the actors inherit them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from click.testing import CliRunner
from PIL import Image
from pyarrow import fs

from gradcam_cli.cli import cli
from gradcam_cli.errors import GradcamError
from gradcam_cli.inputs import collect_inputs, collect_uri_inputs
from gradcam_cli.manifest import MANIFEST, Manifest
from gradcam_cli.options import RunOptions
from gradcam_cli.report import write_report
from gradcam_cli.runners.local import run_explain
from gradcam_cli.runners.ray import block_size, run_explain_ray
from tests.helpers import SHAPES

pytestmark = [pytest.mark.ray, pytest.mark.slow]

DEMO = {"model": "demo"}
ACTOR_TITLE = b"ExplainActor"  # Ray names an actor's process after its class: ray::MapWorker(MapBatches(ExplainActor))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on a free local port; the AWS_* environment points at it meanwhile."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    settings = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto's server did not start"
                time.sleep(0.2)
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def cluster(s3_server):
    """An embedded Ray with 2 CPUs for the module; yields its GCS address."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024**2,
             logging_level="ERROR", log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Eight demo shapes and two files that are not images."""
    folder = tmp_path_factory.mktemp("ray") / "in"
    folder.mkdir()
    for picture in sorted(SHAPES.glob("*.png"))[:8]:
        (folder / picture.name).write_bytes(picture.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    (folder / "empty.png").write_bytes(b"")
    return folder


def rows_of(out: Path) -> list[dict]:
    """Every line of the manifest (each must parse), in memory form: absolute paths."""
    lines = (out / MANIFEST).read_text().splitlines()
    return [Manifest.from_stored(json.loads(line), out) for line in lines]


def comparable(rows: list[dict], out: Path) -> list[dict]:
    """Rows without the run id, output paths relative to their folder."""
    kept = []
    for row in rows:
        row = {key: value for key, value in row.items() if key != "run"}
        for key in ("overlay", "heatmap"):
            if row.get(key):
                row[key] = os.path.relpath(row[key], out)
        kept.append(row)
    return kept


def files_of(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "manifest.jsonl"}


def options(out: Path, **changes) -> RunOptions:
    return RunOptions(output_dir=out, batch_size=4, **{"top_k": 2, **changes})


def test_ray_outputs_are_the_local_engines_file_for_file(cluster, folder, demo_spec, tmp_path):
    items = collect_inputs([str(folder)])
    local_out, ray_out = tmp_path / "local" / "out", tmp_path / "ray" / "out"  # one folder name: one report title
    local = run_explain(items, demo_spec, options(local_out))
    distributed = run_explain_ray(items, demo_spec, DEMO, options(ray_out))
    assert (distributed.images_done, len(distributed.failures)) == (local.images_done, len(local.failures)) == (8, 2)
    assert distributed.exit_code == local.exit_code == 1
    local_files, ray_files = files_of(local_out), files_of(ray_out)
    assert sorted(ray_files) == sorted(local_files) and len(ray_files) == 8 * 2 * 2
    for name, data in local_files.items():
        if name.endswith(".npy"):
            assert ray_files[name] == data, f"{name} differs between the engines"
    assert comparable(rows_of(ray_out), ray_out) == comparable(rows_of(local_out), local_out)
    assert [r["input"] for r in rows_of(ray_out)] == [r["input"] for r in rows_of(local_out)]
    pages = [write_report(out).read_text() for out in (local_out, ray_out)]
    assert pages[0] == pages[1]
    errors = {Path(r["input"]).name: r["error"] for r in rows_of(ray_out) if r["status"] == "error"}
    assert sorted(errors) == ["broken.jpg", "empty.png"] and "empty file" in errors["empty.png"]


def test_ray_resume_skips_done_inputs_and_overwrite_redoes_them(cluster, folder, demo_spec, tmp_path):
    items = collect_inputs([str(folder / name) for name in ("01_single_cross.png", "02_single_square.png", "broken.jpg")])
    out = tmp_path / "out"
    first = run_explain_ray(items, demo_spec, DEMO, options(out), workers=1)
    assert first.images_done == 2
    again = run_explain_ray(items, demo_spec, DEMO, options(out), workers=1)
    assert (again.images_skipped, again.images_done, len(again.failures)) == (2, 0, 1)  # the bad file is retried
    assert len(rows_of(out)) == 2 * 2 + 1  # compacted: one set of rows per input
    redone = run_explain_ray(items, demo_spec, DEMO, options(out, overwrite=True), workers=1)
    assert (redone.images_skipped, redone.images_done) == (0, 2)
    assert len({r["run"] for r in rows_of(out)}) == 1 and len(rows_of(out)) == 2 * 2 + 1


def _actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(b"ray::") and ACTOR_TITLE in command:
                pids.append(int(entry.name))
    return pids


def test_a_killed_actor_is_retried_and_every_input_ends_with_one_set_of_outputs(cluster, demo_spec, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    picture = Image.open(SHAPES / "05_pair_circle_triangle.png")
    for index in range(24):
        picture.rotate(index * 11).save(folder / f"img_{index:02d}.png")
    items = collect_inputs([str(folder)])
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_one_actor(row: dict) -> None:
        if not killed:
            pids = _actor_pids()
            assert pids, "no actor process found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    summary = run_explain_ray(items, demo_spec, DEMO, RunOptions(output_dir=out, batch_size=2), workers=2,
                              on_row=kill_one_actor)
    assert killed and not Path(f"/proc/{killed[0]}").exists()
    assert summary.exit_code == 0 and summary.images_done == 24
    rows = rows_of(out)
    assert sorted(r["input"] for r in rows) == sorted(i.real for i in items)  # none lost, none twice
    assert sorted(p.name for p in out.iterdir() if p.name != "manifest.jsonl") == sorted(
        name for r in rows for name in (Path(r["overlay"]).name, Path(r["heatmap"]).name))
    assert not list(out.rglob("*.tmp")), "a half-written file was left behind"
    for row in rows:
        Image.open(row["overlay"]).load()  # whole files


def test_ctrl_c_flushes_the_manifest_exits_130_and_a_rerun_resumes(cluster, demo_spec, tmp_path):
    image_count = 200  # rows stream for seconds after the first (about 35 images/s on 2 quiet cores)
    folder = tmp_path / "in"
    folder.mkdir()
    picture = Image.open(SHAPES / "01_single_cross.png")
    for index in range(image_count):
        picture.rotate(index * 7).save(folder / f"img_{index:02d}.png")
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "gradcam_cli", "explain", str(folder), "-o", str(out), "-b", "2", "--json",
         "--engine", "ray", "--ray-address", cluster, "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # as from a terminal: a suite run as a background job ignores SIGINT, and children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    first_row = process.stdout.readline()
    assert first_row.startswith("{"), process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted after" in stderr and "Traceback" not in stderr
    done = {r["input"] for r in rows_of(out)}  # every line parses
    assert 0 < len(done) < image_count
    rerun = run_explain_ray(collect_inputs([str(folder)]), demo_spec, DEMO, RunOptions(output_dir=out, batch_size=16))
    assert rerun.images_skipped == len(done) and rerun.images_done == image_count - len(done)
    assert len(rows_of(out)) == image_count


def test_unreachable_ray_address_is_one_line_and_exit_2_within_seconds(tmp_path):
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["explain", str(SHAPES), "-o", str(tmp_path), "--engine", "ray",
                                      "--ray-address", "127.0.0.1:9"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "cannot reach a Ray cluster" in result.output
    assert time.monotonic() - started < 10


def test_missing_ray_extra_names_it_and_exits_2(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    result = CliRunner().invoke(cli, ["explain", str(SHAPES), "-o", str(tmp_path), "--engine", "ray"])
    assert result.exit_code == 2
    assert result.output.strip() == 'gradcam: error: --engine ray needs Ray Data, which is not installed: pip install "gradcam-cli[ray]"'


def test_a_model_the_actors_cannot_load_ends_the_run_with_its_error(cluster, demo_spec, tmp_path):
    """Here a file gone after the driver loaded its model: one error, not a hang or a retry loop."""
    items = collect_inputs([str(SHAPES / "01_single_cross.png")])
    with pytest.raises(GradcamError, match="no such model file"):
        run_explain_ray(items, demo_spec, {"model": str(tmp_path / "gone.keras")}, RunOptions(output_dir=tmp_path / "out"),
                        workers=1)


def test_s3_inputs_and_outputs_round_trip_and_match_the_local_engine(cluster, folder, demo_spec, tmp_path):
    bucket, _ = fs.FileSystem.from_uri("s3://pictures?allow_bucket_creation=true")
    bucket.create_dir("pictures")
    pictures = [*sorted(folder.glob("0*.png"))[:4], folder / "broken.jpg"]
    for picture in pictures:
        with bucket.open_output_stream(f"pictures/in/{picture.name}") as stream:
            stream.write(picture.read_bytes())
    items = collect_uri_inputs("s3://pictures/in")
    assert [i.path for i in items] == sorted(f"s3://pictures/in/{p.name}" for p in pictures)
    summary = run_explain_ray(items, demo_spec, DEMO, options("s3://pictures/out"), workers=1)
    assert (summary.images_done, len(summary.failures)) == (4, 1)
    local_items = collect_inputs([str(p) for p in pictures])
    run_explain(local_items, demo_spec, options(tmp_path / "local"))
    written = {Path(entry.path).name: entry for entry in bucket.get_file_info(fs.FileSelector("pictures/out"))}
    local_files = files_of(tmp_path / "local")
    assert sorted(written) == sorted([*local_files, "manifest.jsonl"])
    for name, data in local_files.items():
        if name.endswith(".npy"):
            with bucket.open_input_stream(f"pictures/out/{name}") as stream:
                assert stream.read() == data
    with bucket.open_input_stream("pictures/out/manifest.jsonl") as stream:
        rows = [json.loads(line) for line in stream.read().decode().splitlines()]
    assert all(r["input"].startswith("s3://pictures/in/") for r in rows)
    assert {name for r in rows if r["status"] == "ok" for name in (r["overlay"], r["heatmap"])} == \
        set(written) - {"manifest.jsonl"}  # stored relative to the manifest, as locally
    drop = ("run", "input", "overlay", "heatmap", "error")
    assert sorted(json.dumps({k: v for k, v in r.items() if k not in drop}, sort_keys=True) for r in rows) == \
        sorted(json.dumps({k: v for k, v in r.items() if k not in drop}, sort_keys=True) for r in rows_of(tmp_path / "local"))
    again = run_explain_ray(items, demo_spec, DEMO, options("s3://pictures/out"), workers=1)
    assert (again.images_skipped, again.images_done) == (4, 0)
    # the local engine reads and writes the same URIs through the same code
    by_local_engine = run_explain(items, demo_spec, options("s3://pictures/local-engine"))
    assert (by_local_engine.images_done, len(by_local_engine.failures)) == (4, 1)
    for name in (n for n in local_files if n.endswith(".npy")):
        with bucket.open_input_stream(f"pictures/local-engine/{name}") as stream:
            assert stream.read() == local_files[name]


NETS = '''
import keras
import tensorflow as tf


class Net(keras.Model):
    """A subclassed classifier: no graph, so actors and driver each trace it."""

    def __init__(self):
        super().__init__(name="net")
        self.block = keras.Sequential([keras.layers.Conv2D(6, 3, activation="relu", name="c1"),
                                       keras.layers.Conv2D(6, 3, activation="relu", name="c2")], name="block")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(3, name="head")

    def call(self, x):
        return tf.nn.softmax(self.head(self.pool(self.block(x))))


def build():
    keras.utils.set_random_seed(7)
    net = Net()
    net(tf.zeros((1, 32, 32, 3)))
    return net
'''


def test_actors_build_a_factory_model_from_its_file_and_match_the_local_engine(cluster, folder, tmp_path, monkeypatch):
    """``--model nets.py:build`` typed relative to the driver's folder: the actors import the file
    (made absolute) and build the model themselves; the outputs equal the local engine's."""
    from gradcam_cli.models import resolve_model

    code = tmp_path / "code"
    code.mkdir()
    (code / "nets.py").write_text(NETS)
    monkeypatch.chdir(code)
    arguments = {"model": "nets.py:build"}
    spec = resolve_model(**arguments)
    items = collect_inputs([str(folder / name) for name in ("01_single_cross.png", "02_single_square.png")])
    local_out, ray_out = tmp_path / "local" / "out", tmp_path / "ray" / "out"
    local = run_explain(items, spec, options(local_out, top_k=1))
    distributed = run_explain_ray(items, spec, arguments, options(ray_out, top_k=1))
    assert distributed.images_done == local.images_done == 2 and distributed.exit_code == local.exit_code == 0
    local_files, ray_files = files_of(local_out), files_of(ray_out)
    assert sorted(ray_files) == sorted(local_files) and len(ray_files) == 2 * 2
    for name, data in local_files.items():
        if name.endswith(".npy"):
            assert ray_files[name] == data, f"{name} differs between the engines"
    assert {row["layer"] for row in rows_of(ray_out)} == {"block/c2"}


def test_blocks_grow_to_four_model_batches_while_each_actor_keeps_four():
    """Ray Data's cost is per block: a large job sends blocks of up to 4 model batches; a small one
    smaller blocks, so that every actor gets work."""
    assert block_size(10_000, actors=8, batch_size=16) == 64
    assert block_size(640, actors=2, batch_size=16) == 64
    assert block_size(320, actors=2, batch_size=16) == 32  # 5 blocks an actor
    assert block_size(100, actors=2, batch_size=16) == 16
    assert block_size(20, actors=2, batch_size=16) == 10  # under a batch: both actors busy
    assert block_size(1, actors=4, batch_size=16) == 1


def test_ray_explains_a_detectors_boxes_as_the_local_engine_file_for_file(cluster, tmp_path):
    """--task detect on Ray: the actors load the tiny detector of tests/heads/test_detection.py from its
    FILE.py:FACTORY, find the same boxes and write the local engine's rows, overlays and maps."""
    import numpy as np

    from gradcam_cli.models import resolve_model
    from tests.cli.test_detect import FACTORY
    from tests.heads.test_detection import square_picture

    folder = tmp_path / "in"
    folder.mkdir()
    factory = tmp_path / "det.py"
    factory.write_text(FACTORY)
    Image.fromarray(square_picture().repeat(2, axis=0).repeat(2, axis=1)).save(folder / "square.png")
    Image.fromarray(np.roll(square_picture(200), 8, axis=1)).save(folder / "shifted.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "black.png")  # no box: an error row
    arguments = {"model": f"{factory}:build", "task": "detect"}
    spec = resolve_model(**arguments)
    items = collect_inputs([str(folder)])
    local_out, ray_out = tmp_path / "local" / "out", tmp_path / "ray" / "out"
    local = run_explain(items, spec, options(local_out, top_k=1))
    distributed = run_explain_ray(items, spec, arguments, options(ray_out, top_k=1), workers=2)
    assert (distributed.images_done, len(distributed.failures)) == (local.images_done, len(local.failures)) == (2, 1)
    local_files, ray_files = files_of(local_out), files_of(ray_out)
    assert sorted(ray_files) == sorted(local_files) and any(".box1." in name for name in local_files)
    for name, data in local_files.items():
        if name.endswith(".npy"):
            assert ray_files[name] == data, f"{name} differs between the engines"
    local_rows, ray_rows = comparable(rows_of(local_out), local_out), comparable(rows_of(ray_out), ray_out)
    assert ray_rows == local_rows
    assert {row["head"] for row in local_rows} == {"detection"} and all(
        len(row["box"]) == 4 for row in local_rows if row["status"] == "ok")
