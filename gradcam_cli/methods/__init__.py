"""Method registry: ``--method`` names and aliases to :class:`~.base.CamMethod` classes."""

from __future__ import annotations

from ..errors import MethodError
from .base import CamContext, CamMethod
from .gradcam import CAM, GradCAM, GradCAMPlusPlus

METHODS: dict[str, type[CamMethod]] = {cls.name: cls for cls in (CAM, GradCAM, GradCAMPlusPlus)}


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str | CamMethod) -> CamMethod:
    """A method instance by name or alias (case-, dash- and underscore-insensitive)."""
    if isinstance(name, CamMethod):
        return name
    for cls in METHODS.values():
        if _key(name) in {_key(cls.name), *(_key(alias) for alias in cls.aliases)}:
            return cls()
    raise MethodError(f"unknown method '{name}': choose one of {', '.join(METHODS)}.")


__all__ = ["METHODS", "CamContext", "CamMethod", "get_method", "method_names"]
