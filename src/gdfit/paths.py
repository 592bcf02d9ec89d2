"""Where gdfit finds its Hydra configs, where its default MLflow store lives, and where Hydra
keeps a sweep's own files."""

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_SOURCE_ROOT = _PACKAGE.parents[1]  # the checkout, when running from src/gdfit


def conf_dir() -> Path:
    """The `conf/` folder: the checkout's own, or the copy a wheel carries inside the package."""
    for candidate in (_SOURCE_ROOT / "conf", _PACKAGE / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"gdfit's conf/ folder is missing (looked beside {_PACKAGE})")


def checkout() -> Path | None:
    """The source checkout gdfit runs from (an editable install or PYTHONPATH=src), if any."""
    if (_SOURCE_ROOT / "conf" / "config.yaml").is_file() and (_SOURCE_ROOT / "src").is_dir():
        return _SOURCE_ROOT
    return None


def project_root() -> Path:
    """The checkout when gdfit runs from one, else the current directory."""
    return checkout() or Path.cwd()


def default_store_dir() -> Path:
    """`mlruns/` of the project: holds `mlflow.db` and the `artifacts/` folder."""
    return project_root() / "mlruns"


def sweeps_dir(uri: str | None) -> str:
    """Where Hydra keeps a sweep's own files (multirun.yaml, Optuna's results, submitit's job
    folders): beside the sqlite store in use, else `multirun/` in the working directory; never
    the code's checkout when the store lives elsewhere. Jobs on other hosts read their pickled
    job from here, so on a cluster it must be on a shared filesystem (or set hydra.sweep.dir)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return str(default_store_dir() / "sweeps")
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).parent / "sweeps")
    return str(Path.cwd() / "multirun")
