"""Where gdfit finds its Hydra configs and where its default MLflow store lives."""

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
