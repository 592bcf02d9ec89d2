"""The performance guarantees that can be checked without a clock: no per-step host
synchronisation in the torch backends, no per-point logging calls."""

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from gdfit import backends, data
from gdfit.train import train

SYNCING = ("cpu", "item", "tolist", "numpy", "__float__", "__bool__", "__int__")


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("name", ["tensor", "autograd"])
def test_torch_backends_reach_the_host_once_per_chunk(name, optimizer, monkeypatch):
    calls = []
    for method in SYNCING:
        original = getattr(torch.Tensor, method)

        def counting(self, *args, _original=original, _method=method, **kwargs):
            calls.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counting)
    x = np.linspace(-np.pi, np.pi, 200)
    settings = {
        "sgd": {"name": "sgd", "lr": 1e-5},
        "momentum": {"name": "momentum", "lr": 1e-5, "momentum": 0.9, "nesterov": True},
        "adam": {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8},
    }
    chunks = []
    backends.load(name).fit(
        data.design_matrix(x, 3),
        np.sin(x),
        np.zeros(4),
        optimizer=settings[optimizer],
        steps=1000,
        dtype="float32",
        device="cpu",
        chunk=250,
        on_chunk=lambda start, losses: chunks.append(start),
    )
    assert chunks == [0, 250, 500, 750]
    # one copy of the losses per chunk (.cpu + .numpy) and one of the final coefficients
    assert calls.count("cpu") == 5 and calls.count("numpy") == 5
    if (name, optimizer) == ("autograd", "adam"):
        # torch.optim.Adam reads its step counter with .item(); on the CPU that reads host memory
        # and waits for nothing, on CUDA the backend makes it capturable (see the next test).
        calls = [c for c in calls if c != "item"]
    assert not {"item", "tolist", "__float__", "__bool__", "__int__"} & set(calls)


def test_adam_keeps_its_step_counter_on_the_gpu():
    from gdfit.backends.autograd_backend import torch_optimizer

    adam = {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8}
    off_cpu = torch.zeros(4, device="meta", requires_grad=True)
    assert torch_optimizer(adam, off_cpu).defaults["capturable"] is True
    on_cpu = torch.zeros(4, requires_grad=True)
    assert torch_optimizer(adam, on_cpu).defaults["capturable"] is False


def test_the_curve_is_sent_in_batches_not_per_point(make_cfg, monkeypatch):
    batches = []
    original = MlflowClient.log_batch

    def counting(self, run_id, metrics=(), *args, **kwargs):
        batches.append(sum(m.key == "loss" for m in metrics))
        return original(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", counting)
    train(make_cfg("train.steps=5000"))
    loss_batches = [n for n in batches if n]
    assert sum(loss_batches) == 5000
    assert len(loss_batches) <= 3  # one at the end of a short run, or one every 2 s
