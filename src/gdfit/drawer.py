"""gdfit-train's figures, drawn by a process of its own beside the run (Linux).

What a run's figures cost the command is mostly waiting for matplotlib: importing it (~0.25 s)
and, in a new process, building the figures' ticks and laying out their text for the first time
(~0.08 s) before drawing. gdfit-train forks a drawer as it starts, before any thread, store or
file is open. The drawer imports matplotlib and gdfit.plots while Hydra composes the config,
draws the run's data as soon as the run knows it (`warm`: the figures' axes are then built and
kept, see plots._Layered) while the run opens its store and fits, and draws the figures when
the run has its result (`draw`) while the run sends its loss curve. A sweep's jobs share one
drawer, and with it the kept views.

The drawer only draws: it returns PNG bytes and the frames' pixels, and the run logs them as
before, byte for byte the same (tests/test_drawer.py). Whatever goes wrong with it (it died,
hung, or gave no answer within WAIT seconds, or a message could not be sent or read) costs
speed only, said in one warning line: the run draws its figures itself, and the drawer is not
asked again. Figures it
cannot draw are drawn again here, which says why. It ignores Ctrl-C (which stops the command)
and dies with the command (PR_SET_PDEATHSIG); the command reaps it as it exits, so its CPU
time is counted in the command's. GDFIT_DRAWER=0 keeps every figure in the command's process.

Messages are pickled, each after its length (8 bytes), on a Unix socket pair; the command's end
waits at most WAIT seconds for any send or read.
"""

import atexit
import ctypes
import os
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from functools import partial

ENV = "GDFIT_DRAWER"
WAIT = 30.0  # seconds a run waits on the drawer (a send, a read) before drawing itself
SENT = 4000  # points of a line sent to draw: fit.png is 600 pixels wide, and plots thins further

_sock: socket.socket | None = None  # to the drawer, while it is trusted
_pid: int | None = None
_warmed = False
_asked = 0  # draw requests sent; each answer carries its request's number
_unread: int | None = None  # the request whose answer is still to be read


def start() -> None:
    """Fork the drawer, if this is Linux and GDFIT_DRAWER is not 0. Call before any thread
    starts: the child runs only its own loop and leaves by os._exit."""
    global _sock, _pid
    if _sock is not None or sys.platform != "linux" or os.environ.get(ENV, "1") == "0":
        return
    ours, theirs = socket.socketpair()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        ours.close()
        code = 1
        try:
            _serve(theirs, parent)
            code = 0
        finally:
            os._exit(code)  # never back into the command's code, its atexit or its finally
    theirs.close()
    ours.settimeout(WAIT)
    _sock, _pid = ours, pid
    atexit.register(stop)


def running() -> bool:
    return _sock is not None


def warm(x, y, target: str, run_name: str, formula: str, steps: int) -> None:
    """Let the drawer build the run's figures from its data while the run goes on: the data
    stand in for the fitted curve, `formula` is the start's, and the loss spans `steps`."""
    global _warmed
    if _sock is not None and not _warmed:  # a sweep's later jobs find the figures built
        _warmed = True
        x, y = (a[_every(len(x))] for a in (x, y))
        _safely(_send, _sock, ("warm", (x, y, target, run_name, formula, steps)))


def draw(**drawn) -> Callable[[], dict]:
    """Start drawing plots.run_figures(**drawn) and return what gives the figures: the
    drawer's, which the caller may do other work while it draws, or else drawn here when
    asked for."""
    global _asked, _unread
    drawn = thinned(drawn)
    if _sock is not None and _unread is not None:  # a job that failed before reading it
        _safely(_answer_to, _unread)
    if _sock is not None:
        _asked += 1
        if _safely(_send, _sock, ("draw", _asked, drawn)):
            _unread = _asked
            return partial(_collect, _asked, drawn)
    return partial(_here, drawn)


