"""The example's autograd cell: PyTorch builds the graph of the model's loss and computes the
gradient.

With a rule that has no torch.optim twin (plain SGD) the update is the example's own, the rule's
`step` under `torch.no_grad()`; the other rules use `torch.optim`, as an autograd user would.
Losses stay on the device and reach the host once per chunk.
"""

GRADIENT = "autograd"
DEVICES = ("cpu", "cuda")
TORCH = True


class Fit:
    def __init__(self, model, F, y, p0, settings, rule, *, dtype, device, chunk):
        import torch

        from gdfit.backends import _torch

        self.torch, self._read = torch, _torch.read
        # The model's own loss for autograd (a custom Function, a forward drawn each step).
        self.loss = model.autograd_loss() if hasattr(model, "autograd_loss") else model.loss
        self.F, (self.y, p0) = (
            _torch.tensors(F, dtype, device),
            _torch.tensors((y, p0), dtype, device),
        )
        self.p = p0.clone().requires_grad_()
        self.optimizer = rule.torch_optimizer(settings, [self.p])
        self.rule = rule.Rule(settings) if self.optimizer is None else None
        self.losses = torch.empty(chunk, dtype=self.y.dtype, device=device)

    def step(self, i: int) -> None:
        loss = self.loss(self.p, self.F, self.y)
        if self.rule is not None:
            (grad,) = self.torch.autograd.grad(loss, self.p)
            with self.torch.no_grad():
                self.rule.step(self.p, grad)
        else:
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
        self.losses[i] = loss.detach()

    def read(self, n: int):
        return self._read(self.losses, self.p, n)
