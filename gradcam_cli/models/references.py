"""How a model built by code is named: ``FILE.py:FACTORY`` or ``package.module:FACTORY`` (string rules only,
no import, so that the spec's identity and the Ray runner read them without the factory loader)."""

from __future__ import annotations

import os
import re

IDENTIFIER = r"[A-Za-z_]\w*"
ATTRIBUTE = rf"{IDENTIFIER}(?:\.{IDENTIFIER})*"
MODULE_REFERENCE = re.compile(rf"^(?P<module>{ATTRIBUTE}):(?P<attribute>{ATTRIBUTE})$")
FILE_REFERENCE = re.compile(rf"^(?P<file>.+\.py):(?P<attribute>{ATTRIBUTE})$")
RESERVED_PREFIXES = ("hub",)  # ``hub:PRESET`` names a keras-hub preset, never a module called hub


def split_reference(text: str) -> tuple[str, str, bool] | None:
    """``(file or module, attribute, is_file)`` for a factory reference, None for anything else."""
    match = FILE_REFERENCE.match(text)
    if match:
        return match.group("file"), match.group("attribute"), True
    match = MODULE_REFERENCE.match(text)
    if match and match.group("module").lower() not in RESERVED_PREFIXES:
        return match.group("module"), match.group("attribute"), False
    return None


def is_factory_reference(text: str) -> bool:
    return split_reference(text) is not None and not os.path.exists(text)


def absolute_reference(text: str) -> str:
    """The reference with its file made absolute (for Ray actors, whose working folder may differ)."""
    parts = split_reference(text)
    if parts is None or not parts[2] or not os.path.exists(parts[0]):
        return text
    return f"{os.path.realpath(parts[0])}:{parts[1]}"
