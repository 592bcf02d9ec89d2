"""Adam (torch.optim.Adam). m, v: running means of grad and grad²; the step is lr·m̂ / (√v̂ + eps)
with the bias corrections m̂ = m / (1 - β1^t), √v̂ = √v / √(1 - β2^t), t counting from 1."""

import math
from dataclasses import dataclass, field

from gdfit.config import OptimizerConfig
from gdfit.errors import ConfigError


@dataclass
class Settings(OptimizerConfig):
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # each in [0, 1)
    eps: float = 1e-8  # added to the denominator, > 0


def check(cfg) -> None:
    betas, eps = list(cfg.optimizer.betas), cfg.optimizer.eps
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ConfigError("optimizer.betas", "must be two numbers, each in [0, 1)", betas)
    if not (math.isfinite(eps) and eps > 0):
        raise ConfigError("optimizer.eps", "must be a positive finite number", eps)


class Rule:
    def __init__(self, settings):
        self.lr, (self.beta1, self.beta2), self.eps = (
            settings.lr,
            tuple(settings.betas),
            settings.eps,
        )
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


def torch_optimizer(settings, params):
    import torch

    # capturable: keep Adam's step counter on the GPU, or it calls .item() every step.
    return torch.optim.Adam(
        params,
        lr=settings.lr,
        betas=tuple(settings.betas),
        eps=settings.eps,
        capturable=params[0].device.type != "cpu",
    )


def stable_lr(curvature: float, settings) -> None:
    """Adam's steps are about lr long whatever the curvature: no such bound."""
    return None
