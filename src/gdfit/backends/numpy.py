"""The example's numpy cell: the forward pass and the gradient written by hand.

The model's `loss_grad` is the arithmetic of the example's cell; the rule's hand-written `step`
is its update. In float64 nothing is copied.
"""

import numpy as np

GRADIENT = "hand"
DEVICES = ("cpu",)
TORCH = False


class Fit:
    def __init__(self, model, F, y, p0, settings, rule, *, dtype, device, chunk):
        self.loss_grad = model.loss_grad
        self.F = tuple(a.astype(dtype, copy=False) for a in F)
        self.y = y.astype(dtype, copy=False)
        self.p = p0.astype(dtype)  # a copy: the caller's start point stays untouched
        self.rule = rule.Rule(settings)
        self.losses = np.empty(chunk, dtype=dtype)

    def step(self, i: int) -> None:
        self.losses[i], grad = self.loss_grad(self.p, self.F, self.y)
        self.rule.step(self.p, grad)

    def read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.losses[:n], self.p.astype(np.float64)
