"""``manifest.jsonl``: the one place that reads and writes the rows describing a run's outputs.

Stored form (``"format": 2``): ``overlay``, ``heatmap`` and ``saliency`` are '/'-separated paths
relative to the folder holding the manifest, so the folder can be moved, zipped and reported from
anywhere; ``input`` is the input's resolved absolute path (its identity); ``image_size`` and
``heatmap_shape`` are ``[height, width]``. In memory (what :meth:`Manifest.read_rows` returns and
what the engines hand to :meth:`Manifest.append`), every path is absolute.

Older rows (no ``format``) stored paths relative to the directory the run was started from and
``image_size`` as ``[width, height]``; they are read as well (each output path is looked up under the
manifest's folder) and rewritten in the current form at the next compaction.

Which rows are current (:func:`current_rows`), so that every row describes the file its path points to:

1. per (input, method, targets, counterfactual), only the rows of the latest run that handled that input;
2. per output file, only the latest row naming it: a later run that rewrote a file (a different
   ``--layer`` or ``--alpha``, which do not change file names) retires the earlier row about it.

Rows are appended and flushed batch by batch while a run goes (a killed run loses nothing already
written); readers apply the rules above to whatever is on disk, and :meth:`Manifest.close` rewrites
the file with the current rows only.

On an object store (``-o s3://...``, :class:`RemoteManifest`) the same rows are kept in a local spool
file and put whole; there, output paths are relative to the output URI and inputs that are URIs
stay URIs.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from . import outputs
from .outputs import OutputFolder
from .storage import is_uri

MANIFEST = "manifest.jsonl"
FORMAT = 2
PATH_FIELDS = ("overlay", "heatmap", "saliency")


def current_rows(rows: list[dict]) -> list[dict]:
    """The rows still true of the files on disk, in file order (rules in the module docstring)."""
    latest_run: dict[tuple, Any] = {}
    for row in rows:
        latest_run[Manifest.group(row)] = row.get("run")
    kept = [row for row in rows if latest_run[Manifest.group(row)] == row.get("run")]
    last_writer: dict[str, int] = {}
    for position, row in enumerate(kept):
        for key in PATH_FIELDS:
            if row.get(key):
                last_writer[os.path.normcase(row[key])] = position
    return [row for position, row in enumerate(kept)
            if all(last_writer[os.path.normcase(row[key])] == position for key in PATH_FIELDS if row.get(key))]


def _locate_old_output(stored: str, folder: Path) -> str:
    """An output path of a format-1 row (relative to an unknown start directory), found under ``folder``."""
    if os.path.isabs(stored):
        return stored
    from_here = os.path.abspath(stored)
    root = os.path.realpath(folder)
    if os.path.exists(from_here) and os.path.commonpath([root, os.path.realpath(from_here)]) == root:
        return from_here
    parts = PurePosixPath(stored.replace("\\", "/")).parts
    for start in range(len(parts)):  # drop the old output-dir prefix, component by component
        candidate = folder.joinpath(*parts[start:])
        if candidate.exists():
            return str(candidate)
    return str(folder.joinpath(*parts[-1:]))


def _join(folder: Path | str, relative: str) -> str:
    """A stored relative path -> the full path (or URI) under the manifest's folder."""
    if is_uri(folder):
        return f"{str(folder).rstrip('/')}/{relative}"
    return os.path.normpath(os.path.join(folder, relative))


def _target_count(targets: str, rows: list[dict]) -> int:
    """Rows one input gets: ``top3`` -> 3, ``class=2,0`` -> 2 (the pipeline's ``targets`` field); a
    detector's (``boxes>=0.5...``), as many as its rows say it had boxes (``boxes_explained``)."""
    if targets.startswith("top"):
        return int(targets[3:])
    if targets.startswith("boxes"):
        return int(rows[0].get("boxes_explained") or -1) if rows else -1
    return len(targets.partition("=")[2].split(","))


