"""Turns `device.name` into the device a backend runs on, failing early when it cannot."""

from gdfit.errors import ConfigError

DEVICES = ("cpu", "cuda", "auto")  # conf/device/<name>.yaml; auto: cuda when available


def resolve_device(name: str, backend) -> str:
    """'cpu' or 'cuda' for backend module `backend` (config.validate has checked that it runs
    on `name`). `auto` picks CUDA when the backend can use it and it is there."""
    if name == "cpu" or "cuda" not in backend.DEVICES:
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if name == "cuda":
        raise ConfigError("device.name", "cuda is not available on this machine; use device=cpu")
    return "cpu"
