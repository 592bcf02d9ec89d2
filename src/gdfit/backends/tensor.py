"""The example's tensor cell: the numpy arithmetic with PyTorch tensors, on CPU or CUDA.

The same hand-written `loss_grad` and rule as the numpy backend run on tensors; the losses stay
on the device and reach the host once per chunk, so a step never waits for the GPU.
"""

GRADIENT = "hand"
DEVICES = ("cpu", "cuda")
TORCH = True


class Fit:
    def __init__(self, model, F, y, p0, settings, rule, *, dtype, device, chunk):
        import torch

        from gdfit.backends import _torch

        self.loss_grad = model.loss_grad
        self.F, (self.y, p0) = (
            _torch.tensors(F, dtype, device),
            _torch.tensors((y, p0), dtype, device),
        )
        self.p = p0.clone()  # as_tensor may share the caller's start point
        self.rule = rule.Rule(settings)
        self.losses = torch.empty(chunk, dtype=self.y.dtype, device=device)
        self._read = _torch.read

    def step(self, i: int) -> None:
        self.losses[i], grad = self.loss_grad(self.p, self.F, self.y)
        self.rule.step(self.p, grad)

    def read(self, n: int):
        return self._read(self.losses, self.p, n)
