"""All seeding and determinism settings, in one place, applied once per run before any
random number is drawn or any kernel runs.

Same config and seed on the same machine, backend and device give a bit-identical loss curve
and coefficients: the fit itself draws no random numbers after the start point, numpy's and
PyTorch's CPU kernels are deterministic for a fixed thread count, and for CUDA PyTorch is put
in deterministic mode with the cuBLAS workspace setting it requires.
"""

import os
import random

import numpy as np


def seed_everything(seed: int, torch_backend: bool) -> None:
    """Seed Python and numpy, and torch when a torch backend will run (the numpy backend must
    not import torch). gdfit's own draw uses `np.random.default_rng(seed)` explicitly."""
    random.seed(seed)
    np.random.seed(seed)
    if torch_backend:
        # cuBLAS needs this before its first call to be deterministic (PyTorch's reproducibility
        # notes); it has no effect on the CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        import torch

        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
