"""What a run did, as both runners and the command line report it: images done and skipped, failures,
whether it was interrupted, and the one-line notes on maps that show nothing (all empty, rounding noise)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import param, phrase


@dataclass
class RunSummary:
    images_done: int = 0
    images_skipped: int = 0
    rows: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    layer: str = ""
    method: str = ""
    noise_maps: int = 0  # rows whose map is rounding noise (``rounding_noise``)
    maps: int = 0  # rows with a map written, and of them those all zero or constant (``empty_heatmap``)
    empty_maps: int = 0

    def noise_note(self) -> str | None:
        """One line when every map came out empty, or some were rounding noise
        (:data:`~gradcam_cli.methods.base.ROUNDING_BALANCE`), naming the method, the layer and what
        would work instead."""
        if self.maps and self.empty_maps == self.maps:
            return phrase(f"all {self.maps} map(s) of {self.method} at layer {self.layer} are empty (zero or flat "
                          "everywhere): that layer does not reach the explained score, or its weighted sum is "
                          f"negative at every position; try another {param('layer')} ('gradcam layers' lists them) "
                          f"or {param('method')}.")
        if not self.noise_maps:
            return None
        return phrase(f"{self.noise_maps} map(s) of {self.method} at layer {self.layer} are rounding noise: the "
                      "gradient x activation terms cancel to within float32 rounding there (the score does not "
                      "change when a position's activations are scaled, or sits at its maximum: a query that is "
                      f"its own reference), so they show nothing; use "
                      f"{param('method', 'gradcam')} or another {param('layer')} ('gradcam layers' lists "
                      "them; for a transformer, its block's first norm). Rows say rounding_noise: true.")

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failures else 0
