"""Every command against a tracking server that is not there: one line that says so (with any
password in the URI masked), the documented exit code, in seconds. (Before, gdfit-compare and
gdfit-rerun retried for ~4 minutes; test_faults.py covers `http://` without a host.)"""

import socket
import time

import pytest
from conftest import run_command


def dead_uri() -> str:
    with socket.socket() as s:  # a free port that nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"http://bob:hunter2-x7q@127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize(
    ("command", "code", "says"),
    [
        (["gdfit-train", "tracking=server"], 1, "cannot use the MLflow store at"),
        (["gdfit-compare", "--experiment", "gdfit"], 1, "cannot read runs from"),
        (["gdfit-rerun", "0123abc"], 2, "cannot rerun: cannot read runs from"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_a_dead_server_is_one_line_within_seconds(command, code, says, tmp_path):
    uri = dead_uri()
    began = time.monotonic()
    out = run_command(*command, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert time.monotonic() - began < 30
    assert out.returncode == code
    shown = uri.replace("bob:hunter2-x7q", "***")
    assert out.stderr == f"gdfit: error: {says} {shown}: Connection refused\n"
