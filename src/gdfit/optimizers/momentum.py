"""SGD with momentum (torch.optim.SGD): velocity v = momentum * v + grad (v = grad on the first
step), then coef -= lr * v, or coef -= lr * (grad + momentum * v) with Nesterov."""

from dataclasses import dataclass

from gdfit.config import OptimizerConfig
from gdfit.errors import ConfigError


@dataclass
class Settings(OptimizerConfig):
    momentum: float = 0.9  # velocity decay, in [0, 1) (torch.optim.SGD's momentum)
    nesterov: bool = False  # Nesterov's look-ahead form of the update


def check(cfg) -> None:
    if not 0 <= cfg.optimizer.momentum < 1:
        raise ConfigError("optimizer.momentum", "must be in [0, 1)", cfg.optimizer.momentum)


class Rule:
    def __init__(self, settings):
        self.lr, self.momentum, self.nesterov = settings.lr, settings.momentum, settings.nesterov
        # In a batched sweep (gdfit.batchfit) momentum may be a row of values, one per config;
        # a 0 among them gives that config the plain update, to the bit.
        self.heavy = not isinstance(self.momentum, int | float) or self.momentum != 0
        self.velocity = None

    def step(self, coef, grad) -> None:
        if self.heavy:
            if self.velocity is None:
                self.velocity = grad * 1.0  # a copy that the next steps update in place
            else:
                self.velocity *= self.momentum
                self.velocity += grad
            grad = grad + self.momentum * self.velocity if self.nesterov else self.velocity
        coef -= self.lr * grad


def torch_optimizer(settings, params):
    import torch

    return torch.optim.SGD(
        params, lr=settings.lr, momentum=settings.momentum, nesterov=settings.nesterov
    )


def stable_lr(curvature: float, settings) -> float:
    """Heavy ball on a quadratic: stable while lr * lambda_max < 2 (1 + momentum)."""
    return 2.0 / curvature * (1 + settings.momentum)
