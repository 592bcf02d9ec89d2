"""All seeding happens here, once per run, before any random number is drawn."""

import random

import numpy as np


def seed_everything(seed: int, torch_backend: bool) -> None:
    """Seed Python and numpy, and torch when a torch backend will run (the numpy backend must
    not import torch). gdfit's own draw uses `np.random.default_rng(seed)` explicitly."""
    random.seed(seed)
    np.random.seed(seed)
    if torch_backend:
        import torch

        torch.manual_seed(seed)
