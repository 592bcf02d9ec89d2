"""gdfit: fit a polynomial to a function by gradient descent, three ways, tracked in MLflow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gdfit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
