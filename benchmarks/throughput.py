"""Throughput of gradcam-cli against the forward-pass floor and the peers, in one run.

    pip install -e ".[bench]"
    python benchmarks/throughput.py [--images 64] [--models mobilenet_v2,resnet50,xception] [--json F]

For each model (random weights: timing does not depend on them) it generates a folder of
photo-like 640x480 JPEGs and measures images per second for:

1. floor: ``model.predict`` on already decoded, already preprocessed batches (no I/O at all), and
   the stricter "forward tf.function": the model called in a compiled function on the same batches;
2. keras-example: the Keras "Grad-CAM class activation visualization" recipe, re-written from its
   published description: one image at a time, ``make_gradcam_heatmap`` (a functional model to
   (last conv, predictions) with the last activation set to None, tape, mean gradients) then
   ``save_and_display_gradcam`` (matplotlib jet, superimpose at alpha 0.4, save a JPEG);
3. tf-keras-vis ``Gradcam`` / ``GradcamPlusPlus`` on the same preprocessed batches (maps only);
4. ours: ``gradcam_cli.explainer.Explainer`` on the same batches (maps only, the peer's work), and
   ``gradcam explain FOLDER`` end to end (decode, compute, overlay JPEG + .npy + manifest), both
   in-process (model built, graph compiled) and as a subprocess (start-up included).

Then the phone case (``--phone N``, 32 by default): N photo-like 4032x3024 (12 MP) JPEGs, the
decode-inclusive floor (each JPEG opened in Pillow's draft mode at the scale the model needs, resized,
preprocessed, ``model.predict`` in batches of 16) against ``gradcam explain`` end to end in the same
run, and the peak RSS of ``gradcam explain --model mobilenet_v2`` on that folder, on one 48 MP and one
120 MP JPEG and on one 48 MP PNG. ``--baseline DIR`` also measures an older checkout on the same
inputs in the same run (``git archive COMMIT | tar -x -C DIR``).

With ``--backends tensorflow,jax`` it measures instead the same job on each Keras backend, each against
its own forward-pass floor, in one run (:mod:`backends`, one subprocess per backend).

With ``--engine ray`` it measures instead the Ray engine against the local engine on one folder:
the start-up of an embedded 2-CPU Ray, and for the local engine and for Ray with 1 and 2 actors the
wall time, the time to the first manifest row (actor start, model load, first compile) and the
steady images/s between the first and the last row, where fixed costs no longer count. The local
engine runs first and last, so that drifting load on a shared machine shows.

Then, with the bundled demo model, peak RSS of ``gradcam explain`` for 200 and 2000 images, the time
of ``gradcam --help`` and the time to the first heatmap for one image. Prints tables; ``--json``
writes the same figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the lab (not installed) imports from the repo root

import numpy as np  # noqa: E402
from photos import make_folder, photo_like  # noqa: E402
from PIL import Image  # noqa: E402

BATCH = 16


def timed(function, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def keras_example_recipe(model_name: str, paths: list[Path], out: Path, size: int) -> float:
    """The keras-io Grad-CAM example, one image at a time, as it is published."""
    import keras
    import matplotlib as mpl
    import tensorflow as tf

    from gradcam_cli.layers import auto_target_layer
    from gradcam_cli.models.applications import application_registry
    from gradcam_cli.models.spec import normalize_name

    entry = application_registry()[normalize_name(model_name)]
    model = entry.constructor()(weights=None)
    preprocess_input = entry.preprocess_input()
    last_conv_layer_name = auto_target_layer(model).name
    model.layers[-1].activation = None  # the example removes the last layer's softmax

    def get_img_array(img_path):
        img = keras.utils.load_img(img_path, target_size=(size, size))
        return np.expand_dims(keras.utils.img_to_array(img), axis=0)

    def make_gradcam_heatmap(img_array, pred_index=None):
        grad_model = keras.models.Model(model.inputs, [model.get_layer(last_conv_layer_name).output, model.output])
        with tf.GradientTape() as tape:
            last_conv_layer_output, preds = grad_model(img_array)
            if pred_index is None:
                pred_index = tf.argmax(preds[0])
            class_channel = preds[:, pred_index]
        grads = tape.gradient(class_channel, last_conv_layer_output)
        pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
        heatmap = last_conv_layer_output[0] @ pooled_grads[..., tf.newaxis]
        heatmap = tf.squeeze(heatmap)
        heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
        return heatmap.numpy()

    def save_and_display_gradcam(img_path, heatmap, cam_path, alpha=0.4):
        img = keras.utils.img_to_array(keras.utils.load_img(img_path))
        heatmap = np.uint8(255 * heatmap)
        jet_colors = mpl.colormaps["jet"](np.arange(256))[:, :3]
        jet_heatmap = keras.utils.array_to_img(jet_colors[heatmap])
        jet_heatmap = jet_heatmap.resize((img.shape[1], img.shape[0]))
        superimposed = keras.utils.img_to_array(jet_heatmap) * alpha + img
        keras.utils.array_to_img(superimposed).save(cam_path)

    out.mkdir(parents=True, exist_ok=True)

    def run_all(selection):
        for path in selection:
            heatmap = make_gradcam_heatmap(preprocess_input(get_img_array(path)))
            save_and_display_gradcam(path, np.nan_to_num(heatmap), out / f"{path.stem}.jpg")

    run_all(paths[:2])  # warm-up
    return len(paths) / timed(lambda: run_all(paths))


def preprocessed_batches(model_name: str, paths: list[Path], size: int) -> np.ndarray:
    from gradcam_cli.decode import load_image, model_input
    from gradcam_cli.models.applications import application_registry
    from gradcam_cli.models.spec import normalize_name

    preprocess = application_registry()[normalize_name(model_name)].preprocess_input()
    raw = np.stack([model_input(load_image(p), (size, size)) for p in paths])
    return raw, np.asarray(preprocess(raw.copy()), np.float32)


def measure_model(model_name: str, folder: Path, paths: list[Path], work: Path, skip_peers: bool) -> dict:
    import keras

    from gradcam_cli.explainer import Explainer
    from gradcam_cli.inputs import collect_inputs
    from gradcam_cli.models.applications import build_application
    from gradcam_cli.options import RunOptions
    from gradcam_cli.runners.local import run_explain

    spec = build_application(model_name, weights=None)
    size = spec.input_size[0]
    raw, batches = preprocessed_batches(model_name, paths, size)
    count = len(paths)
    figures: dict[str, float] = {}

    spec.model.predict(batches[:BATCH], batch_size=BATCH, verbose=0)
    figures["floor"] = count / timed(lambda: spec.model.predict(batches, batch_size=BATCH, verbose=0), repeat=2)
    import tensorflow as tf

    forward = tf.function(lambda x: spec.model(x, training=False))
    forward(batches[:BATCH])

    def compiled_forward():
        for start in range(0, count, BATCH):
            forward(batches[start : start + BATCH]).numpy()

    figures["forward tf.function"] = count / timed(compiled_forward, repeat=2)

    for method in ("gradcam", "gradcam++"):
        explainer = Explainer(spec, method=method, batch_size=BATCH)
        explainer.run(raw[:BATCH])
        figures[f"ours maps {method}"] = count / timed(lambda e=explainer: e.run(raw), repeat=2)
    xla = Explainer(spec, method="gradcam", batch_size=BATCH, xla=True)
    try:
        xla.run(raw[:BATCH])
        figures["ours maps gradcam --xla"] = count / timed(lambda: xla.run(raw), repeat=2)
    except Exception as error:  # XLA cannot compile some graphs on some builds
        print(f"  --xla failed on {model_name}: {type(error).__name__}", flush=True)

    items = collect_inputs([str(folder)])
    for method in ("gradcam", "gradcam++"):
        options = RunOptions(method=method, batch_size=BATCH, output_dir=work / f"warm_{model_name}_{method}",
                             overwrite=True)
        explainer = Explainer(spec, method=method, batch_size=BATCH)
        run_explain(items[:BATCH], spec, options, explainer=explainer)  # compile
        options.output_dir = work / f"ours_{model_name}_{method}"
        figures[f"ours e2e {method}"] = count / timed(
            lambda o=options, e=explainer: run_explain(items, spec, o, explainer=e), repeat=2)
        command = [sys.executable, "-m", "gradcam_cli", "explain", str(folder), "--model", model_name,
                   "--weights", "none", "-q", "-o", str(work / f"sub_{model_name}_{method}"), "--method", method]
        seconds = timed(lambda c=command: subprocess.run(c, check=True, capture_output=True))
        figures[f"ours subprocess {method}"] = count / seconds
    if not skip_peers:
        try:
            from tf_keras_vis.gradcam import Gradcam
            from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
            from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
            from tf_keras_vis.utils.scores import CategoricalScore

            predictions = spec.model.predict(batches, batch_size=BATCH, verbose=0).argmax(1)
            for label, cls in (("tf-keras-vis gradcam", Gradcam), ("tf-keras-vis gradcam++", GradcamPlusPlus)):
                visualizer = cls(spec.model, model_modifier=ReplaceToLinear(), clone=True)

                def run_peer(visualizer=visualizer):
                    for start in range(0, count, BATCH):
                        score = CategoricalScore(list(predictions[start : start + BATCH]))
                        visualizer(score, batches[start : start + BATCH], penultimate_layer=-1)

                visualizer(CategoricalScore(list(predictions[:BATCH])), batches[:BATCH], penultimate_layer=-1)
                figures[label] = count / timed(run_peer)
        except ImportError:
            print("  tf-keras-vis is not installed (pip install -e '.[bench]'): skipped", flush=True)
        figures["keras-example"] = keras_example_recipe(model_name, paths, work / f"keras_{model_name}", size)

    keras.backend.clear_session()
    return figures


def peak_rss_mb(inputs: list[Path] | Path, out: Path, model: tuple[str, ...] = ("--model", "demo"),
                source: Path | None = None) -> float:
    """Peak resident memory of one ``gradcam explain`` process (``source``: import gradcam_cli from
    that checkout instead, to compare with an older version in the same run)."""
    arguments = [str(p) for p in (inputs if isinstance(inputs, list) else [inputs])]
    code = (
        "import sys\n"
        + (f"sys.path.insert(0, {str(source)!r})\n" if source else "")
        + "from gradcam_cli.cli import main\n"
        f"sys.argv = ['gradcam', 'explain', *{arguments!r}, *{list(model)!r}, '-q', '-o', {str(out)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
    )
    # VmHWM (the peak resident set of this process image) rather than ru_maxrss, which Linux carries
    # over from the parent across fork and exec and so would report the benchmark's own peak
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1]) / 1024


PHONE = (4032, 3024)  # 12 MP, the most common phone-camera size


def decode_inclusive_floor(spec, preprocess_input, paths: list[Path]) -> float:
    """Images per second of the least work a user's JPEGs imply: each opened with Pillow's draft mode
    at the scale the model needs (DCT-domain downscaling), resized to the model's size, preprocessed,
    then ``model.predict`` in batches of 16. Sequential decoding, no overlap with the model."""
    height, width = spec.input_size

    def run() -> None:
        pixels = []
        for path in paths:
            with Image.open(path) as image:
                image.draft("RGB", (width, height))
                pixels.append(np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR), np.float32))
        batches = np.asarray(preprocess_input(np.stack(pixels)), np.float32)
        spec.model.predict(batches, batch_size=BATCH, verbose=0)

    return len(paths) / timed(run, repeat=2)


def checkout_e2e(source: Path, model_name: str, folder: Path, out: Path) -> float:
    """``run_explain`` end to end, in-process (model built and compiled first, then best of 2), with the
    gradcam_cli of the checkout ``source``, in a fresh process."""
    code = f"""
