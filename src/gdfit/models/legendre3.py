"""The tutorial's custom autograd Function (polynomial_custom_function): y = a + b·P3(c + d·x),
where P3(t) = ½(5t³ − 3t) is the Legendre polynomial of degree 3.

With autograd, P3 is the tutorial's `LegendrePolynomial3`, a torch.autograd.Function whose
forward and backward are written out; the numpy and tensor backends run the same chain rule
by hand. The model is not linear in c and d, so it has no closed-form optimum (no
`optimal_loss`, no `loss_gap`) and no constant curvature (no stable rate to suggest). The
tutorial starts close to the answer, a = 0, b = -1, c = 0, d = 0.3, since farther starts
diverge at its rate; conf/model/legendre3.yaml starts there too.
"""

from functools import cache

import numpy as np

GRADIENTS = ("hand", "autograd")


def p3(t, t2=None):
    """P3(t), given t² if at hand. t·t·t, not t**3: numpy computes t**3 with a general pow,
    ~80 times slower on these arrays."""
    t2 = t * t if t2 is None else t2
    return 0.5 * (5 * (t2 * t) - 3 * t)


@cache
def legendre_polynomial3():
    """The tutorial's Function, defined on first use: listing the models must not import torch."""
    import torch

    class LegendrePolynomial3(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return 0.5 * (5 * input**3 - 3 * input)

        @staticmethod
        def backward(ctx, grad_output):
            (input,) = ctx.saved_tensors
            return grad_output * 1.5 * (5 * input**2 - 1)

    return LegendrePolynomial3


class Model:
    param_names = ["coef_0", "coef_1", "coef_2", "coef_3"]  # a, b, c, d
    init_hint = "4 numbers: a, b, c, d of y = a + b P3(c + d x)"
    what = "the tutorial's Legendre model y = a + b P3(c + d x)"

    def __init__(self, settings):
        pass

    def init(self, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal(4)

    def features(self, x: np.ndarray) -> tuple[np.ndarray]:
        return (x,)

    def predict(self, p, F):
        return p[0] + p[1] * p3(p[2] + p[3] * F[0])

    def loss(self, p, F, y):
        residual = self.predict(p, F) - y
        return residual @ residual

    def loss_grad(self, p, F, y):
        """The backward pass autograd takes through the tutorial's graph, by hand."""
        x = F[0]
        t = p[2] + p[3] * x
        t2 = t * t
        P = p3(t, t2)
        residual = p[0] + p[1] * P - y
        g = 2.0 * residual  # d loss / d y_pred
        g_t = g * p[1] * 1.5 * (5 * t2 - 1)  # on through P3, as its backward writes it
        grad = p * 0.0  # (4,) of p's kind, filled in place: no array constructor needed
        grad[0], grad[1], grad[2], grad[3] = g.sum(), g @ P, g_t.sum(), g_t @ x
        return residual @ residual, grad

    def autograd_loss(self):
        """The tutorial's forward, P3 being its Function."""
        P3 = legendre_polynomial3().apply

        def loss(p, F, y):
            y_pred = p[0] + p[1] * P3(p[2] + p[3] * F[0])
            return (y_pred - y).pow(2).sum()

        return loss

    def optimum(self, F, y) -> None:
        return None

    def curvature(self, F) -> None:
        return None

    def describe(self, p, digits: int | None = None) -> str:
        """`y = a + b * P3(c + d x)`, as the tutorial prints it."""
        a, b, c, d = (f"{float(v):.{digits}g}" if digits else f"{float(v)}" for v in p)
        return f"y = {a} + {b} * P3({c} + {d} x)"
