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


def get_method(name: str | CamMethod, **options) -> CamMethod:
    """A method instance by name or alias; ``options`` go to :class:`CamMethod`'s constructor."""
    if isinstance(name, CamMethod):
        return name
    canonical = canonical_name(name)
    cls = METHODS.get(canonical) or BASELINES[canonical]
    if options.get("eigen_smooth") and not cls.supports_eigen_smooth:
        raise MethodError(f"{param('smooth', 'eigen')} does not apply to {cls.name}, which has no channel weights.")
    if options.get("max_channels") is not None and not cls.uses_max_channels:
        users = ", ".join(c.name for c in METHODS.values() if c.uses_max_channels)
        raise OptionConflict(f"{param('max_channels')} does not apply to {cls.name}; it bounds {users} only.")
    if options.get("chunk_size") is not None and not cls.uses_chunks:
        users = ", ".join(c.name for c in METHODS.values() if c.uses_chunks)
        raise OptionConflict(f"{param('chunk_size')} does not apply to {cls.name}; it bounds {users} only.")
    return cls(**options)


__all__ = ["BASELINES", "METHODS", "CamContext", "CamMethod", "canonical_name", "get_method", "method_names"]
