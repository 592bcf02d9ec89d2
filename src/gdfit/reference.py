"""The example's three loops as the tutorial writes them: the reference gdfit is measured against.

Only the data, the starting coefficients, the learning rate and the number of steps are
parameters; the arithmetic is the tutorial's, line for line. Each returns the loss before every
update and the final (a, b, c, d). Used by the tests and by scripts/bench.py, never by a run.
"""

import numpy as np


def numpy_loop(x, y, coef0, lr=1e-6, steps=5000):
    a, b, c, d = coef0
    losses = np.empty(steps)
    for t in range(steps):
        y_pred = a + b * x + c * x**2 + d * x**3
        loss = np.square(y_pred - y).sum()
        losses[t] = loss
        grad_y_pred = 2.0 * (y_pred - y)
        grad_a = grad_y_pred.sum()
        grad_b = (grad_y_pred * x).sum()
        grad_c = (grad_y_pred * x**2).sum()
        grad_d = (grad_y_pred * x**3).sum()
        a -= lr * grad_a
        b -= lr * grad_b
        c -= lr * grad_c
        d -= lr * grad_d
    return losses, np.array([a, b, c, d])


def tensor_loop(x, y, coef0, lr=1e-6, steps=5000, dtype="float32", device="cpu"):
    import torch

    kw = {"dtype": getattr(torch, dtype), "device": device}
    x, y = torch.as_tensor(x, **kw), torch.as_tensor(y, **kw)
    a, b, c, d = (torch.tensor(float(v), **kw) for v in coef0)
    losses = np.empty(steps)
    for t in range(steps):
        y_pred = a + b * x + c * x**2 + d * x**3
        loss = (y_pred - y).pow(2).sum().item()
        losses[t] = loss
        grad_y_pred = 2.0 * (y_pred - y)
        grad_a = grad_y_pred.sum()
        grad_b = (grad_y_pred * x).sum()
        grad_c = (grad_y_pred * x**2).sum()
        grad_d = (grad_y_pred * x**3).sum()
        a -= lr * grad_a
        b -= lr * grad_b
        c -= lr * grad_c
        d -= lr * grad_d
    return losses, np.array([v.item() for v in (a, b, c, d)])


def autograd_loop(x, y, coef0, lr=1e-6, steps=5000, dtype="float32", device="cpu"):
    import torch

    kw = {"dtype": getattr(torch, dtype), "device": device}
    x, y = torch.as_tensor(x, **kw), torch.as_tensor(y, **kw)
    a, b, c, d = (torch.tensor(float(v), **kw, requires_grad=True) for v in coef0)
    losses = []  # kept on the device: the tutorial calls .item() only every 100 steps
    for _ in range(steps):
        y_pred = a + b * x + c * x**2 + d * x**3
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.detach())
        loss.backward()
        with torch.no_grad():
            a -= lr * a.grad
            b -= lr * b.grad
            c -= lr * c.grad
            d -= lr * d.grad
            a.grad = None
            b.grad = None
            c.grad = None
            d.grad = None
    return torch.stack(losses).cpu().double().numpy(), np.array([v.item() for v in (a, b, c, d)])


LOOPS = {"numpy": numpy_loop, "tensor": tensor_loop, "autograd": autograd_loop}
