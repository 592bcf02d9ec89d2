"""Every backend against references: the example's own loop, autograd, the exact optimum."""

import numpy as np
import pytest
import torch

from gdfit import backends, data, seed
from gdfit.backends import chunks

X_DATA = np.linspace(-np.pi, np.pi, 2000)
Y_DATA = np.sin(X_DATA)


def run(name, coef0, *, steps, lr=1e-6, dtype="float64", chunk=97, x=X_DATA, y=Y_DATA):
    """Fit with backend `name`; returns (losses, coef). An odd chunk size tests the seams."""
    losses = np.full(steps, np.nan)

    def on_chunk(start, chunk_losses):
        losses[start : start + len(chunk_losses)] = chunk_losses

    coef = backends.load(name).fit(
        data.design_matrix(x, len(coef0) - 1),
        y,
        np.asarray(coef0, dtype=np.float64),
        optimizer={"name": "sgd", "lr": lr},
        steps=steps,
        dtype=dtype,
        device="cpu",
        chunk=chunk,
        on_chunk=on_chunk,
    )
    return losses, coef


@pytest.mark.parametrize("start", [0, 1, 2, [0.1, 0.2, 0.3, 0.4], [5.0, -3.0, 2.0, -1.0]])
def test_numpy_float64_matches_the_example_at_every_step(start):
    coef0 = np.random.default_rng(start).standard_normal(4) if isinstance(start, int) else start
    ref_losses, ref_coef = seed.numpy_loop(X_DATA, Y_DATA, list(coef0), steps=2000)
    losses, coef = run("numpy", coef0, steps=2000)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12, atol=0)
    np.testing.assert_allclose(coef, ref_coef, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("name", ["numpy", "tensor"])
def test_hand_written_gradient_matches_autograd(name):
    coef0 = np.array([0.3, -1.2, 0.7, 0.05])
    # One step with lr=1 moves the coefficients by exactly minus the gradient.
    _, coef1 = run(name, coef0, steps=1, lr=1.0)
    w = torch.tensor(coef0, requires_grad=True)
    X = torch.as_tensor(data.design_matrix(X_DATA, 3))
    loss = ((X @ w - torch.as_tensor(Y_DATA)) ** 2).sum()
    (grad,) = torch.autograd.grad(loss, w)
    np.testing.assert_allclose(coef0 - coef1, grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", backends.names())
def test_every_backend_agrees_with_numpy_in_float64(name):
    coef0 = np.random.default_rng(7).standard_normal(4)
    ref_losses, ref_coef = run("numpy", coef0, steps=500)
    losses, coef = run(name, coef0, steps=500)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-10)
    np.testing.assert_allclose(coef, ref_coef, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", backends.names())
def test_every_backend_reaches_the_least_squares_optimum(name, dtype):
    X = data.design_matrix(X_DATA, 3)
    best = data.least_squares(X, Y_DATA)
    # lr close to the stability limit (2 / largest Hessian eigenvalue ~ 3.6e-6) converges fast.
    losses, coef = run(
        name,
        np.random.default_rng(0).standard_normal(4),
        steps=6000,
        lr=3e-6,
        dtype=dtype,
        chunk=1000,
    )
    gap = data.sum_squared_error(X, Y_DATA, coef) - data.sum_squared_error(X, Y_DATA, best)
    tol = 1e-9 if dtype == "float64" else 1e-3
    assert 0 <= gap < tol
    np.testing.assert_allclose(coef, best, atol=1e-5 if dtype == "float64" else 1e-3)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", backends.names())
def test_float32_backends_follow_the_example_in_float32(name):
    coef0 = [0.1, 0.2, 0.3, 0.4]
    ref_losses, ref_coef = seed.numpy_loop(X_DATA, Y_DATA, coef0, steps=1000)
    losses, coef = run(name, coef0, steps=1000, dtype="float32")
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    np.testing.assert_allclose(coef, ref_coef, rtol=1e-4, atol=1e-5)


def test_chunks_cover_every_step_once():
    assert list(chunks(7, 3)) == [(0, 3), (3, 6), (6, 7)]
    assert list(chunks(3, 1000)) == [(0, 3)]