class Manifest:
    """The rows of one ``manifest.jsonl``: read, appended to during a run, compacted at its end."""

    def __init__(self, path: str | os.PathLike, location: str | None = None,
                 exists: Callable[[str], bool] = os.path.exists):
        """``location``: the folder (or URI) rows' paths are relative to, when not the file's own
        folder (a spool file); ``exists``: how a recorded output is checked for."""
        self.path = Path(path).absolute()
        self.folder = self.path.parent
        self.location = location or str(self.folder)
        self._exists = exists
        self.previous = current_rows(self._read_all(self.path, self.location)[0])
        self._stream = None

    @staticmethod
    def read_rows(path: str | os.PathLike) -> list[dict]:
        """The current rows of the manifest at ``path``, in memory form (absolute paths, [h, w])."""
        return current_rows(Manifest._read_all(Path(path).absolute())[0])

    @staticmethod
    def _read_all(path: Path, location: str | None = None) -> tuple[list[dict], bool]:
        """Every parseable row, in memory form, and whether any was stored in an older format."""
        rows, old = [], False
        try:
            with open(path, encoding="utf-8") as stream:
                for line in stream:
                    try:
                        stored = json.loads(line)
                    except ValueError:  # a line cut short by a killed run
                        continue
                    if isinstance(stored, dict) and isinstance(stored.get("input"), str):  # else not a row of ours
                        old = old or stored.get("format") != FORMAT
                        rows.append(Manifest.from_stored(stored, location or path.parent))
        except FileNotFoundError:
            pass
        return rows, old

    @staticmethod
    def from_stored(stored: dict, folder: Path | str) -> dict:
        """A row as stored in the manifest in ``folder`` (a path, or an object-store URI) -> memory form."""
        row = dict(stored)
        if stored.get("format") == FORMAT:
            for key in PATH_FIELDS:
                if row.get(key):
                    row[key] = _join(folder, row[key])
            if row.get("input") and not os.path.isabs(row["input"]) and not is_uri(row["input"]):
                row["input"] = os.path.normpath(os.path.join(folder, row["input"]))
            return row
        for key in PATH_FIELDS:  # format 1: relative to the directory the run started in
            if row.get(key):
                row[key] = _locate_old_output(row[key], folder)
        if row.get("input") and os.path.exists(row["input"]):
            row["input"] = os.path.realpath(row["input"])
        if isinstance(row.get("image_size"), list) and len(row["image_size"]) == 2:
            row["image_size"] = row["image_size"][::-1]  # was [width, height]
        row["format"] = FORMAT
        return row

    def to_stored(self, row: dict) -> dict:
        """Memory form -> the stored form (output paths relative to the manifest's folder)."""
        stored = {**row, "format": FORMAT}
        remote = is_uri(self.location)
        for key in PATH_FIELDS:
            if stored.get(key) and remote:
                prefix = self.location.rstrip("/") + "/"
                if stored[key].startswith(prefix):
                    stored[key] = stored[key][len(prefix):]
            elif stored.get(key):
                stored[key] = Path(os.path.relpath(os.path.abspath(stored[key]), self.folder)).as_posix()
        if stored.get("input") and not is_uri(stored["input"]):
            stored["input"] = os.path.abspath(stored["input"])
        return stored

    @staticmethod
    def group(row: dict) -> tuple:
        """(input, method, targets, counterfactual): a counterfactual run's rows sit beside the plain ones."""
        return (row.get("input"), row.get("method"), row.get("targets"), bool(row.get("counterfactual")))

    def finished_inputs(self, method: str, targets: str, config: str) -> dict[str, list[dict]]:
        """Inputs (real paths) whose current rows for (method, targets) are complete (one per target),
        all ok, with the same config and their files present, with those rows: a rerun skips them."""
        groups: dict[tuple, list[dict]] = {}
        for row in self.previous:
            groups.setdefault(self.group(row), []).append(row)
        done = {}
        for (input_path, row_method, row_targets, _), rows in groups.items():
            if row_method != method or row_targets != targets:
                continue
            if len(rows) == _target_count(targets, rows) and all(
                row.get("status") == "ok"
                and row.get("config") == config
                and all(self._exists(row[key]) for key in PATH_FIELDS if row.get(key))
                for row in rows
            ):
                done[input_path] = rows
        return done

    def append(self, rows: list[dict]) -> None:
        """Write ``rows`` (memory form) at the end of the file and flush."""
        if self._stream is None:
            self._stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run)
        for row in rows:
            self._stream.write(json.dumps(self.to_stored(row), ensure_ascii=False) + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Close the stream and rewrite the file with its current rows only (in the current format)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        rows, old = self._read_all(self.path, self.location)
        kept = current_rows(rows)
        if old or len(kept) != len(rows):
            data = "".join(json.dumps(self.to_stored(row), ensure_ascii=False) + "\n" for row in kept)
            outputs.atomic_write_bytes(self.path, data.encode("utf-8"))

    close_and_compact = close


class RemoteManifest(Manifest):
    """The manifest of an object-store output: object stores cannot append, so rows go to a local
    spool file that is put whole (one atomic put) at most every ``publish_seconds`` while the run
    goes on (less often as it grows: the puts stay under 5 % of the time), and at the end. A driver
    killed outright loses at most that much of the manifest; the next run redoes those inputs."""

    publish_seconds = 10.0

    def __init__(self, output: OutputFolder):
        handle, spool = tempfile.mkstemp(prefix="gradcam-manifest-", suffix=".jsonl")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(output.read_text(MANIFEST))
        super().__init__(spool, location=output.location, exists=output.exists)
        self.output = output
        self._published, self._put_seconds = time.monotonic(), 0.0

    def publish(self) -> None:
        started = time.monotonic()
        self.output.write(MANIFEST, self.path.read_bytes())
        self._published = time.monotonic()
        self._put_seconds = self._published - started

    def append(self, rows: list[dict]) -> None:
        super().append(rows)
        if time.monotonic() - self._published >= max(self.publish_seconds, 20 * self._put_seconds):
            self.publish()

    def close(self) -> None:
        super().close()
        try:
            self.publish()
        finally:
            self.path.unlink(missing_ok=True)

    close_and_compact = close
