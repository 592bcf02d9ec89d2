"""K fits of one problem as one program: the configs of a batched sweep that share the data,
the model, the backend, its dtype and device, the rule and the step count differ only in a few
numbers (the rule's settings, the start point), so their parameters are the K columns of one
(n_params x K) matrix and every step updates them all at once.

Two forms of the same loss and gradient, both written with operators only, so that numpy arrays
and torch tensors run the same lines:

- float64, the Gram form: for a model linear in its parameters (`model.linear`, prediction
  X @ p) the loss is a quadratic in p. Around the least-squares optimum p*, with d = p - p*,
  G = X^T X and g* = G p* - X^T y (~0), it is L* + d^T G d + 2 d^T g*, and the gradient
  2 (G d + g*): a step is a (n_params x n_params) product, whatever the number of points. The
  shift to p* keeps the terms small near the optimum, so the loss loses no digits to
  cancellation (L* is summed from the residuals, once).
- float32, the residual form: R = X P - y, the loss of each column r . r and its gradient
  X^T (2 r). With numpy these are stacked matrix-vector products, which meet each column's
  sequential arithmetic in the same order: the fit follows the sequential one to the bit.
  Torch computes them as two matrix products and a column sum (its stacked products
  materialise X once per column, and its matrix-vector kernels depend on strides anyway), so
  each step differs from the sequential one in the last bit or so.
In float32 the Gram form's rounding would show in the curve.

The float64 form is not bitwise the sequential fit either: G's products sum in another order
than X's. The rules gdfit batches (sgd, momentum)
contract such differences rather than grow them (docs/sweeps.md gives the agreement measured).

The backend decides where the gradient comes from, as in a sequential fit: "hand" uses the
formula above, "autograd" lets torch differentiate the K losses' sum (each column's gradient is
that of its own loss).
"""

import math
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from gdfit import registry

RULES = ("sgd", "momentum")  # rules whose settings may differ within a batch
# The batched fit's agreement with the sequential run of the same config, relative, over the
# whole curve and the coefficients (tests/test_batched.py, gdfit-rerun's verdict).
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


def gram_form(dtype: str) -> bool:
    return dtype == "float64"


def bytes_per_config(n_points: int, n_params: int, steps: int, chunk: int, dtype: str) -> int:
    """The program's working set for one config: its whole loss curve on the host (float64),
    its chunk of losses and parameters, the rule's state and temporaries where the arrays
    live, and, in the residual form, a few (n_points,) columns."""
    size = np.dtype(dtype).itemsize
    columns = 0 if gram_form(dtype) else 4 * n_points * size
    return 8 * steps + chunk * (size + 8) + 12 * n_params * size + columns


def settings_of(cfgs: list, dtype: str, array: Callable) -> SimpleNamespace:
    """The rule's settings for K configs: a setting with one value stays a Python number (the
    arithmetic of a sequential fit), one that differs becomes a (1, K) row of `dtype`."""
    shared: dict = {}
    for key in cfgs[0].optimizer:
        values = [c.optimizer[key] for c in cfgs]
        if all(v == values[0] for v in values):
            shared[key] = values[0]
        else:
            shared[key] = array(np.array(values, dtype=np.float64).reshape(1, -1), dtype)
    return SimpleNamespace(**shared)