def thinned(drawn: dict) -> dict:
    """What the figures can show of `drawn`: each line at most ~SENT points, evenly (a run of
    10^7 points would otherwise send the drawer ~0.7 GB, the data and five frames' curves)."""
    s, t = _every(len(drawn["x"])), _every(len(drawn["losses"]))
    return drawn | {
        "x": drawn["x"][s],
        "y": drawn["y"][s],
        "fitted": drawn["fitted"][s],
        "snapshots": [(step, predicted[s]) for step, predicted in drawn["snapshots"]],
        "steps": drawn["steps"][t],
        "losses": drawn["losses"][t],
    }


def stop() -> None:
    """Close the drawer's socket (it exits when it reads the end) and reap it, killing it if
    it has not gone within a second."""
    global _sock, _pid, _unread
    if _sock is not None:
        _sock.close()
        _sock, _unread = None, None
    if _pid is not None:
        pid, _pid = _pid, None
        deadline = time.monotonic() + 1.0
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.005)


def _every(n: int) -> slice:
    return slice(None, None, max(1, n // SENT))


def _collect(asked: int, drawn: dict) -> dict:
    """The drawer's figures for request `asked`; drawn here if it failed to draw them (which
    then says why), or is gone, hung or too slow."""
    if _sock is not None and _unread == asked:
        answered = _safely(_answer_to, asked)
        if answered and answered[0] == "figures":
            return answered[1]
    return _here(drawn)


def _answer_to(asked: int) -> tuple[str, object]:
    """Read answers up to that of request `asked` (an earlier one, left unread, is dropped)."""
    global _unread
    while True:
        kind, number, answer = _receive(_sock)
        if number == asked:
            _unread = None
            return kind, answer


def _here(drawn: dict) -> dict:
    from gdfit import plots

    return plots.run_figures(**drawn)


def _safely(exchange, *args):
    """exchange(*args), or None after giving the drawer up, said in one line: it failed,
    died, or took more than WAIT seconds. A stop (Ctrl-C) mid-message gives it up too."""
    try:
        return exchange(*args) or True
    except BaseException as error:
        _give_up()
        if not isinstance(error, Exception):
            raise
        if isinstance(error, TimeoutError):
            why = f"gave no answer in {WAIT:g} s"
        elif isinstance(error, EOFError | ConnectionError):
            why = "is gone"
        else:
            why = f"failed ({type(error).__name__})"
        print(
            f"gdfit: warning: the figure drawer {why}; this command draws its figures itself",
            file=sys.stderr,
            flush=True,
        )
        return None


def _give_up() -> None:
    global _pid
    if _pid is not None:
        try:
            os.kill(_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    stop()


def _send(sock: socket.socket, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(struct.pack("!Q", len(data)) + data)


def _receive(sock: socket.socket):
    (size,) = struct.unpack("!Q", _exactly(sock, 8))
    return pickle.loads(_exactly(sock, size))


def _exactly(sock: socket.socket, n: int) -> bytearray:
    data = bytearray(n)
    view, got = memoryview(data), 0
    while got < n:
        received = sock.recv_into(view[got:])
        if not received:
            raise EOFError("the other end closed")
        got += received
    return data


# ---- the drawer's side ----


def _serve(sock: socket.socket, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command's to handle
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)  # not the command's handlers, inherited
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the command ended before prctl took effect
        return
    import gc

    import numpy as np

    from gdfit import plots

    gc.freeze()  # what the command had, and matplotlib: kept to the end
    gc.enable()
    while True:
        try:
            kind, *request = _receive(sock)
        except (EOFError, OSError):
            return  # the command closed its end: it is done
        if kind == "warm":
            x, y, target, run_name, formula, steps = request[0]
            ends = np.array([0, steps - 1]), np.array([1e4, 10.0])  # loss.png: a step each, decades
            try:
                plots.run_figures(x, y, y, target, run_name, formula, *ends, 10.0, [(0, y)])
            except Exception:
                pass  # the run's own figures will say what is wrong, if anything is
            continue
        number, drawn = request
        try:
            answer = ("figures", number, plots.run_figures(**drawn))
        except Exception as error:  # the run draws them again, and that says why
            answer = ("failed", number, repr(error))
        _send(sock, answer)
