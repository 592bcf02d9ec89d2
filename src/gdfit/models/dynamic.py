"""The tutorial's dynamic net (dynamic_net): y = a + b x + c x² + d x³, and on each forward pass
`for exp in range(4, random.randint(4, 6)): y = y + e * x ** exp` — no higher term, e x⁴, or
e x⁴ + e x⁵, one coefficient e reused for each power, drawn anew every step.

The draws come from a `random.Random(model.seed)` made fresh for each fit, so a rerun draws the
same orders, and the same as the tutorial after `random.seed(model.seed)`. Only torch fits it
(backend=autograd or module), as the tutorial does: a graph rebuilt every step. On a step that
draws no higher term, the module's e has no gradient at all and torch.optim leaves it and its
momentum alone, as in the tutorial; the autograd backend's parameters are one tensor, so e gets
a zero gradient and momentum still moves it. With momentum the two curves part there.

A run's curve is the tutorial's loss, at whichever order was drawn. What the run reports after
it (`final_loss`, fit.png) takes the three forms as equally likely: the loss is their mean
loss, the prediction their mean prediction. That mean loss is least squares over the three
design matrices stacked, so it has a closed-form optimum and `loss_gap` is measured against it;
SGD at a constant rate on one random form a step hovers around it rather than reaching it.
"""

import random
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from gdfit.config import ModelConfig

GRADIENTS = ("autograd", "module")
TOPS = (4, 5, 6)  # what random.randint(4, 6) returns: the powers added are range(4, top)


@dataclass
class Settings(ModelConfig):
    seed: int = 0  # seeds the order drawn on each forward pass (conf: train.seed's value)


def forward(a, b, c, d, e, powers, top: int):
    """The tutorial's forward at one draw; powers: (x, x², x³, x⁴, x⁵)."""
    x, x2, x3 = powers[:3]
    y = a + b * x + c * x2 + d * x3
    for exp in range(4, top):
        y = y + e * powers[exp - 1]
    return y


@cache
def dynamic_net():
    """The tutorial's DynamicNet, defined on first use: listing the models must not import
    torch. Its five scalar parameters start at a given point and it draws from its own
    generator rather than the global one."""
    import torch

    class DynamicNet(torch.nn.Module):
        def __init__(self, p, rng: random.Random):
            super().__init__()
            self.a, self.b, self.c, self.d, self.e = (torch.nn.Parameter(v.clone()) for v in p)
            self.rng = rng

        def forward(self, *powers):
            top = self.rng.randint(4, 6)
            return forward(self.a, self.b, self.c, self.d, self.e, powers, top)

    return DynamicNet


class Model:
    param_names = [f"coef_{k}" for k in range(5)]  # a, b, c, d, e
    init_hint = "5 numbers: a, b, c, d, e"
    what = "the tutorial's dynamic net (a cubic plus random x^4, x^5 terms)"

    def __init__(self, settings):
        self.seed = settings.seed

    def init(self, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal(5)

    def features(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(x**k for k in range(1, 6))

    def predict(self, p: Any, F: Any) -> Any:
        return sum(forward(p[0], p[1], p[2], p[3], p[4], F, top) for top in TOPS) / len(TOPS)

    def loss(self, p: Any, F: Any, y: Any) -> Any:
        residuals = [forward(p[0], p[1], p[2], p[3], p[4], F, top) - y for top in TOPS]
        return sum((r * r).sum() for r in residuals) / len(TOPS)

    def autograd_loss(self):
        """The loss of one random form per call, from this fit's own generator."""
        draw = random.Random(self.seed).randint

        def loss(p: Any, F: Any, y: Any) -> Any:
            return ((forward(p[0], p[1], p[2], p[3], p[4], F, draw(4, 6)) - y) ** 2).sum()

        return loss

    def module(self, p, F):
        import torch

        net = dynamic_net()(p, random.Random(self.seed))
        return net, F, lambda: torch.stack([net.a, net.b, net.c, net.d, net.e])

    def design(self, F, top: int) -> np.ndarray:
        """(n_points, 5): the form drawn as `top` is this matrix times (a, b, c, d, e)."""
        x = F[0]
        high = sum((F[exp - 1] for exp in range(4, top)), np.zeros_like(x))
        return np.column_stack([np.ones_like(x), *F[:3], high])

    def optimum(self, F, y) -> np.ndarray:
        """The least mean loss: least squares over the three forms' rows at once."""
        A = np.vstack([self.design(F, top) for top in TOPS])
        return np.linalg.lstsq(A, np.tile(y, len(TOPS)), rcond=None)[0]

    def curvature(self, F) -> None:
        """None: each step sees one of three quadratics, so no one rate bounds them all."""
        return None

    def describe(self, p, digits: int | None = None) -> str:
        """The tutorial's string: the x^4 and x^5 terms are there on some steps only."""
        a, b, c, d, e = (f"{float(v):.{digits}g}" if digits else f"{float(v)}" for v in p)
        return f"y = {a} + {b} x + {c} x^2 + {d} x^3 + {e} x^4 ? + {e} x^5 ?"
