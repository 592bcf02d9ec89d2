"""Every registered backend against references: the example's own loops, autograd, the exact
optimum. A new backend module is picked up by every test here."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fitting import X_DATA, Y_DATA, fit_curve, polynomial, rule

from gdfit import reference, registry
from gdfit.backends import chunks
from gdfit.paths import conf_dir

BACKENDS = registry.names("backend")
HAND = [n for n in BACKENDS if registry.load("backend", n).GRADIENT == "hand"]


@pytest.mark.parametrize("start", [0, 1, 2, [0.1, 0.2, 0.3, 0.4], [5.0, -3.0, 2.0, -1.0]])
def test_numpy_float64_matches_the_example_at_every_step(start):
    coef0 = np.random.default_rng(start).standard_normal(4) if isinstance(start, int) else start
    ref_losses, ref_coef = reference.numpy_loop(X_DATA, Y_DATA, list(coef0), steps=2000)
    losses, coef, _ = fit_curve("numpy", coef0, steps=2000)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12, atol=0)
    np.testing.assert_allclose(coef, ref_coef, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("name", HAND)
def test_hand_written_gradient_matches_autograd(name):
    coef0 = np.array([0.3, -1.2, 0.7, 0.05])
    # One step with lr=1 moves the coefficients by exactly minus the gradient.
    _, coef1, _ = fit_curve(name, coef0, steps=1, settings=rule("sgd", lr=1.0))
    w = torch.tensor(coef0, requires_grad=True)
    X = torch.as_tensor(np.vander(X_DATA, 4, increasing=True))
    loss = ((X @ w - torch.as_tensor(Y_DATA)) ** 2).sum()
    (grad,) = torch.autograd.grad(loss, w)
    np.testing.assert_allclose(coef0 - coef1, grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_follows_the_example_in_float64(name):
    coef0 = np.random.default_rng(7).standard_normal(4)
    ref_losses, ref_coef = reference.numpy_loop(X_DATA, Y_DATA, list(coef0), steps=500)
    losses, coef, _ = fit_curve(name, coef0, steps=500)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-10)
    np.testing.assert_allclose(coef, ref_coef, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_reaches_the_least_squares_optimum(name, dtype):
    model = polynomial()
    F = model.features(X_DATA)
    best = np.polynomial.polynomial.polyfit(X_DATA, Y_DATA, 3)  # independent of model.optimum
    np.testing.assert_allclose(model.optimum(F, Y_DATA), best, rtol=1e-9, atol=1e-12)
    # lr close to the stability limit (2 / largest Hessian eigenvalue ~ 3.6e-6) converges fast.
    losses, coef, _ = fit_curve(
        name,
        np.random.default_rng(0).standard_normal(4),
        steps=6000,
        settings=rule("sgd", lr=3e-6),
        dtype=dtype,
        chunk=1000,
    )
    gap = float(model.loss(coef, F, Y_DATA) - model.loss(best, F, Y_DATA))
    # Above the optimum by less than tol; below it only by rounding of the two sums.
    assert -1e-12 < gap < (1e-9 if dtype == "float64" else 1e-3)
    np.testing.assert_allclose(coef, best, atol=1e-5 if dtype == "float64" else 1e-3)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", BACKENDS)
def test_float32_backends_follow_the_example(name):
    coef0 = [0.1, 0.2, 0.3, 0.4]
    ref_losses, ref_coef = reference.numpy_loop(X_DATA, Y_DATA, coef0, steps=1000)
    losses, coef, _ = fit_curve(name, coef0, steps=1000, dtype="float32")
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    np.testing.assert_allclose(coef, ref_coef, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BACKENDS)
def test_on_chunk_gets_the_parameters_after_each_chunk_and_at_extra_ends(name):
    coef0 = [0.1, 0.2, 0.3, 0.4]
    _, coef, seen = fit_curve(name, coef0, steps=300, chunk=97, ends=[10, 100, 250])
    assert sorted(seen) == [10, 100, 197, 250, 300]
    for step in (10, 100, 250):
        _, ref_coef = reference.numpy_loop(X_DATA, Y_DATA, coef0, steps=step)
        np.testing.assert_allclose(seen[step], ref_coef, rtol=1e-9, atol=1e-12)
        assert seen[step].dtype == np.float64
    assert np.array_equal(seen[300], coef)
    # chunk boundaries change nothing in the numbers
    _, same, _ = fit_curve(name, coef0, steps=300, chunk=1000)
    assert np.array_equal(same, coef)


def test_chunks_cover_every_step_once_and_end_where_asked():
    assert list(chunks(7, 3)) == [(0, 3), (3, 6), (6, 7)]
    assert list(chunks(3, 1000)) == [(0, 3)]
    assert list(chunks(12, 5, ends=[0, 2, 7, 12, 99])) == [(0, 2), (2, 7), (7, 12)]
    assert list(chunks(12, 4, ends=[6])) == [(0, 4), (4, 6), (6, 10), (10, 12)]


@pytest.mark.parametrize("group", registry.GROUPS)
def test_every_module_has_its_yaml_and_every_yaml_its_module(group):
    folder = Path(conf_dir()) / group
    yamls = {p.stem: yaml.safe_load(p.read_text()) for p in folder.glob("*.yaml")}
    assert sorted(yamls) == list(registry.names(group))
    for name, content in yamls.items():
        assert content["name"] == name
        assert f"/schema/{group}/{name}@_here_" in content["defaults"]


def test_backend_modules_declare_what_they_need():
    for name in BACKENDS:
        module = registry.load("backend", name)
        assert module.GRADIENT in ("hand", "autograd", "module")
        assert set(module.DEVICES) <= {"cpu", "cuda"} and "cpu" in module.DEVICES
        assert isinstance(module.TORCH, bool)
