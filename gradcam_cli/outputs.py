"""Where a run writes: output names that never collide or escape the folder, atomic writes, and
the output folder itself, local or on an object store (:mod:`gradcam_cli.storage`)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from .errors import OutputError, param
from .storage import first_line, is_uri, local_path, resolve_uri

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def _safe_component(part: str) -> str:
    part = _UNSAFE.sub("_", part)
    if part in ("", ".", ".."):
        return "_"
    return part


def output_stem(relative: str) -> str:
    """``a/cat.jpg`` -> ``a/cat_jpg``: the extension stays in the name so that ``cat.jpg`` and
    ``cat.png`` never share outputs; every component is made safe (no ``..``, no separators)."""
    path = PurePosixPath(relative.replace("\\", "/"))
    name = path.stem + (f"_{path.suffix[1:]}" if path.suffix else "")
    parts = [_safe_component(p) for p in path.parent.parts if p not in ("/",)]
    return "/".join([*parts, _safe_component(name)])


def unique_stems(relatives: Iterable[str]) -> list[str]:
    """Output stems for inputs in order, with ``~2``, ``~3`` ... added on a clash (compared
    case-insensitively, for case-insensitive file systems)."""
    used: set[str] = set()
    stems = []
    for relative in relatives:
        stem = output_stem(relative)
        candidate, number = stem, 2
        while candidate.lower() in used:
            candidate, number = f"{stem}~{number}", number + 1
        used.add(candidate.lower())
        stems.append(candidate)
    return stems


def output_paths(output_dir: Path, stem: str, method: str, class_index: int) -> tuple[Path, Path]:
    """(overlay JPEG, heatmap .npy) for one image and target, always inside ``output_dir``."""
    base = output_dir / f"{stem}.{method}.c{class_index}"
    overlay_path, heatmap_path = base.with_name(base.name + ".jpg"), base.with_name(base.name + ".npy")
    root = os.path.abspath(output_dir)
    if os.path.commonpath([root, os.path.abspath(overlay_path)]) != root:
        raise OutputError(f"{stem}: output would land outside {output_dir}")
    return overlay_path, heatmap_path


_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporaries that a killed run left in ``folder`` (names made by atomic_write_bytes)."""
    removed = 0
    for path in folder.rglob(".*.tmp"):
        if _TEMPORARY.match(path.name) and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed


def _file_mode() -> int:
    """The mode a plain ``open()`` would give: 0o666 less the umask (mkstemp would give 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


FILE_MODE = _file_mode()


def write_file(path: str | os.PathLike, data: bytes, parameter: str | None = None) -> None:
    """:func:`atomic_write_bytes`, a failure (permissions, a full disk, a read-only place) raised as
    one :class:`OutputError` line naming the file and, where given, the parameter that chose it."""
    try:
        atomic_write_bytes(Path(path), data)
    except OSError as error:
        fix = f"; pick another with {param(parameter)}" if parameter else ""
        raise OutputError(f"{path}: cannot write ({error.strerror or first_line(error)}){fix}.") from None


def check_file_writable(path: str | os.PathLike, parameter: str | None = None) -> None:
    """Fail now, before any work, where :func:`write_file` would fail at the end (its folder cannot be
    made or written; the file is a folder)."""
    path = Path(path)
    if path.is_dir():
        fix = f"; pick a file name with {param(parameter)}" if parameter else ""
        raise OutputError(f"{path}: is a folder{fix}.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"):
            pass
    except OSError as error:
        fix = f"; pick another with {param(parameter)}" if parameter else ""
        raise OutputError(f"{path}: cannot write ({error.strerror or first_line(error)}){fix}.") from None


class OutputFolder:
    """Where a run writes: a local folder or an object-store prefix.

    Rows record ``path_of(relative)`` (in memory; the manifest stores it relative to itself): the
    absolute local path, or the object's full URI.
    """

    def __init__(self, location: str | os.PathLike):
        text = str(location)
        self.remote = is_uri(text)
        self.location = text.rstrip("/") if self.remote else str(Path(local_path(text)))
        self.local: Path | None = None if self.remote else Path(local_path(text))
        self._filesystem = None

    def __str__(self) -> str:
        return self.location

    def __getstate__(self) -> dict:  # pyarrow filesystems are rebuilt where the folder is used
        return {**self.__dict__, "_filesystem": None}

    def _arrow(self):
        if self._filesystem is None:
            self._filesystem, self._root, self._scheme = resolve_uri(self.location)
        return self._filesystem

    def path_of(self, relative: str) -> str:
        if self.local is not None:
            return os.path.abspath(self.local / relative)
        return f"{self.location}/{relative}"

    def _arrow_path(self, recorded: str) -> str:
        self._arrow()
        return f"{self._root}/{recorded[len(self.location) + 1:]}"

    def write(self, relative: str, data: bytes) -> str:
        """Write ``data`` as one whole file or object; returns the path the rows record."""
        recorded = self.path_of(relative)
        if self.local is not None:
            atomic_write_bytes(Path(recorded), data)
        else:
            with self._arrow().open_output_stream(self._arrow_path(recorded)) as stream:
                stream.write(data)
        return recorded

    def exists(self, recorded: str) -> bool:
        """Whether a file a row recorded is there (rows from elsewhere count as missing)."""
        if self.local is not None:
            return os.path.exists(recorded)
        if not recorded.startswith(self.location + "/"):
            return False
        from pyarrow import fs

        return self._arrow().get_file_info(self._arrow_path(recorded)).type == fs.FileType.File

    def read_text(self, relative: str) -> str:
        """A small text file's content, '' when there is none."""
        try:
            if self.local is not None:
                return (self.local / relative).read_text(encoding="utf-8")
            with self._arrow().open_input_stream(self._arrow_path(self.path_of(relative))) as stream:
                return stream.read().decode("utf-8")
        except FileNotFoundError:
            return ""

    def check_writable(self) -> None:
        """Create the folder (or check the bucket) and write then delete a probe file."""
        probe = ".gradcam-write-test"
        try:
            if self.local is not None:
                self.local.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(self.local / probe, b"")
                os.unlink(self.local / probe)
                remove_stale_temporaries(self.local)
            else:
                filesystem = self._arrow()
                filesystem.create_dir(self._root, recursive=True)
                self.write(probe, b"")
                filesystem.delete_file(self._arrow_path(self.path_of(probe)))
        except OSError as error:
            reason = getattr(error, "strerror", None) or first_line(error)
            raise OutputError(
                f"{self.location}: cannot write the output folder ({reason}); pick another with {param('output_dir')}."
            ) from None
