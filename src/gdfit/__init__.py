"""gdfit: fit a polynomial to a function by gradient descent, three ways, tracked in MLflow.

From Python or Jupyter (see gdfit.api):

    import gdfit
    result = gdfit.fit(backend="tensor", lr=2e-6)       # one tracked run
    lrs = gdfit.sweep(lr=[5e-7, 1e-6, 2e-6])            # a parent run with a child per job
    gdfit.runs(experiment="gdfit")                       # runs read back, as a DataFrame
"""

import logging
import warnings

from gdfit.environment import VERSION as __version__
from gdfit.errors import ConfigError, GdfitError

# A first run on a machine would print matplotlib's "generated new fontManager" (INFO) through
# the stdout logging a run sets up.
logging.getLogger("matplotlib.font_manager").setLevel(logging.WARNING)
# Importing MLflow imports tqdm.auto, which in a Jupyter kernel warns that ipywidgets is missing
# (and falls back to the text bar gdfit shows there) or that it uses the widget: noise in a cell.
# Set here, before any module of gdfit imports MLflow (gdfit.train does, through gdfit.runlog).
warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")
warnings.filterwarnings("ignore", message="Using `tqdm.autonotebook.tqdm`", module="tqdm")

__all__ = ["__version__", "ConfigError", "Fit", "GdfitError", "Runs", "fit", "runs", "sweep"]


def __getattr__(name: str):
    """The API on first use: `import gdfit` stays light for the commands, which import only
    the modules they need (Hydra, MLflow and matplotlib take seconds)."""
    if name in ("fit", "sweep", "runs", "Fit", "Runs"):
        from gdfit import api

        return getattr(api, name)
    raise AttributeError(f"module 'gdfit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
