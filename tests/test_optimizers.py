"""Every update rule: the same numbers from every backend, and the same as torch.optim."""

import numpy as np
import pytest
import torch
from fitting import X_DATA, Y_DATA, fit_curve, polynomial, rule

from gdfit import registry
from gdfit.train import train

START = np.random.default_rng(3).standard_normal(4)

# Each rule's cases: (rule, its settings, the torch.optim class that is its reference).
CASES = {
    "sgd": ("sgd", {"lr": 1e-6}, torch.optim.SGD),
    "momentum": ("momentum", {"lr": 1e-6, "momentum": 0.9, "nesterov": False}, torch.optim.SGD),
    "nesterov": ("momentum", {"lr": 2e-7, "momentum": 0.8, "nesterov": True}, torch.optim.SGD),
    "adam": ("adam", {"lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8}, torch.optim.Adam),
    "adam-default": ("adam", {"lr": 1e-3}, torch.optim.Adam),
    # Near the optimum Adam's steps act like lr * sign(grad), so any two implementations part
    # there (rounding grows ~10x per step); with these betas that starts after step ~1800.
    "adam-betas": ("adam", {"lr": 3e-3, "betas": [0.8, 0.99], "eps": 1e-6}, torch.optim.Adam),
    "rmsprop": ("rmsprop", {"lr": 1e-3}, torch.optim.RMSprop),
    # Like Adam's, RMSprop's steps near the optimum act like lr * sign(grad); these settings
    # reach it (the loss falls 30,000-fold) yet stay clear of that noise within 1,500 steps.
    "rmsprop-centered-momentum": (
        "rmsprop",
        {"lr": 1e-4, "alpha": 0.9, "eps": 1e-6, "momentum": 0.9, "centered": True},
        torch.optim.RMSprop,
    ),
}


def torch_optim_curve(case: str, steps: int) -> np.ndarray:
    """The reference: torch.optim's own rule on the same problem, float64."""
    name, values, optimizer = CASES[case]
    settings = rule(name, **values)
    kw = {k: v for k, v in settings.items() if k != "name"}
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    w = torch.tensor(START, requires_grad=True)
    X = torch.as_tensor(np.vander(X_DATA, 4, increasing=True))
    y = torch.as_tensor(Y_DATA)
    opt = optimizer([w], **kw)
    losses = []
    for _ in range(steps):
        loss = ((X @ w - y) ** 2).sum()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return np.array(losses)


def test_every_rule_has_a_reference_case():
    assert {name for name, _, _ in CASES.values()} == set(registry.names("optimizer"))


@pytest.mark.parametrize("backend", registry.names("backend"))
@pytest.mark.parametrize("case", CASES)
def test_every_backend_matches_torch_optim_at_every_step(case, backend):
    reference = torch_optim_curve(case, steps=1500)
    assert reference[-1] < reference[0] / 10  # the setting really trains
    name, values, _ = CASES[case]
    curve, _, _ = fit_curve(backend, START, steps=1500, settings=rule(name, **values), chunk=250)
    np.testing.assert_allclose(curve, reference, rtol=1e-6)


def test_momentum_and_adam_reach_the_optimum_faster_than_plain_sgd():
    model = polynomial()
    F = model.features(X_DATA)
    optimal = model.loss(model.optimum(F, Y_DATA), F, Y_DATA)
    gaps = {}
    for case, (name, values, _) in CASES.items():
        curve, _, _ = fit_curve("numpy", START, steps=3000, settings=rule(name, **values))
        gaps[case] = curve[-1] - optimal
    assert gaps["momentum"] < gaps["sgd"] / 1000
    assert gaps["adam"] < gaps["sgd"] / 10


def test_optimizer_settings_are_params_of_the_run(make_cfg, client):
    result = train(make_cfg("optimizer=adam", "optimizer.betas=[0.8,0.99]", "train.steps=5"))
    run = client.get_run(result.run_id)
    params = run.data.params
    assert params["optimizer.name"] == "adam" and params["optimizer.lr"] == "0.001"
    assert params["optimizer.betas"] == "[0.8, 0.99]" and params["optimizer.eps"] == "1e-08"
    assert run.info.run_name == "numpy-adam-lr0.001-seed0"
    result = train(make_cfg("optimizer=momentum", "optimizer.nesterov=true", "train.steps=5"))
    params = client.get_run(result.run_id).data.params
    assert params["optimizer.momentum"] == "0.9" and params["optimizer.nesterov"] == "True"
