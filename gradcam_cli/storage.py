"""Local paths and object-store URIs (``s3://``, ``gs://``, ... anything ``pyarrow.fs`` resolves).

Local paths (and ``file://`` URIs, turned into paths) keep the plain filesystem code: atomic writes
by temporary file and rename. Other URIs go through ``pyarrow.fs``; there a written object appears
whole when its upload completes (a put, or a completed multipart upload), which is the object
store's form of an atomic write. Credentials and endpoints come from the usual environment
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...), or from the
URI's query (``s3://bucket/out?endpoint_override=host:9000&scheme=http``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from . import render
from .errors import GradcamError, ImageError, OutputError
from .images import IMAGE_EXTENSIONS, InputItem

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class StorageError(GradcamError):
    """An object-store URI that cannot be resolved or listed (unknown scheme, missing extra, ...)."""


def is_uri(text: str | os.PathLike) -> bool:
    """True for ``scheme://...`` strings other than ``file://`` (which is a local path)."""
    text = str(text)
    return bool(_SCHEME.match(text)) and not text.lower().startswith("file://")


def local_path(text: str | os.PathLike) -> str:
    """``file:///x/y`` -> ``/x/y``; anything else unchanged."""
    text = str(text)
    if text.lower().startswith("file://"):
        return unquote(urlsplit(text).path) or "/"
    return text


def _resolve(uri: str):
    """(pyarrow filesystem, path inside it, 'scheme://authority' prefix) for ``uri``."""
    try:
        from pyarrow import fs
    except ImportError:
        raise StorageError(f"{uri}: object-store URIs need pyarrow: pip install \"gradcam-cli[ray]\"") from None
    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
    except Exception as error:  # pyarrow raises ArrowInvalid, ArrowNotImplementedError, OSError
        raise StorageError(f"{uri}: not a location pyarrow can open ({_first_line(error)}).") from None
    scheme = urlsplit(uri).scheme
    return filesystem, path.rstrip("/"), scheme


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _join_uri(scheme: str, path: str) -> str:
    return f"{scheme}://{path.lstrip('/')}"


def collect_uri_inputs(uri: str, recursive: bool = False) -> list[InputItem]:
    """Image objects under an object-store prefix (``recursive``: in sub-prefixes too), or the one
    object named; a missing location comes back as an item with ``error`` set."""
    from pyarrow import fs

    filesystem, path, scheme = _resolve(uri)
    try:
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.File:
            return [_item(_join_uri(scheme, path), PurePosixPath(path).name)]
        if info.type == fs.FileType.NotFound:
            return [_item(uri, PurePosixPath(path).name or uri, "no such file or folder")]
        listed = filesystem.get_file_info(fs.FileSelector(path, recursive=recursive))
    except OSError as error:
        return [_item(uri, PurePosixPath(path).name or uri, f"cannot list ({_first_line(error)})")]
    files = sorted(entry.path for entry in listed if entry.type == fs.FileType.File
                   and PurePosixPath(entry.path).suffix.lower() in IMAGE_EXTENSIONS)
    return [_item(_join_uri(scheme, file), PurePosixPath(file).relative_to(path).as_posix()) for file in files]


def _item(uri: str, relative: str, error: str | None = None) -> InputItem:
    """An object-store input: its URI is its identity (there is no real path to resolve)."""
    return InputItem(uri, relative, error, real=uri)


def read_bytes(uri: str) -> bytes:
    """The whole object at ``uri``; a missing or unreadable object is an :class:`ImageError`."""
    filesystem, path, _ = _resolve(uri)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise ImageError(f"{uri}: no such file.") from None
    except OSError as error:
        raise ImageError(f"{uri}: cannot read ({_first_line(error)}).") from None


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
            self._filesystem, self._root, self._scheme = _resolve(self.location)
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
            render.atomic_write_bytes(Path(recorded), data)
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
                render.atomic_write_bytes(self.local / probe, b"")
                os.unlink(self.local / probe)
                render.remove_stale_temporaries(self.local)
            else:
                filesystem = self._arrow()
                filesystem.create_dir(self._root, recursive=True)
                self.write(probe, b"")
                filesystem.delete_file(self._arrow_path(self.path_of(probe)))
        except OSError as error:
            reason = getattr(error, "strerror", None) or _first_line(error)
            raise OutputError(
                f"{self.location}: cannot write the output folder ({reason}); pick another with -o/--output-dir."
            ) from None
