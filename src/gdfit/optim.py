"""Hand-written update rules for the numpy and tensor backends.

They follow the update rules PyTorch documents for `torch.optim.SGD` (with momentum and
Nesterov) and `torch.optim.Adam`, so a run can be checked against PyTorch. Only arithmetic and
in-place operators appear, so one rule updates numpy arrays and torch tensors alike, in place,
without a host synchronisation and without importing torch.
"""

import math


class SGD:
    """coef -= lr * g. Without momentum g = grad. With it, the velocity v = momentum * v + grad
    (v = grad on the first step) and g = v, or g = grad + momentum * v with Nesterov."""

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False):
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.velocity = None

    def step(self, coef, grad) -> None:
        if self.momentum:
            if self.velocity is None:
                self.velocity = grad * 1.0  # a copy that the next steps update in place
            else:
                self.velocity *= self.momentum
                self.velocity += grad
            grad = grad + self.momentum * self.velocity if self.nesterov else self.velocity
        coef -= self.lr * grad


class Adam:
    """m, v: running means of grad and grad²; the step is lr·m̂ / (√v̂ + eps) with the bias
    corrections m̂ = m / (1 - β1^t), √v̂ = √v / √(1 - β2^t), t counting from 1."""

    def __init__(self, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.t, self.m, self.v = 0, None, None

    def step(self, coef, grad) -> None:
        if self.m is None:
            self.m, self.v = grad * 0.0, grad * 0.0
        self.t += 1
        self.m += (1 - self.beta1) * (grad - self.m)  # torch's lerp: same mean, same rounding
        self.v *= self.beta2
        self.v += (1 - self.beta2) * (grad * grad)
        denom = self.v**0.5 / math.sqrt(1 - self.beta2**self.t) + self.eps
        coef -= (self.lr / (1 - self.beta1**self.t)) * (self.m / denom)


def make(settings: dict) -> SGD | Adam:
    """The update rule `optimizer.*` describes (a plain dict of the group's settings)."""
    name = settings["name"]
    if name == "sgd":
        return SGD(settings["lr"])
    if name == "momentum":
        return SGD(settings["lr"], settings["momentum"], settings["nesterov"])
    if name == "adam":
        return Adam(settings["lr"], tuple(settings["betas"]), settings["eps"])
    raise ValueError(f"unknown optimizer {name!r}")
