"""What a run ran on: gdfit's git state (and, for reproducibility, the versions around it)."""

import subprocess
from pathlib import Path

from gdfit.paths import checkout


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
    commit = root and _git("rev-parse", "HEAD", cwd=root)
    if not commit:
        return {}
    diff = _git("diff", "HEAD", "--", ".", cwd=root) or ""
    return {"commit": commit.strip(), "dirty": str(bool(diff)).lower(), "diff": diff}