import sys, time
sys.path.insert(0, {str(source)!r})
from gradcam_cli.models import build_application
try:
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.inputs import collect_inputs
    from gradcam_cli.options import RunOptions
    from gradcam_cli.runners.local import run_explain
except ImportError:  # a checkout from before the package was reorganised (2026-12), for before/after runs
    from gradcam_cli.engine import Explainer
    from gradcam_cli.images import collect_inputs
    from gradcam_cli.pipeline import RunOptions, run_explain
spec = build_application({model_name!r}, weights=None)
items = collect_inputs([{str(folder)!r}])
explainer = Explainer(spec, method="gradcam", batch_size={BATCH})
options = RunOptions(batch_size={BATCH}, output_dir=__import__("pathlib").Path({str(out)!r}), overwrite=True)
run_explain(items[:{BATCH}], spec, options, explainer=explainer)
best = float("inf")
for _ in range(2):
    started = time.perf_counter()
    run_explain(items, spec, options, explainer=explainer)
    best = min(best, time.perf_counter() - started)
print(len(items) / best)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def a_b(baseline: Path, model_name: str, folder: Path, out: Path, rounds: int = 2) -> dict:
    """This checkout against ``baseline``, alternated (A B A B) so both see the same load on a shared
    machine; the best of each. Both run the same fresh-process recipe (:func:`checkout_e2e`)."""
    here = Path(__file__).resolve().parent.parent
    best = {"A/B this checkout e2e gradcam": 0.0, "A/B baseline e2e gradcam": 0.0}
    for _ in range(rounds):
        for label, source in zip(best, (here, baseline), strict=True):
            best[label] = max(best[label], checkout_e2e(source, model_name, folder, out))
    return best


