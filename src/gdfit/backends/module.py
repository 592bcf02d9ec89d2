"""The tutorial's torch.nn cells: the model as a torch.nn.Module, the loss as
`MSELoss(reduction='sum')`, the update by `torch.optim`.

The model builds its module (the polynomial: `Linear(degree, 1)` then `Flatten(0, 1)` over
x, x², x³). With a rule that has a torch.optim twin the step is polynomial_optim's
`zero_grad(); backward(); step()`; plain SGD is polynomial_nn's own update, each parameter
`param -= lr * param.grad` under `torch.no_grad()` after `net.zero_grad()`. Losses stay on the
device and reach the host once per chunk.
"""

GRADIENT = "module"
DEVICES = ("cpu", "cuda")
TORCH = True


class Fit:
    def __init__(self, model, F, y, p0, settings, rule, *, dtype, device, chunk):
        import torch

        from gdfit.backends import _torch

        self.torch, self._read = torch, _torch.read
        F, (self.y, p0) = _torch.tensors(F, dtype, device), _torch.tensors((y, p0), dtype, device)
        self.net, self.inputs, self.params = model.module(p0, F)
        self.loss_fn = torch.nn.MSELoss(reduction="sum")
        parameters = list(self.net.parameters())
        self.optimizer = rule.torch_optimizer(settings, parameters)
        # Without a torch.optim twin, a hand-written rule per parameter tensor: a rule keeps
        # state shaped like the tensor it updates.
        hand = self.optimizer is None
        self.rules = [(p, rule.Rule(settings)) for p in parameters] if hand else []
        self.losses = torch.empty(chunk, dtype=self.y.dtype, device=device)

    def step(self, i: int) -> None:
        loss = self.loss_fn(self.net(*self.inputs), self.y)
        if self.optimizer is None:
            self.net.zero_grad()
            loss.backward()
            with self.torch.no_grad():
                for param, rule in self.rules:
                    if param.grad is not None:  # None: unused this step (the dynamic net's e)
                        rule.step(param, param.grad)
        else:
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.losses[i] = loss.detach()

    def read(self, n: int):
        return self._read(self.losses, self.params(), n)
