"""ROAD's linear imputation written directly from the paper as a dense linear system, shared by
the imputation and ROAD tests (kept beside them rather than in tests/references.py)."""

from __future__ import annotations

import numpy as np

NEIGHBOURS = [((dy, dx), 1 / 6 if dy == 0 or dx == 0 else 1 / 12)
              for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def dense_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """(H, W, C) ``image`` with each ``removed`` pixel equal to the weighted average of its in-image
    8-neighbours (direct 1/6, diagonal 1/12), all removed pixels solved jointly, kept ones fixed."""
    height, width = removed.shape
    unknowns = [(y, x) for y in range(height) for x in range(width) if removed[y, x]]
    index = {pixel: k for k, pixel in enumerate(unknowns)}
    matrix = np.zeros((len(unknowns), len(unknowns)))
    rhs = np.zeros((len(unknowns), image.shape[-1]))
    for k, (y, x) in enumerate(unknowns):
        for (dy, dx), weight in NEIGHBOURS:
            ny, nx = y + dy, x + dx
            if not (0 <= ny < height and 0 <= nx < width):
                continue  # a neighbour outside the image drops out of the average
            matrix[k, k] += weight
            if removed[ny, nx]:
                matrix[k, index[(ny, nx)]] -= weight
            else:
                rhs[k] += weight * image[ny, nx]
    out = image.astype(np.float64).copy()
    if unknowns:
        out[removed] = np.linalg.solve(matrix, rhs)
    return out