def measure_phone(model_name: str, folder: Path, paths: list[Path], work: Path, baseline: Path | None) -> dict:
    """The 12 MP case: decode-inclusive floor and ``gradcam explain`` end to end, in one run."""
    import keras

    from gradcam_cli.explainer import Explainer
    from gradcam_cli.inputs import collect_inputs
    from gradcam_cli.models.applications import application_registry, build_application
    from gradcam_cli.models.spec import normalize_name
    from gradcam_cli.options import RunOptions
    from gradcam_cli.runners.local import run_explain

    spec = build_application(model_name, weights=None)
    preprocess_input = application_registry()[normalize_name(model_name)].preprocess_input()
    decode_inclusive_floor(spec, preprocess_input, paths[:BATCH])  # warm-up
    figures = {"decode-inclusive floor": decode_inclusive_floor(spec, preprocess_input, paths)}
    items = collect_inputs([str(folder)])
    explainer = Explainer(spec, method="gradcam", batch_size=BATCH)
    options = RunOptions(method="gradcam", batch_size=BATCH, output_dir=work / f"phone_{model_name}", overwrite=True)
    run_explain(items[:BATCH], spec, options, explainer=explainer)  # compile
    figures["ours e2e gradcam"] = len(items) / timed(lambda: run_explain(items, spec, options, explainer=explainer),
                                                     repeat=2)
    command = [sys.executable, "-m", "gradcam_cli", "explain", str(folder), "--model", model_name,
               "--weights", "none", "-q", "-o", str(work / f"phone_sub_{model_name}")]
    figures["ours subprocess gradcam"] = len(items) / timed(lambda: subprocess.run(command, check=True,
                                                                                     capture_output=True))
    if baseline:
        figures.update(a_b(baseline, model_name, folder, work / f"phone_ab_{model_name}"))
    keras.backend.clear_session()
    return figures


