"""Listing inputs: files, folders, glob patterns and object-store URIs, and the identity of an input.

An input is known by its resolved real path (an object-store input by its URI), so ``inn/a.png``,
``$PWD/inn/a.png`` and a symlink to it are one input for every command: resume, the manifest,
deduplication and evaluate's rows all key on :attr:`InputItem.real`."""

from __future__ import annotations

import fnmatch
import glob
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .storage import first_line, join_uri, resolve_uri

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)


@dataclass(frozen=True)
class InputItem:
    """One input.

    ``path``: the file as found (what is opened, and what messages name); ``relative``: the name its
    outputs derive from ('/'-separated, relative to the folder or pattern base it was found under);
    ``real``: its resolved absolute path, the input's identity (resume, manifest, deduplication), so
    ``inn/a.png``, ``$PWD/inn/a.png`` and a symlink to it are one input.
    """

    path: str
    relative: str
    error: str | None = None  # set when the argument itself is bad (missing, unreadable folder)
    real: str = ""

    def __post_init__(self) -> None:
        if not self.real:
            object.__setattr__(self, "real", os.path.realpath(self.path))


@dataclass
class _Found:
    """What one folder search found: files (path, relative, reached through a symlinked folder, real
    path), folders a pattern matched, and folders that could not be listed."""

    files: list[tuple[Path, str, bool, str]] = field(default_factory=list)
    folders: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[InputItem] = field(default_factory=list)


class _Skip:
    """The listing's exclusions: ``--exclude`` patterns and the output folder, which is never an input:
    no walk or pattern enters it. (An output folder that holds the inputs' folders, such as ``-o .``,
    is not searched as such, so those inputs stay.)

    A pattern (fnmatch rules: ``*`` also crosses ``/``) excludes a file or folder when it matches its
    name, its path relative to the argument it was found under, or its absolute path.
    """

    def __init__(self, patterns: tuple[str, ...] = (), output_dir: str | os.PathLike | None = None):
        self.patterns = tuple(patterns)
        self.output_real = os.path.realpath(output_dir) if output_dir is not None else None

    def matches(self, path: Path, relative: str) -> bool:
        if not self.patterns:
            return False
        names = (path.name, relative, os.path.abspath(path))
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.patterns for name in names)

    def is_output(self, real: str) -> bool:
        """True when the resolved path ``real`` is the output folder."""
        return self.output_real is not None and real == self.output_real


def _name_matches(name: str, part: str, hidden: bool) -> bool:
    if not hidden and name.startswith(".") and not part.startswith("."):
        return False  # glob convention: '*' does not match a leading dot
    return fnmatch.fnmatchcase(name, part) if glob.has_magic(part) else name == part


def _search(base: Path, parts: list[str], wanted: Callable[[str], bool], skip: _Skip, hidden: bool) -> _Found:
    """Match the path components ``parts`` (``**`` = any number of folders) below ``base``.

    Each real folder (device, inode) is listed at most once per pattern position, whatever symlinks
    point back up, so loops end and the work is bounded by folders x components. Folders reached
    without crossing a symlinked folder are searched first, so a file reachable both ways is found
    under its real path first.
    """
    if parts and parts[-1] == "**":
        parts = [*parts, "*"]
    found = _Found()
    visited: set[tuple[int, int, int]] = set()
    direct: deque[tuple[Path, str, int]] = deque([(base, "", 0)])
    linked: deque[tuple[Path, str, int]] = deque()
    while direct or linked:
        through_link = not direct
        folder, relative, index = direct.popleft() if direct else linked.popleft()
        try:
            status = os.stat(folder)
        except OSError:
            continue
        folder_real = os.path.realpath(folder)
        if (status.st_dev, status.st_ino, index) in visited or skip.is_output(folder_real):
            continue
        visited.add((status.st_dev, status.st_ino, index))
        part = parts[index]
        if part == "**":  # zero folders: the rest of the pattern applies here too
            (linked if through_link else direct).append((folder, relative, index + 1))
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            shown = relative or folder.name
            found.problems.append(InputItem(str(folder), shown, f"cannot list folder: {error.strerror}"))
            continue
        last = index == len(parts) - 1
        for entry in entries:
            child, child_relative = folder / entry.name, f"{relative}/{entry.name}" if relative else entry.name
            if part == "**":
                if not hidden and entry.name.startswith("."):
                    continue
                matched, next_index = _is_dir(entry), index
            else:
                if not _name_matches(entry.name, part, hidden):
                    continue
                if last:
                    if skip.matches(child, child_relative):
                        continue
                    if _is_file(entry) and wanted(entry.name):
                        symlink = entry.is_symlink()
                        real = os.path.realpath(child) if symlink else os.path.join(folder_real, entry.name)
                        found.files.append((child, child_relative, through_link or symlink, real))
                    elif _is_dir(entry):
                        found.folders.append((child, child_relative))
                    continue
                matched, next_index = _is_dir(entry), index + 1
            if matched and not skip.matches(child, child_relative):
                queue = linked if (through_link or entry.is_symlink()) else direct
                queue.append((child, child_relative, next_index))
    return found


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _split_pattern(argument: str) -> tuple[Path, list[str]]:
    """``tree/**/*.png`` -> (``tree``, ``['**', '*.png']``): the literal base and the rest."""
    parts = Path(argument).parts
    literal = 0
    while literal < len(parts) - 1 and not glob.has_magic(parts[literal]):
        literal += 1
    base = Path(*parts[:literal]) if literal else Path(".")
    return base, list(parts[literal:])


