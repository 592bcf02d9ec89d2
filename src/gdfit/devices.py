"""Turns `device.name` into the device a backend runs on, failing early when it cannot."""

from gdfit.errors import ConfigError


def resolve_device(name: str, backend: str) -> str:
    """'cpu' or 'cuda'. `auto` picks CUDA when a torch backend can use it."""
    if backend == "numpy":
        if name == "cuda":
            raise ConfigError(
                "device.name", "cuda needs backend=tensor or backend=autograd (numpy runs on cpu)"
            )
        return "cpu"
    if name == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if name == "cuda":
        raise ConfigError("device.name", "cuda is not available on this machine; use device=cpu")
    return "cpu"
