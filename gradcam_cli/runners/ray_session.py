"""Joining a Ray cluster, or starting an embedded one, for the Ray engine (:mod:`gradcam_cli.runners.ray`):
the address check that fails in seconds, the runtime environment that keeps workers from importing the
driver's working folder, and the quieting of Ray's own console output around a run.

Ray puts the driver's working folder first on its workers' import path, so a run started inside a
checkout of this project had workers import that checkout while the driver imported the installed
package. The job is therefore started with a runtime environment whose working folder is an empty
one (:func:`pinned_runtime_env`): workers import what their node has installed, as the driver does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ..errors import EngineError, param

log = logging.getLogger("gradcam_cli")
EXTRA = 'pip install "gradcam-cli[ray]"'
EMBEDDED_OBJECT_STORE_BYTES = 256 * 1024**2  # rows and paths only travel through it: small is plenty
CONNECT_TIMEOUT_S = 3.0
SUBMITTED_JOB_CONFIG = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by `ray job submit` for the driver it starts


def require_ray() -> None:
    """Raise :class:`EngineError` naming the extra when Ray Data is not installed."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError(f"{param('engine', 'ray')} needs Ray Data, which is not installed: {EXTRA}") from None


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


def pinned_runtime_env(address: str | None, empty_folder: str) -> dict[str, Any] | None:
    """The job's runtime environment: ``empty_folder`` as its working folder, so that Ray does not put the
    driver's working folder (and script folder) first on its workers' import path, where a checkout
    of this project, or any module lying there, would shadow what the nodes have installed.

    None where Ray adds nothing (a Ray Client address) or where the job already has a working
    folder (``ray job submit --working-dir``). Another runtime environment given to ``ray job
    submit`` (``pip``, ``py_modules``) is merged with this one by Ray.
    """
    if address and address.startswith("ray://"):
        return None
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        submitted = json.loads(os.environ.get(SUBMITTED_JOB_CONFIG) or "{}")
        if (submitted.get("runtime_env") or {}).get("working_dir"):
            return None
    return {"working_dir": empty_folder}  # ray.init packs and uploads it (once: by content)


@contextlib.contextmanager
def _worker_errors_to_log() -> Iterator[None]:
    """Ray's driver prints every error it hears of from the job's workers on standard output, where
    ``--json`` rows go: a refused actor's whole traceback, each retry of a batch whose node died.
    Meanwhile they go to the ``gradcam_cli`` log at debug level instead; the run reports its own
    error in one line. (Ray's private hook; where it is missing, Ray prints as before.)"""
    from ray._private import worker as ray_worker

    printing = getattr(ray_worker, "print_to_stdstream", None)
    if printing is None:
        yield
        return

    def to_log(data: dict, ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":  # the error channel; worker output is not forwarded here
            printing(data, ignore_prefix)
            return
        for line in data.get("lines", []):
            log.debug("ray: %s", line)

    ray_worker.print_to_stdstream = to_log
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = printing


@contextlib.contextmanager
def ray_session(address: str | None, workers: int | None) -> Iterator[None]:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start an embedded local Ray with
    ``workers`` CPUs; shut it down (or disconnect) at the end. A session this process already has
    (a notebook, a test) is used as it is and left running (its workers' import path is its own)."""
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
        with tempfile.TemporaryDirectory(prefix="gradcam-ray-") as empty, _native_stderr_silenced():
            runtime_env = pinned_runtime_env(address, empty)
            if address:
                ray.init(address=address, runtime_env=runtime_env, **quiet)
            else:
                ray.init(address="local", num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                         object_store_memory=EMBEDDED_OBJECT_STORE_BYTES, runtime_env=runtime_env, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = param("ray_address", address) if address else "embedded Ray"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EngineError(f"{where}: Ray did not start ({first_line}).") from None
    try:
        with _worker_errors_to_log():
            yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def ray_data_console_detached() -> Iterator[None]:
    """Ray Data's console handler detached while the job runs: it would print its warnings, and a
    failed actor's stack trace, around the run's own one-line error. Its log file (``ray-data.log``
    in the session's logs) still gets everything."""
    import ray.data  # noqa: F401  (configures its loggers)

    logger = logging.getLogger("ray.data")
    console = [handler for handler in logger.handlers
               if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)]
    for handler in console:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in console:
            logger.addHandler(handler)
