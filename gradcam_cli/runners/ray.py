"""The Ray engine: the explain job of :mod:`gradcam_cli.runners.local`, run on a Ray cluster by Ray Data.

The driver (this process) plans the run exactly as the local engine does (:func:`plan_run`:
targets, output stems, resume), then hands the inputs still to do to a Ray Data pipeline::

    from_items(inputs) -> map_batches(ExplainActor, ActorPoolStrategy(size=workers)) -> driver

Each :class:`ExplainActor` first checks that it runs what the driver runs (the same gradcam-cli and
Keras versions, :class:`Environment`), loads the model once, from its name or path (a model is never
pickled), with TensorFlow's thread pools sized to the CPUs Ray gave the actor, checks that it is the
driver's model by content (:attr:`ModelSpec.identity`); a worker that differs is refused with one
line naming both sides. It then runs the one batch function (:meth:`BatchJob.explain_batch`:
decode, explain, render, write) on its own files, model batch by model batch within each block of
inputs (:func:`block_size`). Only manifest rows travel back; the driver streams them into
``manifest.jsonl`` (the same :class:`Manifest` code, one file, written once) and the progress bar.
Ray Data supplies streaming, backpressure and the retry of a block whose actor (or node) died:
outputs are written atomically (temporary file + rename locally, a single put on object stores), so
a retried block overwrites whole files with identical bytes, and its rows reach the driver only
once, from the attempt that finished.

Without an address (``--ray-address`` or ``RAY_ADDRESS``) an embedded local Ray is started
(``address="local"``, ``--workers`` CPUs, a bounded object store) and shut down at the end; with
one, the job joins that cluster, whose nodes must see the inputs and the output folder (a shared
filesystem, or ``s3://``/``gs://`` URIs) and have gradcam-cli installed.

Connecting (an address checked in seconds, a runtime environment that keeps workers from importing the
driver's working folder) is :mod:`gradcam_cli.runners.ray_session`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import outputs
from ..errors import EngineError, GradcamError, spell_command_line, spells_command_line
from ..inputs import InputItem
from ..models.references import absolute_reference, split_reference
from ..models.spec import ModelSpec
from ..options import RunOptions
from ..storage import is_uri
from .batch import BatchJob, RowSink, RunPlan, fingerprint, plan_run
from .ray_session import ray_data_console_detached, ray_session, require_ray
from .summary import RunSummary

log = logging.getLogger("gradcam_cli")
WRITE_FAILURE = "__write_failure__"  # marks an actor's OSError on writing (errno, strerror)
MAX_BATCHES_PER_BLOCK = 4  # model batches in one Ray Data block (block_size)
BLOCKS_PER_ACTOR = 4  # at least, before blocks grow beyond one batch


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


def module_roots(model: Any) -> list[str]:
    """For ``package.module:FACTORY``, the folder the driver imported the package from: actors add it
    at the end of their import path, so that a module beside the driver's working folder (no longer on
    the workers' path, :func:`pinned_runtime_env`) is still found, and an installed one still wins."""
    parts = split_reference(model) if isinstance(model, str) and not os.path.exists(model) else None
    if parts is None or parts[2]:
        return []
    top = sys.modules.get(parts[0].split(".")[0])
    location = getattr(top, "__file__", None)
    if not location:
        return []
    folder = os.path.dirname(os.path.abspath(location))
    return [os.path.dirname(folder) if os.path.basename(location) == "__init__.py" else folder]


@dataclass(frozen=True)
class Environment:
    """What a process explains with: the driver and every Ray worker must agree on the versions of
    gradcam-cli and Keras and on the backend (``package``, where gradcam-cli was imported from, is
    shown, never compared: a node may install it anywhere)."""

    version: str
    keras: str
    backend: str
    package: str

    @classmethod
    def here(cls) -> Environment:
        from importlib.metadata import PackageNotFoundError, version

        import gradcam_cli

        from .. import backend

        try:
            keras = version("keras")
        except PackageNotFoundError:
            keras = "missing"
        return cls(gradcam_cli.__version__, keras, backend.configured_name(), os.path.dirname(gradcam_cli.__file__))

    def agrees_with(self, other: Environment) -> bool:
        return (self.version, self.keras, self.backend) == (other.version, other.keras, other.backend)

    def __str__(self) -> str:
        return f"gradcam-cli {self.version} (Keras {self.keras}, {self.backend}) from {self.package}"


@dataclass(frozen=True)
class DriverFacts:
    """What every actor checks itself against before its first batch."""

    environment: Environment
    model: str  # the model's name, for messages
    identity: str  # ModelSpec.identity
    location: str  # where the driver loaded it from (ModelSpec.source)
    config: str  # the run's fingerprint

    @classmethod
    def of(cls, job: BatchJob) -> DriverFacts:
        return cls(Environment.here(), job.spec.name, job.spec.identity, job.spec.source, job.config)


def _node() -> str:
    import ray

    return f"node {ray.util.get_node_ip_address()} ({ray.get_runtime_context().get_node_id()[:8]})"