def phone_memory(work: Path, folder: Path, small_folder: Path, baseline: Path | None) -> dict:
    """Peak RSS of ``gradcam explain --model mobilenet_v2 --weights none`` (default batch) on a folder
    of 12 MP JPEGs, one 48 MP JPEG, one 120 MP JPEG and one 48 MP PNG, with the 640x480 folder as
    the reference a resolution-independent bound should match."""
    rng = np.random.default_rng(7)
    singles = {"48 MP JPEG": (8000, 6000, "jpg"), "120 MP JPEG": (12000, 10000, "jpg"), "48 MP PNG": (8000, 6000, "png")}
    cases: dict[str, list[Path]] = {"640x480 folder": [small_folder], "12 MP folder": [folder]}
    for label, (width, height, extension) in singles.items():
        path = work / f"big_{width}x{height}.{extension}"
        picture = photo_like(rng, width, height)
        picture.save(path, **({"quality": 90} if extension == "jpg" else {"compress_level": 6}))
        del picture
        print(f"  generated {label}: {path.stat().st_size / 1e6:.1f} MB", flush=True)
        cases[label] = [path]
    model = ("--model", "mobilenet_v2", "--weights", "none")
    memory: dict[str, dict[str, float]] = {}
    for label, inputs in cases.items():
        memory[label] = {"ours": peak_rss_mb(inputs, work / f"rss_{len(memory)}", model)}
        if baseline:
            memory[label]["baseline"] = peak_rss_mb(inputs, work / f"rss_base_{len(memory)}", model, baseline)
        print(f"  peak RSS, {label}: " + ", ".join(f"{k} {v:.0f} MB" for k, v in memory[label].items()), flush=True)
    return memory


