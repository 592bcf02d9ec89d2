"""SGD, momentum and Adam: the same numbers from every backend, and the same as torch.optim."""

import numpy as np
import pytest
import torch

from gdfit import backends, data
from gdfit.train import train

X_DATA = np.linspace(-np.pi, np.pi, 2000)
Y_DATA = np.sin(X_DATA)
START = np.random.default_rng(3).standard_normal(4)

SETTINGS = {
    "sgd": {"name": "sgd", "lr": 1e-6},
    "momentum": {"name": "momentum", "lr": 1e-6, "momentum": 0.9, "nesterov": False},
    "nesterov": {"name": "momentum", "lr": 2e-7, "momentum": 0.8, "nesterov": True},
    "adam": {"name": "adam", "lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8},
    "adam-default": {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8},
    # Near the optimum Adam's steps act like lr * sign(grad), so any two implementations part
    # there (rounding grows ~10x per step); with these betas that starts after step ~1800.
    "adam-betas": {"name": "adam", "lr": 3e-3, "betas": [0.8, 0.99], "eps": 1e-6},
}


def torch_optim_curve(settings: dict, steps: int) -> np.ndarray:
    """The reference: torch.optim's own SGD / Adam on the same problem, float64."""
    w = torch.tensor(START, requires_grad=True)
    X = torch.as_tensor(data.design_matrix(X_DATA, 3))
    y = torch.as_tensor(Y_DATA)
    kw = {k: v for k, v in settings.items() if k != "name"}
    if settings["name"] == "adam":
        opt = torch.optim.Adam([w], **{**kw, "betas": tuple(kw["betas"])})
    else:
        opt = torch.optim.SGD([w], **kw)
    losses = []
    for _ in range(steps):
        loss = ((X @ w - y) ** 2).sum()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return np.array(losses)


def backend_curve(name: str, settings: dict, steps: int) -> np.ndarray:
    losses = np.empty(steps)

    def on_chunk(start, chunk_losses):
        losses[start : start + len(chunk_losses)] = chunk_losses

    fit = backends.load(name).fit
    fit(
        data.design_matrix(X_DATA, 3),
        Y_DATA,
        START,
        optimizer=settings,
        steps=steps,
        dtype="float64",
        device="cpu",
        chunk=250,
        on_chunk=on_chunk,
    )
    return losses


@pytest.mark.parametrize("rule", SETTINGS)
def test_every_backend_matches_torch_optim_at_every_step(rule):
    reference = torch_optim_curve(SETTINGS[rule], steps=1500)
    assert reference[-1] < reference[0] / 10  # the setting really trains
    for name in backends.names():
        curve = backend_curve(name, SETTINGS[rule], steps=1500)
        np.testing.assert_allclose(curve, reference, rtol=1e-6, err_msg=f"{name} vs torch.optim")


def test_momentum_and_adam_reach_the_optimum_faster_than_plain_sgd():
    optimal = data.sum_squared_error(
        data.design_matrix(X_DATA, 3),
        Y_DATA,
        data.least_squares(data.design_matrix(X_DATA, 3), Y_DATA),
    )
    gaps = {rule: backend_curve("numpy", SETTINGS[rule], 3000)[-1] - optimal for rule in SETTINGS}
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
