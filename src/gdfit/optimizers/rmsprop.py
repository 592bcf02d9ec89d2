"""RMSprop (torch.optim.RMSprop): v, the running mean of grad², scales each step by 1 / (√v + eps).
From v = 0, each step: v = alpha·v + (1 - alpha)·grad²; centered, m = alpha·m + (1 - alpha)·grad
and √(v - m²) replaces √v; the step s = grad / (√v + eps), or with momentum buf = momentum·buf + s
and s = buf; then coef -= lr·s.
"""

import math
from dataclasses import dataclass

from gdfit.config import OptimizerConfig
from gdfit.errors import ConfigError


@dataclass
class Settings(OptimizerConfig):
    alpha: float = 0.99  # decay of the running mean of grad², in [0, 1)
    eps: float = 1e-8  # added to the denominator, > 0
    momentum: float = 0.0  # decay of the step buffer, in [0, 1); 0: none
    centered: bool = False  # divide by the running variance of grad instead of its mean square


def check(cfg) -> None:
    o = cfg.optimizer
    if not 0 <= o.alpha < 1:
        raise ConfigError("optimizer.alpha", "must be in [0, 1)", o.alpha)
    if not (math.isfinite(o.eps) and o.eps > 0):
        raise ConfigError("optimizer.eps", "must be a positive finite number", o.eps)
    if not 0 <= o.momentum < 1:
        raise ConfigError("optimizer.momentum", "must be in [0, 1)", o.momentum)


class Rule:
    def __init__(self, settings):
        self.lr, self.alpha, self.eps = settings.lr, settings.alpha, settings.eps
        self.momentum, self.centered = settings.momentum, settings.centered
        self.square_avg = self.grad_avg = self.buf = None

    def step(self, coef, grad) -> None:
        if self.square_avg is None:
            self.square_avg, self.grad_avg, self.buf = grad * 0.0, grad * 0.0, grad * 0.0
        self.square_avg *= self.alpha
        self.square_avg += (1 - self.alpha) * (grad * grad)
        if self.centered:
            self.grad_avg += (1 - self.alpha) * (grad - self.grad_avg)  # torch's lerp
            avg = (self.square_avg - self.grad_avg * self.grad_avg) ** 0.5
        else:
            avg = self.square_avg**0.5
        avg += self.eps
        if self.momentum:
            self.buf *= self.momentum
            self.buf += grad / avg
            coef -= self.lr * self.buf
        else:
            coef -= self.lr * (grad / avg)


def torch_optimizer(settings, params):
    import torch

    return torch.optim.RMSprop(
        params,
        lr=settings.lr,
        alpha=settings.alpha,
        eps=settings.eps,
        momentum=settings.momentum,
        centered=settings.centered,
    )


def stable_lr(curvature: float, settings) -> None:
    """Like Adam's, RMSprop's steps are about lr long whatever the curvature: no such bound."""
    return None
