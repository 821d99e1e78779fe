"""Object-store access: URIs, their pyarrow filesystems, reading an object whole.

Local paths (and ``file://`` URIs, turned into paths) keep the plain filesystem code: atomic writes
by temporary file and rename. Other URIs go through ``pyarrow.fs``; there a written object appears
whole when its upload completes (a put, or a completed multipart upload), which is the object
store's form of an atomic write. Credentials and endpoints come from the usual environment
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...), or from the
URI's query (``s3://bucket/out?endpoint_override=host:9000&scheme=http``)."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

from .errors import GradcamError, ImageError

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


def resolve_uri(uri: str):
    """(pyarrow filesystem, path inside it, 'scheme://authority' prefix) for ``uri``."""
    try:
        from pyarrow import fs
    except ImportError:
        raise StorageError(f"{uri}: object-store URIs need pyarrow: pip install \"gradcam-cli[ray]\"") from None
    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
    except Exception as error:  # pyarrow raises ArrowInvalid, ArrowNotImplementedError, OSError
        raise StorageError(f"{uri}: not a location pyarrow can open ({first_line(error)}).") from None
    scheme = urlsplit(uri).scheme
    return filesystem, path.rstrip("/"), scheme


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def join_uri(scheme: str, path: str) -> str:
    return f"{scheme}://{path.lstrip('/')}"


def read_bytes(uri: str) -> bytes:
    """The whole object at ``uri``; a missing or unreadable object is an :class:`ImageError`."""
    filesystem, path, _ = resolve_uri(uri)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise ImageError(f"{uri}: no such file.") from None
    except OSError as error:
        raise ImageError(f"{uri}: cannot read ({first_line(error)}).") from None
