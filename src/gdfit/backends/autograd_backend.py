"""The example's autograd cell: PyTorch builds the graph of the loss and computes the gradient.

With `sgd` the update is the example's own, `coef -= lr * grad` under `torch.no_grad()`; the
other rules use `torch.optim`, as an autograd user would. Losses stay on the device and reach
the host once per chunk.
"""

import numpy as np
import torch

from gdfit.backends import OnChunk, chunks


def torch_optimizer(settings: dict, coef: torch.Tensor) -> torch.optim.Optimizer | None:
    """The torch.optim counterpart of `optimizer.*`; None for plain SGD (the example's update)."""
    if settings["name"] == "momentum":
        return torch.optim.SGD(
            [coef], lr=settings["lr"], momentum=settings["momentum"], nesterov=settings["nesterov"]
        )
    if settings["name"] == "adam":
        # capturable: keep Adam's step counter on the GPU, or it calls .item() every step.
        return torch.optim.Adam(
            [coef],
            lr=settings["lr"],
            betas=tuple(settings["betas"]),
            eps=settings["eps"],
            capturable=coef.device.type != "cpu",
        )
    return None


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
    y = tensor(y)
    coef = tensor(coef0).clone().requires_grad_()
    rule, lr = torch_optimizer(optimizer, coef), optimizer["lr"]
    losses = torch.empty(chunk, dtype=X.dtype, device=device)
    for start, stop in chunks(steps, chunk):
        for i in range(stop - start):
            residual = torch.mv(X, coef) - y
            loss = torch.dot(residual, residual)
            if rule is None:
                (grad,) = torch.autograd.grad(loss, coef)
                with torch.no_grad():
                    coef -= lr * grad
            else:
                loss.backward()
                rule.step()
                rule.zero_grad()
            losses[i] = loss.detach()
        on_chunk(start, losses[: stop - start].cpu().numpy())
    return coef.detach().cpu().double().numpy()
