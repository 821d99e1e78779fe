"""Method registry: ``--method`` names and aliases to :class:`~.base.CamMethod` classes."""

from __future__ import annotations

from ..errors import MethodError, OptionConflict, param
from .base import CamContext, CamMethod
from .baselines import CenterMap, RandomMap
from .eigen import KPCACAM, EigenGradCAM, SegEigenCAM
from .fem import FEM
from .fullgrad import FullGrad
from .gradcam import CAM, GradCAM, GradCAMPlusPlus
from .guided import GuidedGradCAM
from .perturbation import AblationCAM, EigenCAM, ScoreCAM
from .pixelwise import HiResCAM, LayerCAM, XGradCAM
from .variants import FinerCAM, GradCAMElementWise, ShapleyCAM

METHODS: dict[str, type[CamMethod]] = {
    cls.name: cls
    for cls in (CAM, GradCAM, GradCAMPlusPlus, XGradCAM, HiResCAM, LayerCAM, ScoreCAM, AblationCAM, EigenCAM,
                GuidedGradCAM, GradCAMElementWise, ShapleyCAM, FinerCAM, EigenGradCAM, SegEigenCAM, KPCACAM, FEM,
                FullGrad)
}
# not explanations: the floor every evaluation score is read against (gradcam evaluate)
BASELINES: dict[str, type[CamMethod]] = {cls.name: cls for cls in (RandomMap, CenterMap)}


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def method_names() -> list[str]:
    return list(METHODS)


def canonical_name(name: str) -> str:
    """The method's own name for a name or alias (case-, dash- and underscore-insensitive)."""
    for cls in (*METHODS.values(), *BASELINES.values()):
        if _key(name) in {_key(cls.name), *(_key(alias) for alias in cls.aliases)}:
            return cls.name
    raise MethodError(f"unknown method '{name}': choose one of {', '.join(METHODS)} "
                      f"(or the baselines {', '.join(BASELINES)}).")


def tuning_for(method: str | CamMethod, tuning: dict | None) -> dict | None:
    """The part of ``tuning`` that tunes ``method`` (a run of several methods hands each its own)."""
    if not tuning or isinstance(method, CamMethod):
        return None
    tunables = (METHODS.get(canonical_name(method)) or BASELINES[canonical_name(method)]).tunables
    return {key: value for key, value in tuning.items() if key in tunables} or None


def check_tuning(methods: list[str], tuning: dict | None) -> None:
    """Refuse, in one line, a tuning option that tunes none of ``methods`` (a run of several)."""
    for key, value in (tuning or {}).items():
        if value is not None and not any(tuning_for(method, {key: value}) for method in methods):
            users = ", ".join(c.name for c in METHODS.values() if key in c.tunables)
            raise OptionConflict(f"{param(key)} tunes {users}, which is not among the methods: add it or leave "
                                 f"{param(key)} out.")


def get_method(name: str | CamMethod, tuning: dict | None = None, **options) -> CamMethod:
    """A method instance by name or alias; ``options`` go to :class:`CamMethod`'s constructor, and
    ``tuning`` (run options that tune one method, ``{"fem_sigmas": 3.0}``; None values ignored) to the
    keywords its :attr:`~CamMethod.tunables` name; one that tunes another method is refused."""
    tuning = {key: value for key, value in (tuning or {}).items() if value is not None}
    if isinstance(name, CamMethod):
        if tuning:
            raise OptionConflict(f"{param(next(iter(tuning)))} tunes a method given by name; set it on the "
                                 f"{type(name).__name__} instance instead.")
        return name
    canonical = canonical_name(name)
    cls = METHODS.get(canonical) or BASELINES[canonical]
    for key in tuning:
        if key not in cls.tunables:
            users = ", ".join(c.name for c in METHODS.values() if key in c.tunables)
            raise OptionConflict(f"{param(key)} does not apply to {cls.name}; it tunes {users} only.")
    options.update({cls.tunables[key]: value for key, value in tuning.items()})
    if tuning:
        try:
            return cls(**options)
        except (TypeError, ValueError):
            given = ", ".join(f"{param(key, value)}" for key, value in tuning.items())
            raise OptionConflict(f"{given}: not a value {cls.name} takes ('gradcam explain --help' says which)."
                                 ) from None
    if options.get("eigen_smooth") and not cls.supports_eigen_smooth:
        raise MethodError(f"{param('smooth', 'eigen')} does not apply to {cls.name}, which has no channel weights.")
    if options.get("max_channels") is not None and not cls.uses_max_channels:
        users = ", ".join(c.name for c in METHODS.values() if c.uses_max_channels)
        raise OptionConflict(f"{param('max_channels')} does not apply to {cls.name}; it bounds {users} only.")
    if options.get("chunk_size") is not None and not cls.uses_chunks:
        users = ", ".join(c.name for c in METHODS.values() if c.uses_chunks)
        raise OptionConflict(f"{param('chunk_size')} does not apply to {cls.name}; it bounds {users} only.")
    return cls(**options)


__all__ = ["BASELINES", "METHODS", "CamContext", "CamMethod", "canonical_name", "check_tuning", "get_method",
           "method_names", "tuning_for"]
