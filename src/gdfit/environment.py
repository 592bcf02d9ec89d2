"""What a run ran on: package versions, machine, git state and command line.

Recorded with every run (tags and environment.json) so that `gdfit-rerun` can say why a rerun
might not match. Versions come from package metadata, so the numpy backend still never
imports torch.
"""

import os
import platform
import subprocess
import sys
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from gdfit.paths import checkout

PACKAGES = ("numpy", "torch", "mlflow", "hydra-core", "omegaconf", "gdfit")
try:
    VERSION = version("gdfit")  # gdfit's own, as `gdfit.__version__` gives it
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.0.0+source"


def variables() -> dict[str, str]:
    """This process's environment variables, copied so that no other thread can break the copy:
    MLflow's telemetry thread sets and removes one while a run starts, and `dict(os.environ)`,
    `{**os.environ}` or `.items()` then meet a name whose value is gone (KeyError)."""
    values = {name: os.environ.get(name) for name in list(os.environ)}
    return {name: value for name, value in values.items() if value is not None}


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state() -> dict[str, str]:
    """Commit of the checkout gdfit runs from, whether it has uncommitted changes, and the diff.

    MLflow's own git tag looks at sys.argv[0], which for the console script is a file inside the
    (git-ignored) virtualenv, so gdfit asks git about its own source tree instead.
    """
    root = checkout()
    commit = _git("rev-parse", "HEAD", cwd=root) if root else None
    if root is None or not commit:
        return {}
    diff = _git("diff", "HEAD", "--", ".", cwd=root) or ""
    return {"commit": commit.strip(), "dirty": str(bool(diff)).lower(), "diff": diff}


_sweep_git: dict[str, str] | None = None  # set while a sweep runs its jobs in this process


def shared_git_state() -> dict[str, str]:
    """`git_state()`, or the one its sweep took when the job runs in the sweep's own process
    (Hydra's basic launcher): the code such a job runs is the code imported when the sweep
    started, and asking git again costs each job two subprocesses."""
    return git_state() if _sweep_git is None else _sweep_git


def share_git_state(state: dict[str, str] | None) -> None:
    """Make `state` what this process's jobs record (None: ask git each time again)."""
    global _sweep_git
    _sweep_git = state


@cache  # installed packages do not change under a running process
def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(device: str, overrides: list[str], git: dict[str, str]) -> dict:
    """Everything environment.json holds; `git` is `git_state()` (its diff travels as its own
    artifact)."""
    info: dict[str, Any] = {
        "versions": dict(versions()),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "device": device,
        "command": sys.argv,
        "overrides": overrides,
    }
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    info["git"] = {"commit": git.get("commit"), "dirty": git.get("dirty") == "true"}
    return info


def git_tags(git: dict[str, str]) -> dict[str, str]:
    """MLflow's commit tag and gdfit's dirty flag for `git_state()`; none outside a checkout."""
    if not git:
        return {}
    return {"mlflow.source.git.commit": git["commit"], "gdfit.git_dirty": git["dirty"]}


def tags(info: dict) -> dict[str, str]:
    """The run tags drawn from `collect` (git's come from `git_tags`): versions, machine and
    the command."""
    out = {f"gdfit.env.{k}": v for k, v in info["versions"].items()}
    out |= {"gdfit.platform": info["platform"], "gdfit.cpu": info["cpu"]}
    if "gpu" in info:
        out["gdfit.gpu"] = info["gpu"]
    out["gdfit.command"] = " ".join(info["command"])[:5000]
    out["gdfit.overrides"] = " ".join(info["overrides"])[:5000]
    return out
