"""The Ray engine: the explain job of :mod:`gradcam_cli.runners.local`, run on a Ray cluster by Ray Data.

The driver (this process) plans the run exactly as the local engine does (:func:`plan_run`:
targets, output stems, resume), then hands the inputs still to do to a Ray Data pipeline::

    from_items(inputs) -> map_batches(ExplainActor, ActorPoolStrategy(size=workers)) -> driver

Each :class:`ExplainActor` loads the model once, from its name or path (a model is never pickled),
with TensorFlow's thread pools sized to the CPUs Ray gave the actor, and runs the one batch function
(:meth:`BatchJob.explain_batch`: decode, explain, render, write) on its own files. Only manifest rows
travel back; the driver streams them into ``manifest.jsonl`` (the same :class:`Manifest` code, one
file, written once) and the progress bar. Ray Data supplies streaming, backpressure and the retry
of a batch whose actor died: outputs are written atomically (temporary file + rename locally, a
single put on object stores), so a retried batch overwrites whole files with identical bytes, and
its rows reach the driver only once, from the attempt that finished.

Without an address (``--ray-address`` or ``RAY_ADDRESS``) an embedded local Ray is started
(``address="local"``, ``--workers`` CPUs, a bounded object store) and shut down at the end; with
one, the job joins that cluster, whose nodes must see the inputs and the output folder (a shared
filesystem, or ``s3://``/``gs://`` URIs) and have gradcam-cli installed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .. import outputs
from ..errors import EngineError, GradcamError, param, spell_command_line, spells_command_line
from ..inputs import InputItem
from ..models.factory import absolute_reference
from ..models.spec import ModelSpec
from ..options import RunOptions
from ..storage import is_uri
from .batch import BatchJob, RowSink, RunPlan, RunSummary, plan_run

EXTRA = 'pip install "gradcam-cli[ray]"'
EMBEDDED_OBJECT_STORE_BYTES = 256 * 1024**2  # rows and paths only travel through it: small is plenty
CONNECT_TIMEOUT_S = 3.0
WRITE_FAILURE = "__write_failure__"  # marks an actor's OSError on writing (errno, strerror)


def require_ray() -> None:
    """Raise :class:`EngineError` naming the extra when Ray Data is not installed."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError(f"{param('engine', 'ray')} needs Ray Data, which is not installed: {EXTRA}") from None


def _actor_cpus() -> int:
    """The CPUs Ray assigned to the calling actor (at least 1)."""
    import ray

    assigned = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, int(round(assigned)))


def absolute_model_arguments(model_arguments: dict[str, Any]) -> dict[str, Any]:
    """``resolve_model`` keyword arguments with local files made absolute, so that an actor whose
    working folder differs still finds the model (or the Python file that builds it), its weights and
    its labels file."""
    resolved = dict(model_arguments)
    for key in ("model", "weights", "labels"):
        value = resolved.get(key)
        if isinstance(value, (str, os.PathLike)) and os.path.exists(value):
            resolved[key] = os.path.abspath(value)
        elif key == "model" and isinstance(value, str):
            resolved[key] = absolute_reference(value)  # FILE.py:FACTORY: the file, made absolute
    return resolved


class ExplainActor:
    """The callable class Ray Data runs in each actor of the pool: one model, many batches."""

    def __init__(self, model_arguments: dict[str, Any], options: RunOptions, batch_size: int,
                 run_id: str, config: str, command_line: bool = False):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        spell_command_line(command_line)  # messages in rows read as the driver's user expects
        from .. import backend

        cpus = _actor_cpus()
        backend.limit_threads(cpus)  # before any op runs (and on JAX, before it is imported)
        from ..explainer import Explainer
        from ..models import resolve_model

        spec = resolve_model(**model_arguments)
        explainer = Explainer.from_options(spec, options, batch_size)
        self.job = BatchJob.create(spec, options, explainer, run_id=run_id)
        if self.job.config != config:
            raise GradcamError(f"{spec.source}: the model a Ray worker loaded differs from the driver's "
                               "(another file or version on that node); make them the same.")
        self.pool = ThreadPoolExecutor(max_workers=max(2, cpus), thread_name_prefix="decode-write")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        entries = [
            (InputItem(str(path), str(relative), str(error) or None, str(real)), str(stem))
            for path, relative, error, real, stem in zip(batch["path"], batch["relative"], batch["error"],
                                                         batch["real"], batch["stem"], strict=True)
        ]
        decodes = [self.pool.submit(self.job.decode, item, str(source))
                   for (item, _), source in zip(entries, batch["source"], strict=True)]
        rows: list[dict] = []
        try:
            for row in self.job.explain_batch(entries, decodes, self.pool.submit):
                rows.append(row.result() if isinstance(row, Future) else row)
        except OSError as error:  # reported to the driver, which stops the run (not retried)
            rows.append({WRITE_FAILURE: [error.errno, error.strerror or str(error)]})
        return {"row": np.array([json.dumps(row, ensure_ascii=False) for row in rows], dtype=object)}