class ExplainActor:
    """The callable class Ray Data runs in each actor of the pool: one model, many batches."""

    def __init__(self, model_arguments: dict[str, Any], options: RunOptions, batch_size: int, run_id: str,
                 driver: DriverFacts, local_paths: dict[str, str] | None = None,
                 code_paths: list[str] | None = None, command_line: bool = False):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        spell_command_line(command_line)  # messages in rows read as the driver's user expects
        here = Environment.here()
        if not here.agrees_with(driver.environment):
            raise EngineError(f"the Ray worker on {_node()} runs {here}; the driver runs {driver.environment}. "
                              "Install the same gradcam-cli and Keras on every node, or start the job in a "
                              "runtime environment that installs them.")
        from .. import backend

        cpus = _actor_cpus()
        backend.limit_threads(cpus)  # before any op runs (and on JAX, before it is imported)
        from ..explainer import Explainer
        from ..models import resolve_model

        sys.path.extend(path for path in code_paths or [] if path not in sys.path and os.path.isdir(path))
        spec = resolve_model(**model_arguments)
        if spec.identity != driver.identity:
            raise EngineError(f"{driver.model}: the Ray worker on {_node()} loaded {spec.identity} from {spec.source}; "
                              f"the driver loaded {driver.identity} from {driver.location}. Make the model the same "
                              "on every node.")
        if options.reference is not None:  # a similarity: the driver's reference vectors, not decoded again here
            spec = options.reference.apply(spec)
        # paths the driver made absolute (this process's working folder is not the driver's); the
        # run's fingerprint is the driver's, computed from the options as given
        local_options = dataclasses.replace(options, **(local_paths or {}))
        explainer = Explainer.from_options(spec, local_options, batch_size)
        job = BatchJob.create(spec, local_options, explainer, run_id=run_id)
        config = fingerprint(spec, explainer, options, job.targets)
        if config != driver.config:
            raise EngineError(f"{driver.model}: the Ray worker on {_node()} resolved other settings (layer "
                              f"{explainer.layer_name}, targets {job.targets}: config {config}) than the driver "
                              f"(config {driver.config}). Make gradcam-cli and the model the same on every node.")
        self.job = dataclasses.replace(job, config=config)
        self.pool = ThreadPoolExecutor(max_workers=max(2, cpus), thread_name_prefix="decode-write")

    def __call__(self, block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One block of inputs (:func:`block_size`), in model batches: the next batch decodes while
        one is explained and the one before is written, as in the local engine. Returns its rows."""
        entries = [
            (InputItem(str(path), str(relative), str(error) or None, str(real)), str(stem), str(source))
            for path, relative, error, real, stem, source in zip(
                block["path"], block["relative"], block["error"], block["real"], block["stem"], block["source"],
                strict=True)
        ]
        size = self.job.explainer.batch_size
        batches = [entries[start : start + size] for start in range(0, len(entries), size)]

        def decodes(batch: list) -> list[Future]:
            return [self.pool.submit(self.job.decode, item, source) for item, _, source in batch]

        rows: list[dict] = []
        writing: list[list[Future | dict]] = []  # the rows of the batches being written, in order

        def resolve(batch_rows: list[Future | dict]) -> None:
            rows.extend(row.result() if isinstance(row, Future) else row for row in batch_rows)

        try:
            upcoming = decodes(batches[0])
            for index, batch in enumerate(batches):
                current, upcoming = upcoming, decodes(batches[index + 1]) if index + 1 < len(batches) else []
                writing.append(self.job.explain_batch([(item, stem) for item, stem, _ in batch], current,
                                                      self.pool.submit))
                if len(writing) > 1:
                    resolve(writing.pop(0))
            for batch_rows in writing:
                resolve(batch_rows)
        except OSError as error:  # reported to the driver, which stops the run (not retried)
            rows.append({WRITE_FAILURE: [error.errno, error.strerror or str(error)]})
        return {"row": np.array([json.dumps(row, ensure_ascii=False) for row in rows], dtype=object)}


def block_size(todo: int, actors: int, batch_size: int) -> int:
    """Inputs per Ray Data block. Ray Data and its driver spend about as much on a block of 16 photos
    as on one of 64, a few percent of the work (docs/ray.md); so a large job sends blocks of up to
    :data:`MAX_BATCHES_PER_BLOCK` model batches, while keeping :data:`BLOCKS_PER_ACTOR` blocks per actor,
    so that the actors finish together; a small job, blocks of less than a batch, so that every
    actor has some."""
    per_actor = -(-todo // max(1, actors))
    if per_actor <= batch_size:
        return max(1, per_actor)
    return batch_size * max(1, min(MAX_BATCHES_PER_BLOCK, per_actor // (batch_size * BLOCKS_PER_ACTOR)))


def local_paths(options: RunOptions) -> dict[str, str]:
    """The options' local paths made absolute: the output folder, a region mask file."""
    paths = {}
    if not is_uri(str(options.output_dir)) and not str(options.output_dir).lower().startswith("file://"):
        paths["output_dir"] = os.path.abspath(options.output_dir)
    if options.region and os.path.isfile(options.region):
        paths["region"] = os.path.abspath(options.region)
    return paths


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

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # rows in input order, as the local engine writes them: the same manifest and report. Actors
    # still run ahead; only finished rows (a few hundred bytes each) wait for their turn.
    context.execution_options.preserve_order = True
    actors = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    # the model's batch (compiled, padded) stays the local engine's, for identical maps; a block
    # holds one or more of them (fewer inputs when that keeps every actor busy on a small job)
    batch_size = job.explainer.batch_size
    block = block_size(len(plan.todo), actors, batch_size)
    dataset = ray.data.from_items(
        _input_table(plan.todo, plan.stems),
        override_num_blocks=-(-len(plan.todo) // block),
    ).map_batches(
        ExplainActor,
        fn_constructor_kwargs={
            "model_arguments": absolute_model_arguments(model_arguments), "options": job.options,
            "batch_size": batch_size, "run_id": job.run_id, "driver": DriverFacts.of(job),
            "local_paths": local_paths(job.options), "code_paths": module_roots(model_arguments.get("model")),
            "command_line": spells_command_line(),
        },
        batch_size=block,
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
            with ray_session(address, workers), ray_data_console_detached(), warnings.catch_warnings():
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
