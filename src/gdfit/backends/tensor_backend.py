"""The example's tensor cell: the numpy arithmetic with PyTorch tensors, on CPU or CUDA.

Losses stay on the device and reach the host once per chunk, so a step never waits for the GPU.
"""

import numpy as np
import torch

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
    def tensor(a):
        return torch.as_tensor(a, dtype=getattr(torch, dtype), device=device)

    X = tensor(X)  # (n, degree+1)
    Xt = X.T.contiguous()  # (degree+1, n)
    y = tensor(y)
    coef = tensor(coef0).clone()
    update = optim.make(optimizer)
    losses = torch.empty(chunk, dtype=X.dtype, device=device)
    for start, stop in chunks(steps, chunk):
        for i in range(stop - start):
            residual = X @ coef - y
            losses[i] = residual @ residual
            grad = Xt @ (2.0 * residual)
            update.step(coef, grad)
        on_chunk(start, losses[: stop - start].cpu().numpy())
    return coef.cpu().double().numpy()
