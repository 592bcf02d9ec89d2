"""The example's autograd cell: PyTorch builds the graph of the loss and computes the gradient.

As in the example the update itself runs under `torch.no_grad()`; losses stay on the device
and reach the host once per chunk.
"""

import numpy as np
import torch

from gdfit.backends import OnChunk, chunks
from gdfit.data import design_matrix


def fit(
    x, y, coef0, *, lr: float, steps: int, dtype: str, device: str, chunk: int, on_chunk: OnChunk
) -> np.ndarray:
    def tensor(a):
        return torch.as_tensor(a, dtype=getattr(torch, dtype), device=device)

    X = tensor(design_matrix(x, len(coef0) - 1))  # (n, degree+1)
    y = tensor(y)
    coef = tensor(coef0).clone().requires_grad_()
    losses = torch.empty(chunk, dtype=X.dtype, device=device)
    for start, stop in chunks(steps, chunk):
        for i in range(stop - start):
            residual = torch.mv(X, coef) - y
            loss = torch.dot(residual, residual)
            (grad,) = torch.autograd.grad(loss, coef)
            with torch.no_grad():
                coef -= lr * grad
                losses[i] = loss
        on_chunk(start, losses[: stop - start].cpu().numpy())
    return coef.detach().cpu().double().numpy()
