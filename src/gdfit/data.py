"""The problem's data: evenly spaced sample points and the target function's values there.

Everything here is float64 numpy; backends convert to their own dtype and device.
"""

import numpy as np
from omegaconf import DictConfig

TARGETS = {"sin": np.sin, "cos": np.cos, "exp": np.exp}  # data.target -> the function fitted


def make_data(data: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    """x: (n_points,) evenly spaced in [x_min, x_max]; y = target(x)."""
    x = np.linspace(data.x_min, data.x_max, data.n_points)
    return x, TARGETS[data.target](x)
