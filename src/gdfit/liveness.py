"""Which process a run belongs to, and whether that process is still there.

A run that ends by a handled signal or an error is closed by gdfit itself. What cannot be
handled (SIGKILL, a power cut, a lost server) leaves it RUNNING; each run therefore carries
the identity of its process (tag `gdfit.process`), and a later command on the same machine can
tell a run whose process is gone from one that is still going, and end it KILLED.
"""

import os
import socket
from pathlib import Path

PROCESS_TAG = "gdfit.process"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _start_ticks(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), or None if there is no such
    process. With the boot id it tells a live process from a later one given the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22; the name before ")" may hold spaces


def identity(pid: int | None = None) -> str:
    """`host:boot:pid:start` of this process (or of `pid`)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{_boot_id()}:{pid}:{_start_ticks(pid) or '?'}"


def is_gone(recorded: str) -> bool | None:
    """True when the process `recorded` names has ended, False when it runs, None when this
    machine cannot tell (another host, or no /proc)."""
    try:
        host, boot, pid, start = recorded.rsplit(":", 3)
    except ValueError:
        return None
    if host != socket.gethostname() or start == "?" or not Path("/proc/self/stat").exists():
        return None
    if boot != _boot_id():
        return True  # the machine has restarted since
    return _start_ticks(int(pid)) != start
