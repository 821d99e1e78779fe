"""Noisy linear imputation, ROAD's way of removing pixels (Rong, Leemann, Borisov, Kasneci &
Kasneci, "A Consistent and Efficient Evaluation Strategy for Attribution Methods", ICML 2022,
section 4), in ``keras.ops`` so that it runs inside the perturbation runner's compiled graph.

Every removed pixel takes the weighted mean of its in-image 8-neighbours, direct neighbours weight
1/6 and diagonal ones 1/12; the kept pixels are fixed. For the removed pixels ``u`` this is one
sparse linear system per image and channel, solved jointly for all of them::

    d_i u_i - sum_{j removed} w_ij u_j = sum_{j kept} w_ij x_j,    d_i = sum_{j in image} w_ij

(``d_i`` is 1 inside the image, less at its border, where the missing neighbours drop out, as in
ROAD's own imputer). The matrix is symmetric and diagonally dominant, positive definite whenever
one pixel is kept, so it is solved by conjugate gradients preconditioned with its diagonal
(Jacobi-PCG), every (copy, channel) system of a chunk at once; an iteration is one 3x3 stencil
over the chunk (shifted slices, which XLA fuses) and three sums per system, so the step is always
XLA-compiled. A system stops, its step frozen, once ``||r||_2 <= TOLERANCE * (||b||_2 + 1)``
(``b`` the right-hand side above; the 1 ends a system whose kept neighbours are all black). On
the demo's 96 px samples that takes 50-250 iterations (10 % to 90 % removed), and the result is
within about 0.1 of 255 levels of a direct solve; the freeze makes each copy's result independent
of the other copies in its chunk. (A multigrid V-cycle as preconditioner cut the iterations five
to tenfold but cost four times as much per iteration on XLA's CPU backend: no gain at these sizes.)

Gaussian noise is then added to the imputed pixels only, so the model cannot read the removal mask
off suspiciously smooth regions (the paper's "noisy" imputation). ROAD's default is 0.01 on the
tensor it imputes; we impute in pixel space, before preprocessing (a weighted mean of neighbours
commutes with the per-pixel affine preprocessing, so only the noise depends on where it is added),
and read 0.01 as a fraction of the pixel range: sigma = 2.55 levels of 255. The noise is a bank of
fixed fields, field ``k`` drawn from numpy's generator seeded with ``(NOISE_SEED, k)``, so reruns
and other batch sizes give the same copies.
"""

from __future__ import annotations

import functools

import numpy as np

NOISE_SIGMA = 0.01 * 255.0  # pixel levels: ROAD's default 0.01, as a fraction of [0, 255]
NOISE_SEED = 2022
TOLERANCE = 1e-5  # relative residual at which a system stops
NEIGHBOUR_KERNEL = np.array([[1 / 12, 1 / 6, 1 / 12],
                             [1 / 6, 0.0, 1 / 6],
                             [1 / 12, 1 / 6, 1 / 12]], np.float32)


def max_iterations(size: tuple[int, int]) -> int:
    """The iteration cap: Jacobi-PCG on this system needs up to about three times the longest side
    (a hole that spans the image); the cap, ten times it, is reached only by a system that float32
    rounding keeps from the tolerance."""
    return 10 * max(size) + 50


@functools.lru_cache(maxsize=4)
def noise_fields(count: int, size: tuple[int, int], channels: int) -> np.ndarray:
    """(count, H, W, C) standard normal fields; field ``k`` is the same whatever ``count``."""
    return np.stack([np.random.default_rng([NOISE_SEED, k]).standard_normal((*size, channels)).astype(np.float32)
                     for k in range(count)])


def neighbour_sums(values):
    """``sum_j w_ij v_j`` over each cell's 8-neighbours (zero outside the grid), per channel.

    The kernel is ``(k k^T - 4 delta) / 12`` with ``k = (1, 2, 1)``: two 3-tap passes of shifted
    slices, which XLA fuses (a depthwise convolution is slow on its CPU)."""
    from keras import ops

    height, width = values.shape[1], values.shape[2]
    padded = ops.pad(values, [(0, 0), (1, 1), (0, 0), (0, 0)])
    rows = padded[:, :height] + 2.0 * values + padded[:, 2:]
    padded = ops.pad(rows, [(0, 0), (0, 0), (1, 1), (0, 0)])
    both = padded[:, :, :width] + 2.0 * rows + padded[:, :, 2:]
    return (both - 4.0 * values) / 12.0


def weight_sums(size: tuple[int, int]) -> np.ndarray:
    """(H, W) ``d_i``: the weights of each pixel's in-image neighbours (1 inside, 2/3 on an edge,
    5/12 in a corner)."""
    padded = np.pad(np.ones(size, np.float32), 1)
    height, width = size
    return sum(NEIGHBOUR_KERNEL[dy, dx] * padded[dy:dy + height, dx:dx + width]
               for dy in range(3) for dx in range(3)).astype(np.float32)


def impute(images, removed, tolerance: float = TOLERANCE, iterations: int | None = None):
    """``images`` (c, H, W, C) with the pixels where ``removed`` (c, H, W, 1, 0/1 floats) is 1
    replaced by the weighted mean of their neighbours: the linear system above, by Jacobi-PCG from
    ``u = 0``, at most ``iterations`` steps (default :func:`max_iterations`); no noise."""
    from keras import ops

    size = tuple(images.shape[1:3])
    sums = ops.convert_to_tensor(weight_sums(size)[None, :, :, None])
    kept = images * (1.0 - removed)
    rhs = removed * neighbour_sums(kept)
    tiny = 1e-30

    def apply(u):
        return removed * (sums * u - neighbour_sums(u))

    def dot(a, b):
        return ops.sum(a * b, axis=(1, 2), keepdims=True)  # one value per (copy, channel) system

    limit = tolerance**2 * ops.square(ops.sqrt(dot(rhs, rhs)) + 1.0)
    direction = rhs / sums  # from u = 0 the residual is the right-hand side
    cap = iterations or max_iterations(size)

    def unfinished(step, u, r, p, rz):
        return ops.logical_and(step < cap, ops.any(dot(r, r) > limit))

    def iterate(step, u, r, p, rz):
        active = dot(r, r) > limit  # a finished system's step is frozen
        product = apply(p)
        curvature = dot(p, product)
        alpha = ops.where(active, rz / ops.where(curvature > tiny, curvature, 1.0), 0.0)
        u = u + alpha * p
        r = r - alpha * product
        z = r / sums
        rz_next = dot(r, z)
        beta = ops.where(active, rz_next / ops.where(rz > tiny, rz, 1.0), 0.0)
        p = ops.where(active, z + beta * p, p)
        return step + 1, u, r, p, ops.where(active, rz_next, rz)

    start = (ops.convert_to_tensor(0, "int32"), ops.zeros_like(images), rhs, direction, dot(rhs, direction))
    _, solution, _, _, _ = ops.while_loop(unfinished, iterate, start)
    return kept + removed * solution