class Program:
    """The batch's arrays and its step. `step(i)` puts the K losses before update i into row i
    of the chunk's buffer; `read(n)` gives (losses (n, K), params (n_params, K)) on the host as
    float64, in one transfer."""

    def __init__(self, problems: list, backend: str, dtype: str, device: str, chunk: int):
        first = problems[0]
        self.autograd = registry.load("backend", backend).GRADIENT == "autograd"
        self.torch = backend != "numpy"
        X, y = first.F[0], first.y
        self.losses: Any
        P0 = np.stack([p.p0 for p in problems], axis=1)  # (n_params, K)
        if self.torch:
            import torch

            def array(a, dtype):
                return torch.as_tensor(a, dtype=getattr(torch, dtype), device=device)

            self.losses = torch.empty((chunk, len(problems)), dtype=getattr(torch, dtype))
            self.losses = self.losses.to(device)
        else:

            def array(a, dtype):
                return np.asarray(a, dtype=dtype)

            self.losses = np.empty((chunk, len(problems)), dtype=dtype)
        self.P = array(P0, dtype).clone() if self.torch else array(P0, dtype).copy()
        if self.autograd:
            self.P.requires_grad_(True)
        self.gram = gram_form(dtype)
        if self.gram:  # float64 throughout, so the host's numbers go over unchanged
            optimum = np.linalg.lstsq(X, y, rcond=None)[0]
            residual = X @ optimum - y
            G = X.T @ X
            self.G = array(G, dtype)
            self.optimum = array(optimum.reshape(-1, 1), dtype)
            self.g = array((G @ optimum - X.T @ y).reshape(-1, 1), dtype)
            self.L = float(residual @ residual)
        else:
            self.X, self.y = array(X, dtype), array(y.reshape(-1, 1), dtype)
            self.Xt = self.X.T if self.torch else self.X.T[None]  # numpy: one per column
        rule = registry.load("optimizer", first.cfg.optimizer.name)
        self.rule = rule.Rule(settings_of([p.cfg for p in problems], dtype, array))

    def loss_and_grad(self, P):
        """(the K losses, their gradient as an (n_params, K) matrix) by hand."""
        if self.gram:
            D = P - self.optimum
            H = self.G @ D + self.g
            return self.L + (D * (H + self.g)).sum(0), 2.0 * H
        R = self.X @ P - self.y  # (n_points, K)
        if self.torch:
            return (R * R).sum(0), self.Xt @ (2.0 * R)
        r = R.T.copy()[:, :, None]  # (K, n_points, 1): the columns, each contiguous
        return (r.swapaxes(1, 2) @ r)[:, 0, 0], (self.Xt @ (2.0 * r))[:, :, 0].T

    def losses_only(self, P):  # autograd, which runs on torch only
        if self.gram:
            D = P - self.optimum
            return self.L + (D * (self.G @ D + 2.0 * self.g)).sum(0)
        R = self.X @ P - self.y
        return (R * R).sum(0)

    def step(self, i: int) -> None:
        if not self.autograd:
            self.losses[i], grad = self.loss_and_grad(self.P)
            self.rule.step(self.P, grad)
            return
        import torch

        losses = self.losses_only(self.P)
        losses.sum().backward()  # column k's gradient is that of loss k alone
        with torch.no_grad():
            self.losses[i] = losses
            self.rule.step(self.P, self.P.grad)
        self.P.grad = None

    def read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.torch:
            return np.array(self.losses[:n], np.float64), np.array(self.P, np.float64)
        import torch

        host = torch.cat((self.losses[:n], self.P.detach())).cpu().numpy().astype(np.float64)
        return host[:n], host[n:]


class Batch:
    """What one program left: every config's curve so far, its parameters at the end and at
    the snapshot steps, where it diverged, and the loop's seconds."""

    def __init__(self, problems: list, steps: int):
        self.problems = problems
        K = len(problems)
        self.losses = np.empty((steps, K))  # untouched pages cost nothing
        self.done = 0  # steps whose losses are in self.losses
        self.stopped = np.full(K, steps)  # per config: the steps it has (its divergence step)
        self.params = np.stack([p.p0 for p in problems], axis=1)
        self.snapshots: dict[int, np.ndarray] = {}
        self.seconds = 0.0

    def curve(self, k: int) -> np.ndarray:
        return self.losses[: min(self.done, self.stopped[k]), k]


def fit(
    problems: list,
    backend: str,
    dtype: str,
    device: str,
    steps: int,
    chunk: int,
    snapshot_steps: list[int],
    batch: Batch,
) -> Batch:
    """Fit `problems` (train.Problem, one per config) as one program, filling `batch` chunk by
    chunk, so that a Ctrl-C leaves it holding the curves up to the last whole chunk. A config
    whose loss leaves its problem's bound (or stops being finite) is marked there; its column
    goes on computing garbage that no other column sees, and the program ends early once every
    config has diverged."""
    from gdfit.backends import chunks

    program = Program(problems, backend, dtype, device, chunk)
    bounds = np.array([p.bound for p in problems])
    wanted = {s for s in snapshot_steps if 0 <= s <= steps}
    if 0 in wanted:
        batch.snapshots[0] = batch.params.copy()
    step = program.step
    with np.errstate(all="ignore"):
        for start, stop in chunks(steps, chunk, wanted):
            began = time.perf_counter()
            for i in range(stop - start):
                step(i)
            losses, params = program.read(stop - start)
            batch.seconds += time.perf_counter() - began
            batch.losses[start:stop] = losses
            batch.params, batch.done = params, stop
            bad = ~np.isfinite(losses) | (losses > bounds)
            for k in np.flatnonzero(bad.any(axis=0) & (batch.stopped == steps)):
                batch.stopped[k] = start + int(np.argmax(bad[:, k]))
            if stop in wanted:
                batch.snapshots[stop] = params
            if (batch.stopped < steps).all():
                break
    return batch


def share(seconds: float, k: int) -> float:
    """A config's share of a program's seconds (its `train_seconds`)."""
    return seconds / k if k else math.nan
