"""Several target layers on the demo model: strict pointing and two-class discrimination of the
automatic layer against the mean and the product of several layers' maps, on the held-out scenes.

    python benchmarks/multilayer.py [--per-kind 200] [--seed 777] [--sources heldout,heldout2,heldout3,heldout4]
                                    [--json benchmarks/multilayer.json]

The scenes and the scoring are those of ``benchmarks/localization.py`` (``lab.localization``): per
held-out generator, ``--per-kind`` single-object scenes (pointing game, with the 15 px @ 224
tolerance and strict), as many two-object scenes each explained for both classes in turn (two-class
discrimination: the map's maximum on the explained object) and scenes with 2-3 objects of one class
(coverage). Each configuration below is one method on one or several layers of the demo model
(its layers: block1 at 48x48, block2 and block3 at 24x24 for a 96x96 input); several layers are
combined by ``combine`` (docs/methods.md, "Several layers"). Prints one table per source and the mean
over the sources, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the lab (not installed) imports from the repo root

import numpy as np  # noqa: E402

from gradcam_cli.decode import model_input  # noqa: E402
from gradcam_cli.explainer import Explainer  # noqa: E402
from gradcam_cli.models import resolve_model  # noqa: E402
from lab.localization import HELDOUT_SOURCES, score_method, source_scenes  # noqa: E402

LAST_TWO = ["block3_relu1", "block3_relu2"]
LAST_THREE = ["block2_relu3", "block3_relu1", "block3_relu2"]
FINE_AND_LAST = ["block1_relu2", "block3_relu2"]  # a 48x48 early layer with the automatic 24x24 one
CONFIGURATIONS = [
    # (name, method, layers (None: automatic), combine)
    ("gradcam, auto layer", "gradcam", None, None),
    ("gradcam, mean of last 2", "gradcam", LAST_TWO, "mean"),
    ("gradcam, product of last 2", "gradcam", LAST_TWO, "product"),
    ("gradcam, mean of last 3", "gradcam", LAST_THREE, "mean"),
    ("gradcam, product of last 3", "gradcam", LAST_THREE, "product"),
    ("gradcam, block1_relu2 alone", "gradcam", ["block1_relu2"], None),
    ("gradcam, mean of block1 + auto", "gradcam", FINE_AND_LAST, "mean"),
    ("gradcam, product of block1 + auto", "gradcam", FINE_AND_LAST, "product"),
    ("gradcam++, auto layer", "gradcam++", None, None),
    ("gradcam++, product of last 3", "gradcam++", LAST_THREE, "product"),
    ("gradcam++, product of block1 + auto", "gradcam++", FINE_AND_LAST, "product"),
]
COLUMNS = ("pointing_game", "pointing_game_strict", "two_class", "multi_instance_coverage")


def measure(spec, scenes: dict, method: str, layers: list[str] | None, combine: str | None) -> dict:
    explainer = Explainer(spec, method=method, layer=layers, combine=combine, batch_size=32)
    timing = {"images": 0, "seconds": 0.0}

    def explain_fn(images, classes):
        batch = np.stack([model_input(image, spec.input_size) for image in images])
        started = time.perf_counter()
        heatmaps = explainer.run(batch, classes).heatmaps
        timing["seconds"] += time.perf_counter() - started
        timing["images"] += len(images)
        return heatmaps

    explain_fn([scenes["single"][0].image] * 2, None)  # compile outside the timing
    timing.update(images=0, seconds=0.0)
    summary = score_method(explain_fn, scenes).summary()
    summary["ms_per_image"] = 1000 * timing["seconds"] / max(timing["images"], 1)
    summary["layer"] = explainer.layer_name
    return summary


def print_table(title: str, rows: dict[str, dict]) -> None:
    print(title)
    print(f"  {'configuration':<38}{'pointing':>10}{'strict':>8}{'two-class':>11}{'multi-inst.':>13}{'ms / image':>12}")
    for name, summary in rows.items():
        print(f"  {name:<38}{summary['pointing_game']:>10.1%}{summary['pointing_game_strict']:>8.1%}"
              f"{summary['two_class']:>11.1%}{summary['multi_instance_coverage']:>13.1%}"
              + (f"{summary['ms_per_image']:>12.2f}" if "ms_per_image" in summary else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=200)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--sources", default=",".join(HELDOUT_SOURCES))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    spec = resolve_model("demo")
    report: dict = {"seed": args.seed, "per_kind": args.per_kind, "input_size": list(spec.input_size),
                    "sources": {}, "configurations": {name: {"method": method, "layers": layers, "combine": combine}
                                                      for name, method, layers, combine in CONFIGURATIONS}}
    for source in args.sources.split(","):
        scenes = source_scenes(source, args.seed, args.per_kind)
        rows = {name: measure(spec, scenes, method, layers, combine) for name, method, layers, combine in CONFIGURATIONS}
        report["sources"][source] = rows
        print_table(f"\n== {source}: {args.per_kind} scenes per kind, seed {args.seed}", rows)
    sources = list(report["sources"].values())
    report["mean_over_sources"] = {name: {column: float(np.mean([rows[name][column] for rows in sources]))
                                          for column in COLUMNS} for name, *_ in CONFIGURATIONS}
    print_table(f"\n== mean over {', '.join(report['sources'])}", report["mean_over_sources"])
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(report, stream, indent=2)


if __name__ == "__main__":
    main()