def start_up_figures(work: Path, photo: Path) -> dict:
    gradcam = shutil.which("gradcam", path=os.path.dirname(sys.executable)) or "gradcam"
    help_seconds = timed(lambda: subprocess.run([gradcam, "--help"], check=True, capture_output=True), repeat=5)
    import_seconds = timed(lambda: subprocess.run([sys.executable, "-c", "import tensorflow, keras"], check=True,
                                                  capture_output=True), repeat=3)
    first = timed(lambda: subprocess.run([gradcam, "explain", str(photo), "--model", "demo", "-q", "--overwrite",
                                          "-o", str(work / "first")], check=True, capture_output=True), repeat=3)
    return {"help_seconds": help_seconds, "first_heatmap_seconds": first, "tensorflow_import_seconds": import_seconds}


def ray_figures(work: Path, count: int, model_name: str) -> dict:
    """Local engine vs Ray engine (1 and 2 actors) on the same photos, in one embedded 2-CPU Ray.

    For each run: the wall time, the time to its first manifest row (start-up: actors, model loads,
    first compile) and the steady rate, images per second between the first and the last row.
    """
    from gradcam_cli.inputs import collect_inputs
    from gradcam_cli.models import resolve_model
    from gradcam_cli.options import RunOptions
    from gradcam_cli.runners.local import run_explain
    from gradcam_cli.runners.ray import run_explain_ray
    from gradcam_cli.runners.ray_session import ray_session

    model_arguments = {"model": model_name, "weights": "none"}
    spec = resolve_model(**model_arguments)
    items = collect_inputs([str(work / "photos")])[:count]
    figures: dict = {"model": model_name, "images": count}

    def measure(label: str, run) -> None:
        out = work / f"ray_{label.replace(' ', '_')}"
        first_rows: dict[str, float] = {}
        started = time.perf_counter()
        summary = run(items, RunOptions(output_dir=out, batch_size=BATCH),
                      lambda row: first_rows.setdefault(row["input"], time.perf_counter()))
        wall = time.perf_counter() - started
        assert summary.images_done == count, summary
        times = sorted(first_rows.values())
        # rows arrive a batch at a time: the first batch's images are not part of the steady window
        first_batch = sum(1 for t in times if t == times[0])
        steady = (count - first_batch) / max(times[-1] - times[0], 1e-9)
        figures[label] = {"wall_s": round(wall, 2), "first_row_s": round(times[0] - started, 2),
                          "steady_images_per_s": round(steady, 2), "e2e_images_per_s": round(count / wall, 2)}
        print(f"  {label:<14} {wall:7.1f} s in all, first row after {times[0] - started:5.1f} s, "
              f"steady {steady:6.2f} images/s, end to end {count / wall:6.2f} images/s", flush=True)
        shutil.rmtree(out)

    measure("local", lambda items, options, on_row: run_explain(items, spec, options, on_row=on_row))
    started = time.perf_counter()
    with ray_session(None, 2):
        figures["embedded_ray_start_s"] = round(time.perf_counter() - started, 2)
        print(f"  embedded 2-CPU Ray start: {figures['embedded_ray_start_s']:.1f} s", flush=True)
        for workers in (1, 2):
            measure(f"ray {workers} actor{'s' if workers > 1 else ''}", lambda items, options, on_row, w=workers:
                    run_explain_ray(items, spec, model_arguments, options, workers=w, on_row=on_row))
        stopping = time.perf_counter()
    figures["embedded_ray_shutdown_s"] = round(time.perf_counter() - stopping, 2)
    # again at the end: on a shared machine the load drifts, and this shows by how much
    measure("local again", lambda items, options, on_row: run_explain(items, spec, options, on_row=on_row))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--models", default="mobilenetv2,resnet50,xception")
    parser.add_argument("--memory", default="200,2000", help="image counts for the peak-RSS runs ('' to skip)")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--phone", type=int, default=32, help="how many 12 MP JPEGs for the phone case (0 skips)")
    parser.add_argument("--phone-models", default="mobilenetv2,resnet50")
    parser.add_argument("--phone-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="peak RSS for 12 MP, 48 MP and 120 MP JPEGs and a 48 MP PNG")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout (e.g. an export of an older commit) measured alongside, same run")
    parser.add_argument("--json", default=None, help="write (merge) the figures into this JSON file")
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="ray: compare the Ray engine (1, 2 actors) with the local engine instead")
    parser.add_argument("--ray-model", default="mobilenetv2", help="--engine ray: the model (random weights)")
    parser.add_argument("--backends", default=None,
                        help="e.g. tensorflow,jax: the same job on each Keras backend against its own floor "
                             "(benchmarks/backends.py; --models and --images apply) instead")
    args = parser.parse_args()
    if args.backends:
        from backends import compare, print_table

        results = compare(args.backends.split(","), args.models.split(","), ["gradcam", "gradcam++"], args.images)
        print_table(results)
        if args.json:
            existing = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else {}
            Path(args.json).write_text(json.dumps({**existing, "backends": results}, indent=1) + "\n")
        return

    work = Path(tempfile.mkdtemp(prefix="gradcam-bench-"))
    import tensorflow as tf

    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "tensorflow": tf.__version__, "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]},
              "images": args.images, "batch": BATCH, "models": {}}
    print(f"{args.images} photo-like 640x480 JPEGs, batch {BATCH}, {os.cpu_count()} CPUs, "
          f"GPUs: {report['machine']['gpus'] or 'none'}", flush=True)
    folder = work / "photos"
    paths = make_folder(folder, args.images)
    if args.engine == "ray":
        print(f"Ray engine vs local engine, {args.ray_model} (random weights):", flush=True)
        report = {"machine": report["machine"], "batch": BATCH, "ray": ray_figures(work, args.images, args.ray_model)}
        if args.json:
            path = Path(args.json)
            merged = json.loads(path.read_text()) if path.exists() else {}
            merged["ray"] = {**report["ray"], "machine": report["machine"]}
            path.write_text(json.dumps(merged, indent=2) + "\n")
        shutil.rmtree(work, ignore_errors=True)
        return
    for model_name in [m for m in args.models.split(",") if m]:
        print(f"measuring {model_name} ...", flush=True)
        figures = measure_model(model_name, folder, paths, work, args.skip_peers)
        report["models"][model_name] = figures
        floor = figures["floor"]
        print(f"\n{model_name:<14}{'images/s':>10}{'x floor':>9}")
        for label, value in figures.items():
            print(f"  {label:<28}{value:>8.2f}{value / floor:>9.2f}")
        for method in ("gradcam", "gradcam++"):
            ours = figures[f"ours e2e {method}"]
            ratios = []
            if "keras-example" in figures:
                ratios.append(f"{ours / figures['keras-example']:.1f} x keras-example")
            peer = figures.get(f"tf-keras-vis {method}")
            if peer:
                ratios.append(f"maps {figures[f'ours maps {method}'] / peer:.2f} x tf-keras-vis")
            strict = figures["forward tf.function"]
            print(f"  {method}: e2e {ours / floor:.2f} x floor ({ours / strict:.2f} x compiled forward); "
                  + "; ".join(ratios), flush=True)

    if args.phone:
        print(f"\n{args.phone} photo-like {PHONE[0]}x{PHONE[1]} JPEGs (12 MP), batch {BATCH}", flush=True)
        phone_folder = work / "phone"
        phone_paths = make_folder(phone_folder, args.phone, seed=1, size=PHONE)
        megabytes = sum(p.stat().st_size for p in phone_paths) / len(phone_paths) / 1e6
        report["phone"] = {"images": args.phone, "size": list(PHONE), "mean_file_mb": megabytes, "models": {}}
        for model_name in [m for m in args.phone_models.split(",") if m]:
            print(f"measuring {model_name} on 12 MP ...", flush=True)
            figures = measure_phone(model_name, phone_folder, phone_paths, work, args.baseline)
            report["phone"]["models"][model_name] = figures
            floor = figures["decode-inclusive floor"]
            print(f"\n{model_name + ' 12 MP':<20}{'images/s':>10}{'x floor':>9}")
            for label, value in figures.items():
                print(f"  {label:<28}{value:>8.2f}{value / floor:>9.2f}", flush=True)
        if args.phone_memory:
            report["phone"]["peak_rss_mb"] = phone_memory(work, phone_folder, folder, args.baseline)

    counts = [int(c) for c in args.memory.split(",") if c]
    if counts:
        big = work / "many"
        big.mkdir()
        for i in range(max(counts)):
            os.link(paths[i % len(paths)], big / f"img_{i:05d}.jpg")
        memory = {}
        for count in counts:
            subset = work / f"subset_{count}"
            subset.mkdir()
            for i in range(count):
                os.link(big / f"img_{i:05d}.jpg", subset / f"img_{i:05d}.jpg")
            memory[count] = peak_rss_mb(subset, work / f"mem_{count}")
            print(f"peak RSS, demo model, {count} images: {memory[count]:.0f} MB", flush=True)
        report["peak_rss_mb"] = memory
    if args.baseline:  # the same 640x480 folder through the older checkout, for the no-regression check
        for model_name in [m for m in args.models.split(",") if m]:
            pair = a_b(args.baseline, model_name, folder, work / f"ab_{model_name}")
            report["models"][model_name].update(pair)
            print(f"  {model_name} 640x480, images/s, " + ", ".join(f"{k}: {v:.2f}" for k, v in pair.items()), flush=True)
    report["start_up"] = start_up_figures(work, paths[0])
    print(f"gradcam --help: {report['start_up']['help_seconds']:.3f} s; first heatmap (demo, one image, "
          f"start-up included): {report['start_up']['first_heatmap_seconds']:.2f} s, of which importing "
          f"TensorFlow alone: {report['start_up']['tensorflow_import_seconds']:.2f} s (best of 5, 3, 3)")
    if args.json:  # merged into an earlier report, so parts can be re-measured alone
        path = Path(args.json)
        merged = json.loads(path.read_text()) if path.exists() else {}
        models = {**merged.get("models", {}), **report.pop("models")}
        merged.update(report, models=models)
        path.write_text(json.dumps(merged, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
