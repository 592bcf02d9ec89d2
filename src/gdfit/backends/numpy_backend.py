"""The example's numpy cell: forward pass and gradients written by hand.

The seed computes a + b x + c x^2 + d x^3 and four separate gradient sums each step; here the
powers of x are computed once as the columns of a design matrix X, so the same arithmetic is
two matrix-vector products per step.
"""

import numpy as np

from gdfit import optim
from gdfit.backends import OnChunk, chunks
from gdfit.data import design_matrix


def fit(
    x,
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
    X = design_matrix(x, len(coef0) - 1).astype(dtype)  # (n, degree+1)
    Xt = np.ascontiguousarray(X.T)  # (degree+1, n), contiguous for the backward product
    y = y.astype(dtype)
    coef = coef0.astype(dtype)  # a copy: the caller's start point stays untouched
    update = optim.make(optimizer)
    losses = np.empty(chunk, dtype=dtype)
    for start, stop in chunks(steps, chunk):
        for i in range(stop - start):
            residual = X @ coef - y  # y_pred - y, (n,)
            losses[i] = residual @ residual  # loss: sum of squared errors
            grad = Xt @ (2.0 * residual)  # d loss / d coef, (degree+1,)
            update.step(coef, grad)
        on_chunk(start, losses[: stop - start])
    return coef.astype(np.float64)
