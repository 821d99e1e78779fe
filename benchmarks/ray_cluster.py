"""The Ray engine on a two-node cluster against the embedded Ray and the local engine: start-up apart
from the steady state, and where the difference goes.

    python benchmarks/ray_cluster.py [--images 640] [--rounds 2] [--model mobilenetv2] [--json F]

One folder of photo-like 640x480 JPEGs (``photos.make_folder``), a ``keras.applications`` model
with random weights (timing does not depend on them), batch 16, top-1 Grad-CAM, overlays and ``.npy``
written locally. Each round runs, one after the other on the same machine:

1. local: :func:`run_explain` in this process (the model is loaded once, before, as the CLI's driver
   has it before a run starts);
2. embedded: ``--engine ray`` without an address: a 2-CPU Ray started for the job, 2 actors;
3. cluster: ``ray.cluster_utils.Cluster``, a head node and a second node of 1 CPU each, joined by
   address, 2 actors;

and the local engine runs once more at the end (on a shared machine the load drifts). Figures are
the medians over the rounds. For each run (:func:`measure`): the start-up, the time until the first
image's files are written (and until its row reaches the driver), and the steady state once every
model instance has delivered its first batch: images per second over the CPUs given (``per_cpu``),
and images per CPU second that the engine's processes used meanwhile (``per_cpu_second``: this
process and its descendants, Ray's daemons and actors included, which other load on a shared
machine leaves alone).

Then the profile, on the cluster: one Ray task on a node doing what an actor does, phase by phase
(imports, model load, explainer build, first batch with its tracing, then per steady batch: decode,
model, render and write); Ray Data's own cost per block (the same pipeline shape with an actor that
returns rows without explaining); the driver's manifest appends per row; the CPUs Ray's daemons use
while idle; and the cost of the job's pinned runtime environment (first tasks with and without it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from photos import make_folder  # noqa: E402

BATCH = 16
NODE = {"num_cpus": 1, "object_store_memory": 128 * 1024**2}


class CpuSampler(threading.Thread):
    """CPU seconds used by this process and all its descendants (an embedded Ray's or a
    ``cluster_utils`` cluster's processes, their actors), sampled every ``period`` seconds, process
    by process (so that one exiting meanwhile keeps what it used); what the sampler itself spends
    reading ``/proc`` is left out."""

    def __init__(self, period: float = 0.25):
        super().__init__(daemon=True)
        self.period, self.stopping = period, threading.Event()
        self.samples: list[tuple[float, dict[int, float], float]] = []  # time, CPU by process, the sampler's own
        self.tick = os.sysconf("SC_CLK_TCK")
        self.actors: set[int] = set()  # processes seen titled as an ExplainActor

    def tree_cpu(self) -> dict[int, float]:
        parents, cpu = {}, {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                parents[int(entry.name)] = int(fields[1])
                cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / self.tick
        inside, frontier = {os.getpid()}, {os.getpid()}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier and pid not in inside}
            inside |= frontier
        for pid in inside - self.actors - {os.getpid()}:
            try:
                if b"ExplainActor" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    self.actors.add(pid)
            except OSError:
                pass
        return {pid: cpu[pid] for pid in inside if pid in cpu}

    def run(self) -> None:
        while not self.stopping.is_set():
            self.samples.append((time.time(), self.tree_cpu(), time.thread_time()))
            self.stopping.wait(self.period)

    def between(self, start: float, end: float) -> tuple[float, float, float, float, float]:
        """(first sample time at or after start, last at or before end, CPU seconds used between,
        of which by the actors, and by this process, the driver)."""
        inside = [sample for sample in self.samples if start <= sample[0] <= end]
        if len(inside) < 2:
            return start, end, float("nan"), float("nan"), float("nan")
        first, last_seen = inside[0][1], {}
        for _, cpu, _ in inside:
            last_seen.update(cpu)
        used = {pid: value - first.get(pid, 0.0) for pid, value in last_seen.items()}
        own = inside[-1][2] - inside[0][2]
        return (inside[0][0], inside[-1][0], sum(used.values()) - own,
                sum(value for pid, value in used.items() if pid in self.actors), used.get(os.getpid(), 0.0) - own)


def measure(label: str, run, items, out: Path, block: int, instances: int, cpus: int) -> dict:
    """One run. An image is done when its ``.npy`` file is written (its mtime), not when its row
    reaches the driver, which Ray Data hands over a block at a time, later (``first_row_s``). The
    steady window leaves out the first ``instances`` blocks done (each model instance's first batch,
    with its tracing): from the time the last of them was done to the last image. ``per_cpu``: its
    images per second over the CPUs given; ``per_cpu_second``: its images per CPU second that the
    engine's processes used meanwhile (the figure that other load on a shared machine leaves alone)."""
    from gradcam_cli.options import RunOptions

    rows: dict[str, float] = {}
    sampler = CpuSampler()
    sampler.start()
    started = time.time()
    summary = run(items, RunOptions(output_dir=out, batch_size=BATCH),
                  lambda row: rows.setdefault(row["input"], time.time()))
    ended = time.time()
    sampler.stopping.set()
    sampler.join()
    assert summary.images_done == len(items), summary
    done = sorted(path.stat().st_mtime for path in out.glob("*.npy"))
    assert len(done) == len(items)
    skip = min(instances * block, len(done) - 2)
    window = (done[skip - 1], done[-1])
    rate = (len(done) - skip) / (window[1] - window[0])
    first, last, cpu_seconds, actor_seconds, driver_seconds = sampler.between(*window)
    images_meanwhile = sum(1 for t in done if first < t <= last)
    figures = {"first_image_s": round(done[0] - started, 2), "first_row_s": round(min(rows.values()) - started, 2),
               "all_s": round(done[-1] - started, 2), "wall_s": round(ended - started, 2),
               "steady_images_per_s": round(rate, 2), "cpus": cpus, "per_cpu": round(rate / cpus, 2),
               "per_cpu_second": round(images_meanwhile / cpu_seconds, 2),
               "actor_cpu_ms_per_image": round(actor_seconds / images_meanwhile * 1000, 1),
               "other_cpu_ms_per_image": round((cpu_seconds - actor_seconds) / images_meanwhile * 1000, 1),
               "driver_cpu_ms_per_image": round(driver_seconds / images_meanwhile * 1000, 2)}
    print(f"  {label:<11} first image {figures['first_image_s']:5.1f} s (row {figures['first_row_s']:5.1f} s), "
          f"all {figures['all_s']:5.1f} s; steady {rate:6.2f} images/s = {figures['per_cpu']:5.2f} per CPU, "
          f"{figures['per_cpu_second']:5.2f} per CPU second used (CPU ms per image: actors "
          f"{figures['actor_cpu_ms_per_image']}, the rest {figures['other_cpu_ms_per_image']} of which the driver "
          f"{figures['driver_cpu_ms_per_image']})", flush=True)
    shutil.rmtree(out)
    return figures


def profile_actor(model_arguments: dict, paths: list[str], out: str, batches: int) -> dict:
    """What an actor does, phase by phase, in a fresh Ray worker (1 CPU)."""
    timings: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = round(now - mark, 3)
        mark = now

    from gradcam_cli import backend

    backend.limit_threads(1)
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.inputs import collect_inputs
    from gradcam_cli.models import resolve_model
    from gradcam_cli.options import RunOptions
    from gradcam_cli.runners.batch import BatchJob
    lap("imports_s")
    spec = resolve_model(**model_arguments)
    lap("model_load_s")
    options = RunOptions(output_dir=out, batch_size=BATCH)
    explainer = Explainer.from_options(spec, options, BATCH)
    job = BatchJob.create(spec, options, explainer, run_id="profile")
    lap("explainer_s")
    items = collect_inputs(paths)
    pool = ThreadPoolExecutor(max_workers=2)

    def one_batch(batch_items) -> dict:
        entries = [(item, f"p{index}") for index, item in enumerate(batch_items)]
        started = time.perf_counter()
        decoded = [pool.submit(job.decode, item) for item, _ in entries]
        pixels = np.stack([future.result()[1] for future in decoded])
        decode = time.perf_counter() - started
        started = time.perf_counter()
        job.explainer.run(pixels, job.classes, options.top_k)
        model = time.perf_counter() - started
        started = time.perf_counter()
        job.explain_batch(entries, decoded, lambda function, *arguments: _done(function(*arguments)))
        whole = time.perf_counter() - started  # the model again, then render and write
        return {"decode_s": decode, "model_s": model, "render_write_s": max(0.0, whole - model)}

    first = one_batch(items[:BATCH])
    lap("first_batch_s")
    timings["first_batch_model_s"] = round(first["model_s"], 3)
    steady_batches = [one_batch(items[BATCH * i : BATCH * (i + 1)]) for i in range(1, batches + 1)]
    for key in ("decode_s", "model_s", "render_write_s"):
        timings[f"per_batch_{key}"] = round(float(np.median([b[key] for b in steady_batches])), 3)
    per_batch = sum(timings[f"per_batch_{key}"] for key in ("decode_s", "model_s", "render_write_s"))
    timings["in_actor_images_per_s"] = round(BATCH / per_batch, 2)
    return timings


def _done(value):
    from concurrent.futures import Future

    future: Future = Future()
    future.set_result(value)
    return future


class EchoActor:
    """Ray Data's own cost: the engine's pipeline shape, returning a row per input, nothing explained."""

    def __call__(self, batch: dict) -> dict:
        rows = [json.dumps({"input": str(path), "padding": "x" * 500}) for path in batch["path"]]
        return {"row": np.array(rows, dtype=object)}


def ray_data_overhead(count: int, block: int) -> dict:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True
    table = [{"path": f"/photos/p{index:05d}.jpg", "real": "x", "relative": "x", "error": "", "source": "x",
              "stem": "x"} for index in range(count)]
    dataset = ray.data.from_items(table, override_num_blocks=-(-count // block)).map_batches(
        EchoActor, batch_size=block, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1)
    arrivals = []
    started = time.perf_counter()
    for _ in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        arrivals.append(time.perf_counter())
    blocks = len(arrivals)
    per_block = (arrivals[-1] - arrivals[1]) / max(blocks - 2, 1)
    return {"pipeline_start_s": round(arrivals[0] - started, 2), "per_block_ms": round(per_block * 1000, 1),
            "per_image_ms": round(per_block * 1000 / block, 2)}


def manifest_cost(rows: int = 2000) -> dict:
    from gradcam_cli.manifest import Manifest

    folder = Path(tempfile.mkdtemp(prefix="gradcam-manifest-"))
    row = {"run": "r", "method": "gradcam", "layer": "out_relu", "model": "MobileNetV2", "targets": "top1",
           "config": "0123456789ab", "head": "softmax", "output": "predictions", "status": "ok", "error": None,
           "rank": 0, "class_index": 3, "label": "tiger shark", "probability": 0.5, "top": [[3, "tiger shark", 0.5]] * 3,
           "image_size": [480, 640], "heatmap_shape": [7, 7], "empty_heatmap": False}
    manifest = Manifest(folder / "manifest.jsonl")
    started = time.perf_counter()
    for index in range(0, rows, BATCH):
        manifest.append([{**row, "input": f"/photos/p{i:05d}.jpg", "overlay": str(folder / f"p{i}.jpg"),
                          "heatmap": str(folder / f"p{i}.npy")} for i in range(index, index + BATCH)])
    seconds = time.perf_counter() - started
    manifest.close()
    shutil.rmtree(folder)
    return {"per_row_us": round(seconds / rows * 1e6, 1)}


def _pid() -> int:
    return os.getpid()


def pinning_cost(address: str) -> dict:
    """A first task's latency in a fresh job on the cluster, with and without the pinned runtime env."""
    import ray

    from gradcam_cli.runners.ray_session import pinned_runtime_env

    figures = {}
    for label in ("without", "with"):
        with tempfile.TemporaryDirectory() as empty:
            runtime_env = pinned_runtime_env(address, empty) if label == "with" else None
            started = time.perf_counter()
            ray.init(address=address, runtime_env=runtime_env, logging_level=logging.ERROR, log_to_driver=False)
        connected = time.perf_counter()
        ray.get([ray.remote(num_cpus=1)(_pid).remote() for _ in range(2)])
        figures[f"{label}_init_s"] = round(connected - started, 2)
        figures[f"{label}_first_tasks_s"] = round(time.perf_counter() - connected, 2)
        ray.shutdown()
    return figures


def idle_cpu(seconds: float = 6.0, settle: float = 10.0) -> float:
    """CPUs that this process and its descendants use while no job runs (``settle`` seconds after the
    last, once its actors are gone): Ray's daemons (GCS, raylets, their agents) and the driver."""
    time.sleep(settle)
    sampler = CpuSampler()
    sampler.start()
    time.sleep(seconds)
    sampler.stopping.set()
    sampler.join()
    start, end, used, _, _ = sampler.between(sampler.samples[1][0], sampler.samples[-1][0])
    return round(used / (end - start), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="mobilenetv2")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import ray
    import tensorflow as tf
    from ray.cluster_utils import Cluster

    from gradcam_cli.inputs import collect_inputs
    from gradcam_cli.models import resolve_model
    from gradcam_cli.runners.local import run_explain
    from gradcam_cli.runners.ray import block_size, run_explain_ray
    from gradcam_cli.runners.ray_session import ray_session

    work = Path(tempfile.mkdtemp(prefix="gradcam-ray-cluster-"))
    paths = make_folder(work / "photos", args.images)
    items = collect_inputs([str(work / "photos")])
    model_arguments = {"model": args.model, "weights": "none"}
    cpus = os.cpu_count() or 1
    report: dict = {"date": datetime.date.today().isoformat(),
                    "command": f"python benchmarks/ray_cluster.py --images {args.images} --model {args.model} "
                               f"--rounds {args.rounds}",
                    "machine": {"cpus": cpus, "platform": platform.platform(), "python": platform.python_version(),
                                "tensorflow": tf.__version__, "ray": ray.__version__},
                    "model": args.model, "images": args.images, "batch": BATCH}
    report["ray_block"] = block_size(args.images, 2, BATCH)
    print(f"{args.images} photo-like 640x480 JPEGs, {args.model} (random weights), batch {BATCH}, {cpus} CPUs",
          flush=True)
    spec = resolve_model(**model_arguments)

    def local(items, options, on_row):
        return run_explain(items, spec, options, on_row=on_row)

    def on_ray(items, options, on_row):
        return run_explain_ray(items, spec, model_arguments, options, workers=2, on_row=on_row)

    ray_block = block_size(len(items), 2, BATCH)  # the engine's blocks, 2 actors
    rounds: dict[str, list[dict]] = {"local": [], "embedded": [], "cluster": []}
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number}:", flush=True)
        rounds["local"].append(measure("local", local, items, work / "out", BATCH, 1, cpus))

        started = time.perf_counter()
        with ray_session(None, 2):
            session = time.perf_counter() - started
            rounds["embedded"].append({"session_start_s": round(session, 2),
                                       **measure("embedded", on_ray, items, work / "out", ray_block, 2, 2)})
            if round_number == args.rounds:
                report["idle_cpus"] = {"embedded": idle_cpu()}

        started = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
        cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        cluster_start = time.perf_counter() - started
        try:
            started = time.perf_counter()
            with ray_session(cluster.address, None):
                session = time.perf_counter() - started
                rounds["cluster"].append({"cluster_start_s": round(cluster_start, 2), "session_start_s": round(session, 2),
                                          **measure("2 nodes", on_ray, items, work / "out", ray_block, 2, 2)})
                if round_number == args.rounds:
                    report["idle_cpus"]["cluster"] = idle_cpu()
                    task = ray.remote(num_cpus=1)(profile_actor)
                    report["profile"] = {"actor": ray.get(task.remote(model_arguments, [str(p) for p in paths],
                                                                      str(work / "profile"), 4))}
                    report["profile"]["ray_data"] = {f"blocks of {size}": ray_data_overhead(len(items), size)
                                                     for size in sorted({BATCH, ray_block})}
            if round_number == args.rounds:
                report["profile"]["pinning"] = pinning_cost(cluster.address)
        finally:
            ray.shutdown()
            cluster.shutdown()
        print(f"  (embedded Ray started in {rounds['embedded'][-1]['session_start_s']:.1f} s; the cluster in "
              f"{cluster_start:.1f} s, joined in {rounds['cluster'][-1]['session_start_s']:.1f} s)", flush=True)
    rounds["local"].append(measure("local again", local, items, work / "out", BATCH, 1, cpus))
    report["profile"]["manifest"] = manifest_cost()
    report["rounds"] = rounds
    report["median"] = {engine: {key: round(float(np.median([run[key] for run in runs])), 2)
                                 for key in runs[0]} for engine, runs in rounds.items()}
    print("median:", flush=True)
    for engine, figures in report["median"].items():
        print(f"  {engine:<9} " + ", ".join(f"{key} {value}" for key, value in figures.items()), flush=True)
    local_efficiency = report["median"]["local"]["per_cpu_second"]
    for engine in ("embedded", "cluster"):
        print(f"  {engine}: steady per CPU {report['median'][engine]['per_cpu'] / report['median']['local']['per_cpu']:.2f}x "
              f"the local engine's, per CPU second used "
              f"{report['median'][engine]['per_cpu_second'] / local_efficiency:.2f}x", flush=True)
    print(f"idle CPUs (Ray's daemons and the driver, no job): {report['idle_cpus']}", flush=True)
    print("profile:", flush=True)
    for key, figures in report["profile"].items():
        print(f"  {key}: {figures}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
