"""A small Vision Transformer trained briefly on the demo shapes; its pointing game next to the demo CNN's.

    python benchmarks/token_model.py [--train 6000] [--epochs 5] [--per-kind 200] [--json out.json]

Trains a small hybrid Vision Transformer (:func:`build_vit`: the demo CNN up to its first dilated
convolution, frozen, as the stem; 96 px input -> an 8 x 8 token grid plus a class token, class-token pooling) on
scenes from :mod:`lab.shapes` (the demo model's training mix, another seed), reports its
accuracy on unseen scenes of that generator, then scores the tool's maps for it (at the automatic tap, the
last block's first norm, and at the tokens entering that block, ``vit_block_in``) and for the bundled demo CNN on the same fresh
scenes as ``benchmarks/localization.py`` (pointing game with the paper's tolerance, and strict), and
on scenes of :mod:`lab.heldout`, a generator written separately from the training one.

Trained from scratch for a few CPU minutes, ViTs of this size stayed near chance (a keras-hub ViT,
patch 8, 4 blocks of width 64: 31% after 7 epochs on 8,000 images; a ViT on a fresh conv stem: 38%
after 4 epochs on 6,000), hence the pretrained stem. The ViT's maps come from its last block (an 8 x 8 grid) at
both taps; the CNN's from ``block3_relu2``
(24 x 24); the model sizes are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the lab (not installed) imports from the repo root

import numpy as np  # noqa: E402

from gradcam_cli.decode import model_input  # noqa: E402
from gradcam_cli.explainer import Explainer  # noqa: E402
from gradcam_cli.models import resolve_model  # noqa: E402
from gradcam_cli.models.in_memory import spec_for_model  # noqa: E402
from lab import heldout  # noqa: E402
from lab.localization import make_scenes, score_method  # noqa: E402
from lab.shapes import CLASSES, make_dataset  # noqa: E402

SIZE = 96  # the demo CNN's input size
STEM_LAYER = "block2_relu2"  # the demo CNN after its first dilated layer: 24 x 24 x 96 at 96 px
PATCH = 3  # 3x3 patches of the stem's map -> 8 x 8 tokens
LEARNING_RATE = 1e-3


def preprocess(images: np.ndarray) -> np.ndarray:
    """[0, 255] -> [0, 1], as the demo CNN whose stem the ViT reuses (``--preprocess scale01``)."""
    return images.astype(np.float32) / np.float32(255.0)


def build_vit(stem, size: int = SIZE, classes: int = len(CLASSES), width: int = 64, blocks: int = 2, heads: int = 4):
    """A hybrid ViT (as ViT-R50 hybrids, Dosovitskiy et al. 2021, on a pretrained CNN stem): the demo
    CNN's layers up to its first dilated one, frozen, as the stem (24 x 24 x 96); 3x3 patches of it -> 8 x 8 = 64
    tokens, a class token and learned position embeddings, pre-norm transformer blocks, class-token
    pooling."""
    import keras
    from keras import layers

    class ClassTokenAndPositions(layers.Layer):
        def build(self, input_shape):
            self.class_token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="zeros", name="cls")
            self.positions = self.add_weight(shape=(1, input_shape[1] + 1, input_shape[-1]),
                                             initializer=keras.initializers.RandomNormal(stddev=0.02), name="pos")

        def call(self, tokens):
            batch = keras.ops.shape(tokens)[0]
            cls = keras.ops.broadcast_to(self.class_token, (batch, 1, tokens.shape[-1]))
            return keras.ops.concatenate([cls, tokens], axis=1) + self.positions

    class TransformerBlock(layers.Layer):
        def __init__(self, width, heads, **kwargs):
            super().__init__(**kwargs)
            self.norm1 = layers.LayerNormalization(epsilon=1e-6)
            self.attention = layers.MultiHeadAttention(heads, width // heads)
            self.norm2 = layers.LayerNormalization(epsilon=1e-6)
            self.mlp_in = layers.Dense(2 * width, activation="gelu")
            self.mlp_out = layers.Dense(width)

        def call(self, tokens):
            normed = self.norm1(tokens)
            tokens = tokens + self.attention(normed, normed)
            return tokens + self.mlp_out(self.mlp_in(self.norm2(tokens)))

    inputs = keras.Input((size, size, 3), name="image")
    x = stem(inputs)
    x = layers.Conv2D(width, PATCH, strides=PATCH, name="patchify")(x)
    tokens = layers.Reshape((-1, width), name="tokens")(x)
    tokens = ClassTokenAndPositions(name="cls_and_positions")(tokens)
    for index in range(1, blocks + 1):
        tokens = TransformerBlock(width, heads, name=f"block{index}")(tokens)
    tokens = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(tokens)
    class_token = layers.Lambda(lambda t: t[:, 0], name="class_token")(tokens)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(class_token)
    return keras.Model(inputs, outputs, name="shapes_vit")


def cnn_stem(cnn):
    """The demo CNN up to :data:`STEM_LAYER`, frozen."""
    import keras

    stem = keras.Model(cnn.inputs, cnn.get_layer(STEM_LAYER).output, name="cnn_stem")
    stem.trainable = False
    return stem


def train_vit(seed: int, train: int, test: int, epochs: int, cnn):
    import keras

    keras.utils.set_random_seed(seed)
    train_x, train_y, _ = make_dataset(seed + 500, train, SIZE)
    test_x, test_y, _ = make_dataset(seed + 20_000, test, SIZE, mix={"single": 1.0})
    model = build_vit(cnn_stem(cnn))
    steps = epochs * (train // 64)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=steps - steps // 10, warmup_target=LEARNING_RATE,
                                                      warmup_steps=steps // 10)
    model.compile(keras.optimizers.Adam(schedule), loss="categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(preprocess(train_x), train_y, batch_size=64, epochs=epochs, verbose=2)
    seconds = time.perf_counter() - started
    accuracy = float(np.mean(model.predict(preprocess(test_x), batch_size=256, verbose=0).argmax(1)
                             == test_y.argmax(1)))
    return model, accuracy, seconds


def pointing(spec, scenes, method: str, layer: str | None = None) -> dict:
    options = {"max_channels": 32} if method == "scorecam" else {}
    explainer = Explainer(spec, method=method, batch_size=32, layer=layer, **options)

    def explain_fn(images, classes):
        batch = np.stack([model_input(image, spec.input_size) for image in images])
        return explainer.run(batch, classes).heatmaps

    summary = score_method(explain_fn, scenes).summary()
    return {"pointing_game": summary["pointing_game"], "pointing_game_strict": summary["pointing_game_strict"],
            "two_class": summary["two_class"], "layer": explainer.layer_name,
            "tapped": explainer.target.shape_text()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--per-kind", type=int, default=200)
    parser.add_argument("--scene-seed", type=int, default=777)
    parser.add_argument("--methods", default="gradcam,gradcam++,layercam,hirescam,eigencam")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    cnn = resolve_model("demo")
    vit, accuracy, seconds = train_vit(args.seed, args.train, args.test, args.epochs, cnn.model)
    print(f"ViT: {vit.count_params():,} parameters, trained {args.epochs} epochs on {args.train} images in "
          f"{seconds:.0f} s; accuracy on unseen training-generator scenes {accuracy:.3f} ({args.test} single-object images)")
    vit_spec = spec_for_model(vit, name="shapes_vit", preprocess="scale01")
    # the automatic tap (the last block's first norm) and the tokens entering that block (the earlier tap)
    models = {"vit": (vit_spec, None), "vit_block_in": (vit_spec, "block2"), "demo_cnn": (cnn, None)}
    scene_sets = {"shapes": make_scenes(args.scene_seed, args.per_kind),
                  "heldout": heldout.make_scenes(args.scene_seed, args.per_kind)}
    trainable = int(sum(np.prod(w.shape) for w in vit.trainable_weights))
    print(f"ViT parameters: {vit.count_params():,} in all, {trainable:,} trained (the rest: the frozen CNN stem)")
    results = {"vit": {"parameters": int(vit.count_params()), "trained_parameters": trainable,
                       "unseen_scene_accuracy": accuracy,
                       "train_seconds": round(seconds), "train_images": args.train, "epochs": args.epochs},
               "demo_cnn": {"parameters": int(cnn.model.count_params())}}
    results["vit_block_in"] = {"parameters": results["vit"]["parameters"]}
    print(f"{'scenes':<9}{'model':<13}{'params':>10}{'method':>12}{'pointing':>10}{'strict':>8}{'two-class':>11}  layer")
    for scene_set, scenes in scene_sets.items():
        for key, (spec, layer) in models.items():
            for method in args.methods.split(","):
                scores = pointing(spec, scenes, method, layer)
                results[key].setdefault(scene_set, {})[method] = scores
                print(f"{scene_set:<9}{key:<13}{results[key]['parameters']:>10,}{method:>12}"
                      f"{scores['pointing_game']:>10.1%}{scores['pointing_game_strict']:>8.1%}"
                      f"{scores['two_class']:>11.1%}  {scores['layer']}", flush=True)
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"scene_seed": args.scene_seed, "per_kind": args.per_kind, "results": results}, stream, indent=2)


if __name__ == "__main__":
    main()
