"""The example's numpy cell: forward pass and gradients written by hand.

The seed computes a + b x + c x^2 + d x^3 and four separate gradient sums each step; here the
powers of x come once, as the columns of the design matrix X, so the same arithmetic is two
matrix-vector products per step. In float64 nothing is copied: X.T is a view.
"""

import numpy as np

from gdfit import optim
from gdfit.backends import OnChunk, chunks


def fit(
    X,
    y,
    coef0,
    *,
    optimizer: dict,
    steps: int,
    dtype: str,
    device: str,
    chunk: int,
    on_chunk: OnChunk,
) -> np.ndarray:
    assert device == "cpu", "numpy runs on the CPU only"
    X = X.astype(dtype, copy=False)  # (n, degree+1)
    y = y.astype(dtype, copy=False)
    coef = coef0.astype(dtype)  # a copy: the caller's start point stays untouched
    update = optim.make(optimizer)
    losses = np.empty(chunk, dtype=dtype)
    for start, stop in chunks(steps, chunk):
        for i in range(stop - start):
            residual = X @ coef - y  # y_pred - y, (n,)
            losses[i] = residual @ residual  # loss: sum of squared errors
            grad = X.T @ (2.0 * residual)  # d loss / d coef, (degree+1,)
            update.step(coef, grad)
        on_chunk(start, losses[: stop - start])
    return coef.astype(np.float64)