def collect_inputs(
    arguments: list[str],
    recursive: bool = False,
    exclude: tuple[str, ...] | list[str] = (),
    output_dir: str | os.PathLike | None = None,
) -> list[InputItem]:
    """Files, folders (``recursive`` descends) and glob patterns, in a stable order, each input once.

    Folders contribute files with an image extension; files named explicitly or matched by a pattern
    are always tried. ``**`` in a pattern matches any number of folders (with or without
    ``recursive``); a folder a pattern matches is listed like a folder argument. An input is its
    resolved real path: reached twice (two spellings, a symlink), it is kept once, under the spelling
    that crosses no symlinked folder. ``exclude`` patterns are left out, and no walk or pattern enters
    ``output_dir`` (the tool's own outputs). Missing paths, patterns matching nothing, unlistable
    folders and ``output_dir`` given as a folder come back as items with ``error`` set.
    """
    skip = _Skip(tuple(exclude), output_dir)
    items: list[InputItem] = []
    position: dict[str, int] = {}  # real path -> index in items
    through_link: dict[str, bool] = {}

    def add(path: Path, relative: str, linked: bool = False, real: str | None = None) -> None:
        real = real or os.path.realpath(path)
        if real not in position:
            position[real] = len(items)
            through_link[real] = linked
            items.append(InputItem(str(path), relative, None, real))
        elif through_link[real] and not linked:  # prefer the spelling without a symlinked folder
            items[position[real]] = InputItem(str(path), relative, None, real)
            through_link[real] = False

    def add_folder(folder: Path) -> None:
        if skip.is_output(os.path.realpath(folder)):
            items.append(InputItem(str(folder), folder.name, "is the output folder (-o), whose files are never "
                                   "inputs; pick another -o"))
            return
        found = _search(folder, ["**", "*"] if recursive else ["*"], _is_image_name, skip, hidden=True)
        for file, relative, linked, real in sorted(found.files, key=lambda f: f[1].split("/")):
            add(file, relative, linked, real)
        items.extend(found.problems)

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            add_folder(path)
        elif path.exists() or path.is_symlink():
            if not skip.matches(path, path.name):
                add(path, path.name)
        elif glob.has_magic(argument):
            base, parts = _split_pattern(argument)
            # 'photos/**' walks like a folder (image files); a pattern naming files takes what it names
            wanted = _is_image_name if parts[-1] == "**" else (lambda name: True)
            found = _search(base, parts, wanted, skip, hidden=False)
            if not found.files and not found.folders:
                items.append(InputItem(str(path), path.name, "no file matches this pattern"))
            for file, relative, linked, real in sorted(found.files, key=lambda f: f[1].split("/")):
                add(file, relative, linked, real)
            if parts[-1] != "**":  # a trailing ** has already descended into every folder it matched
                for folder, _ in sorted(found.folders, key=lambda f: f[1].split("/")):
                    add_folder(folder)
            items.extend(found.problems)
        else:
            items.append(InputItem(str(path), path.name, "no such file or folder"))
    return items


def collect_uri_inputs(uri: str, recursive: bool = False) -> list[InputItem]:
    """Image objects under an object-store prefix (``recursive``: in sub-prefixes too), or the one
    object named; a missing location comes back as an item with ``error`` set."""
    from pyarrow import fs

    filesystem, path, scheme = resolve_uri(uri)
    try:
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.File:
            return [_item(join_uri(scheme, path), PurePosixPath(path).name)]
        if info.type == fs.FileType.NotFound:
            return [_item(uri, PurePosixPath(path).name or uri, "no such file or folder")]
        listed = filesystem.get_file_info(fs.FileSelector(path, recursive=recursive))
    except OSError as error:
        return [_item(uri, PurePosixPath(path).name or uri, f"cannot list ({first_line(error)})")]
    files = sorted(entry.path for entry in listed if entry.type == fs.FileType.File
                   and PurePosixPath(entry.path).suffix.lower() in IMAGE_EXTENSIONS)
    return [_item(join_uri(scheme, file), PurePosixPath(file).relative_to(path).as_posix()) for file in files]


def _item(uri: str, relative: str, error: str | None = None) -> InputItem:
    """An object-store input: its URI is its identity (there is no real path to resolve)."""
    return InputItem(uri, relative, error, real=uri)