def cluster_address(address: str | None) -> str | None:
    """The cluster to join (``address``, else ``RAY_ADDRESS``), checked to answer; None for an
    embedded local Ray."""
    source = param("ray_address") if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _check_answers(address, source)
    return address


def _check_answers(address: str, source: str) -> None:
    """Fail within seconds unless a Ray cluster answers at ``address``, instead of Ray's own half
    a minute of retries.

    A TCP connect is not proof (some networks accept every connection at a proxy), so for
    ``HOST:PORT`` the check asks the GCS for its cluster id over gRPC, with a deadline; for a
    ``ray://`` (Ray Client) address a TCP connect is checked.
    """
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise EngineError(f"{source} {address}: not an address; use HOST:PORT (the head node's GCS "
                          "port, 6379 by default), ray://HOST:10001 or auto.")
    problem = None
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
        if parts.scheme == "tcp":
            problem = _gcs_problem(host, port)
    except OSError as error:
        problem = error.strerror or str(error) or type(error).__name__
    if problem:
        raise EngineError(f"{source} {address}: cannot reach a Ray cluster there ({problem}); start it "
                          "(ray start --head) or leave the address out to run an embedded local Ray.")


def _gcs_problem(host: str, port: int) -> str | None:
    """None when a Ray GCS answers ``GetClusterId`` at host:port within the deadline, else why not."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    channel = grpc.insecure_channel(f"{host}:{port}", options=[("grpc.enable_http_proxy", 0)])
    try:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=CONNECT_TIMEOUT_S)
    except grpc.RpcError as error:
        code = error.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:  # a GCS refusing a caller without its cluster id
            return None
        return "no answer in time" if code == grpc.StatusCode.DEADLINE_EXCEEDED else \
            f"something answers there, but not a Ray GCS: {code.name.lower()}"
    finally:
        channel.close()
    return None


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a while: Ray's C++ start-up lines (its log level note)
    bypass Python logging. Python exceptions are unaffected."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def ray_session(address: str | None, workers: int | None) -> Iterator[None]:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start an embedded local Ray with
    ``workers`` CPUs; shut it down (or disconnect) at the end. A session this process already has
    (a notebook, a test) is used as it is and left running."""
    import ray

    address = cluster_address(address)
    if ray.is_initialized():
        yield
        return
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
    # the C++ core worker's notes (e.g. on constructor arguments kept in the object store) would
    # otherwise reach the terminal; Ray's session logs keep everything
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        with _native_stderr_silenced():
            if address:
                ray.init(address=address, **quiet)
            else:
                ray.init(address="local", num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                         object_store_memory=EMBEDDED_OBJECT_STORE_BYTES, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = param("ray_address", address) if address else "embedded Ray"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EngineError(f"{where}: Ray did not start ({first_line}).") from None
    try:
        yield
    finally:
        ray.shutdown()


def _error_types(base: type = GradcamError) -> dict[str, type]:
    types = {base.__name__: base}
    for subclass in base.__subclasses__():
        types.update(_error_types(subclass))
    return types


def _user_error(error: BaseException) -> GradcamError:
    """The tool's own error behind a Ray failure (a model an actor could not load, ...), found in
    the exception chain or, for an actor that died in its constructor, in Ray's rendered
    traceback; else the failure's first line as an :class:`EngineError`."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, GradcamError):
            return current
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__ or current.__context__
    types = _error_types()
    for line in reversed(str(error).splitlines()):
        name, _, message = line.strip().partition(": ")
        error_type = types.get(name.rsplit(".", 1)[-1])
        if error_type is not None and message:
            return error_type(message)
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else type(error).__name__
    return EngineError(f"the Ray job failed: {first_line}")


def _input_table(items: list[InputItem], stems: dict[str, str]) -> list[dict[str, str]]:
    """One row per input for Ray Data: the name recorded, where actors read it, its output stem."""
    return [{"path": item.path, "real": item.real, "relative": item.relative, "error": item.error or "",
             "source": item.path if is_uri(item.path) else os.path.abspath(item.path),
             "stem": stems[item.real]} for item in items]


def _stream_rows(job: BatchJob, plan: RunPlan, sink: RowSink, model_arguments: dict[str, Any],
                 workers: int | None) -> None:
    """The Ray Data pipeline of one run, its rows streamed into ``sink`` as batches finish."""
    import ray
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # rows in input order, as the local engine writes them: the same manifest and report. Actors
    # still run ahead; only finished rows (a few hundred bytes each) wait for their turn.
    context.execution_options.preserve_order = True
    actors = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    # the model's batch (compiled, padded) stays the local engine's, for identical maps; Ray's
    # batches are smaller when that keeps every actor busy on a small job
    batch_size = job.explainer.batch_size
    ray_batch = max(1, min(batch_size, -(-len(plan.todo) // actors)))
    dataset = ray.data.from_items(
        _input_table(plan.todo, plan.stems),
        override_num_blocks=-(-len(plan.todo) // ray_batch),
    ).map_batches(
        ExplainActor,
        fn_constructor_kwargs={
            "model_arguments": absolute_model_arguments(model_arguments), "options": job.options,
            "batch_size": batch_size, "run_id": job.run_id, "config": job.config,
            "command_line": spells_command_line(),
        },
        batch_size=ray_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
    )
    blocks = dataset.iter_batches(batch_size=None, batch_format="numpy")
    iterator = iter(blocks)
    try:
        for block in iterator:
            rows = [json.loads(text) for text in block["row"]]
            failure = next((row[WRITE_FAILURE] for row in rows if WRITE_FAILURE in row), None)
            if failure is not None:
                plan.manifest.append([row for row in rows if WRITE_FAILURE not in row])
                raise sink.write_failure(OSError(failure[0], failure[1]))
            sink.record(rows, len({row["input"] for row in rows}))
    finally:  # stops the pipeline (and its actors) on Ctrl-C or an error, in a joined cluster too
        close = getattr(iterator, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


def run_explain_ray(
    items: list[InputItem],
    spec: ModelSpec,
    model_arguments: dict[str, Any],
    options: RunOptions,
    address: str | None = None,
    workers: int | None = None,
    on_row: Callable[[dict], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunSummary:
    """:func:`gradcam_cli.runners.local.run_explain` on Ray: the same outputs, manifest and summary.

    ``spec`` is the driver's copy of the model (targets, fingerprint, resume decisions);
    ``model_arguments`` are the :func:`resolve_model` keywords each actor loads it with. ``workers``:
    actors in the pool (one CPU each) and, for the embedded Ray, its CPUs; default: the cluster's CPUs.
    """
    require_ray()
    import ray

    started = time.perf_counter()
    plan = plan_run(items, spec, options, progress=progress)
    job, summary = plan.job, plan.summary
    sink = RowSink.for_plan(plan, on_row, progress)
    try:
        if plan.todo:
            with ray_session(address, workers), warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=UserWarning, module=r"ray\.data\..*")
                _stream_rows(job, plan, sink, model_arguments, workers)
    except KeyboardInterrupt:
        summary.interrupted = True
    except ray.exceptions.RayError as error:
        raise _user_error(error) from None
    finally:
        plan.manifest.close_and_compact()
        if job.output.local is not None:  # an actor killed mid-write leaves a temporary; its batch was redone
            outputs.remove_stale_temporaries(job.output.local)
        summary.seconds = time.perf_counter() - started
    return summary
