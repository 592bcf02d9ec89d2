"""gdfit's benchmark: every number is a median of repetitions measured side by side in one run.

    .venv/bin/python scripts/bench.py            # the full tables (~10 minutes on 2 cores)
    .venv/bin/python scripts/bench.py --quick    # the same code paths in ~1 minute (CI)
    .venv/bin/python scripts/bench.py --device cuda --only loops,scale   # on a GPU machine

1. loops: the example's three loops exactly as the tutorial writes them (src/gdfit/reference.py)
   against gdfit's backends on the same data, start point and steps; µs per step, speed-up,
   and a check that the curves agree. Then every optimizer on every backend, and the
   tutorial's other cells (module backend, Legendre model, dynamic net) as their presets run.
2. processes: the default `gdfit-train` against a minimal hand-written script doing the same
   logging (import MLflow, a new sqlite store, the batched curve, the coefficients, one
   figure), both on new stores, alternating; and sweeps of 12 and 48 jobs against one run,
   all on one existing store. Wall and CPU seconds: on a shared machine the CPU column moves
   least with others' load. Then where a run's seconds go, from a cProfile of the command.
3. batched: `hydra/launcher=batched` sweeps of 256 and 1,024 configs (learning rates x seeds)
   against one default run, whole process to whole process, with the sequential sweep of the
   same 256 beside them; what a config costs inside a program of 256 against its fit alone; and
   where a batched sweep's seconds go (cProfile), with the store calls each child costs.
4. scale: steps per second of the loop from 10^3 to 10^7 points (the setup of a fit, its float32
   copies and the move to a GPU, apart) and the peak memory of a whole run there;
   a 10^6-step run with its curve thinned.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from gdfit import backends, config, models, reference
from gdfit.environment import cpu_name

BIN = Path(sys.executable).parent
console = Console(width=max(120, Console().width))

MINIMAL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import mlflow
    from mlflow.entities import Metric
    from matplotlib.figure import Figure

    x = np.linspace(-np.pi, np.pi, 2000)
    y = np.sin(x)
    X = np.vander(x, 4, increasing=True)
    w = np.random.default_rng(0).standard_normal(4)
    losses = np.empty(5000)
    for t in range(5000):
        r = X @ w - y
        losses[t] = r @ r
        w -= 1e-6 * (X.T @ (2.0 * r))
    client = mlflow.MlflowClient(sys.argv[1])
    run = client.create_run(client.create_experiment("gdfit")).info.run_id
    now = int(time.time() * 1000)
    client.log_batch(run, metrics=[Metric("loss", float(v), now, t) for t, v in enumerate(losses)])
    client.log_batch(run, metrics=[Metric(f"coef_{k}", float(c), now, 0) for k, c in enumerate(w)])
    fig = Figure()
    ax = fig.add_subplot()
    ax.plot(x, y)
    ax.plot(x, X @ w)
    client.log_figure(run, fig, "fit.png")
    client.set_terminated(run)
    """
)


def seconds(sync_device: str, fn, /, *args, **kwargs) -> float:
    """Wall time of fn(*args, **kwargs), waiting for the GPU to finish when there is one."""
    began = time.perf_counter()
    fn(*args, **kwargs)
    if sync_device == "cuda":
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - began


def median_seconds(reps: int, sync_device: str, fn, /, *args, **kwargs) -> float:
    return statistics.median(seconds(sync_device, fn, *args, **kwargs) for _ in range(reps))


def table(title: str, columns: list[str], rows: list[list]) -> None:
    out = Table(title=title, title_justify="left")
    for c in columns:
        out.add_column(c, justify="left" if c == columns[0] else "right")
    for r in rows:
        out.add_row(*(str(v) for v in r))
    console.print(out)


# ---- 1. loops ------------------------------------------------------------------------------


def rule(name: str, **values):
    """The `optimizer.*` settings of rule `name`, as a run composes them."""
    return OmegaConf.structured(config.schema("optimizer", name)(name=name, **values))


def model(name: str):
    return models.build(OmegaConf.structured(config.schema("model", name)(name=name)))


MODEL = model("polynomial")


def gdfit_fit(name, F, y, coef0, steps, dtype, device, optimizer, fitted=MODEL):
    losses = np.empty(steps)

    def keep(start, chunk, params):
        losses[start : start + len(chunk)] = chunk

    coef = backends.fit(
        name,
        fitted,
        F,
        y,
        coef0,
        optimizer,
        steps=steps,
        dtype=dtype,
        device=device,
        chunk=1000,
        on_chunk=keep,
    )
    return losses, coef


def bench_loops(steps: int, reps: int, device: str) -> None:
    x = np.linspace(-np.pi, np.pi, 2000)
    y = np.sin(x)
    X = MODEL.features(x)
    coef0 = np.random.default_rng(0).standard_normal(4)
    sgd = rule("sgd", lr=1e-6)
    rows = []
    for name, dtype in (("numpy", "float64"), ("tensor", "float32"), ("autograd", "float32")):
        dev = "cpu" if name == "numpy" else device
        kw = {} if name == "numpy" else {"dtype": dtype, "device": dev}
        ref_loop = reference.LOOPS[name]
        ref_losses, _ = ref_loop(x, y, coef0, steps=steps, **kw)  # warm-up and reference
        ours_losses, _ = gdfit_fit(name, X, y, coef0, steps, dtype, dev, sgd)
        ref_t, ours_t = [], []
        for _ in range(reps):  # alternate, so drifts of the machine hit both alike
            ref_t.append(seconds(dev, ref_loop, x, y, coef0, steps=steps, **kw))
            ours_t.append(seconds(dev, gdfit_fit, name, X, y, coef0, steps, dtype, dev, sgd))
        ref_us, ours_us = (statistics.median(t) / steps * 1e6 for t in (ref_t, ours_t))
        rel = float(np.max(np.abs(ours_losses / ref_losses - 1)))
        bound = 1e-12 if dtype == "float64" else 1e-4
        check = f"{rel:.1e} {'ok' if rel <= bound else 'FAIL'} (<= {bound:g})"
        rows.append(
            [
                f"{name} ({dtype}, {dev})",
                f"{ref_us:.1f}",
                f"{ours_us:.1f}",
                f"{ref_us / ours_us:.1f}x",
                check,
            ]
        )
    table(
        f"Loops: µs per step, {steps} steps, 2,000 points (median of {reps})",
        ["backend", "example's loop", "gdfit", "speed-up", "curves agree (max rel. diff)"],
        rows,
    )

    optimizers = {
        "sgd": sgd,
        "momentum": rule("momentum", lr=1e-6, momentum=0.9, nesterov=False),
        "adam": rule("adam", lr=1e-2, betas=[0.9, 0.999], eps=1e-8),
        "rmsprop": rule("rmsprop", lr=1e-3),
    }
    rows = []
    torch_ways = (("tensor", "float32"), ("autograd", "float32"), ("module", "float32"))
    for name, dtype in (("numpy", "float64"), *torch_ways):
        dev = "cpu" if name == "numpy" else device
        row = [f"{name} ({dtype}, {dev})"]
        for opt in optimizers.values():
            gdfit_fit(name, X, y, coef0, min(steps, 200), dtype, dev, opt)
            t = median_seconds(reps, dev, gdfit_fit, name, X, y, coef0, steps, dtype, dev, opt)
            row.append(f"{t / steps * 1e6:.1f}")
        rows.append(row)
    table(
        "Optimizers: µs per step (autograd: all but sgd are torch.optim; module: all are)",
        ["backend", *optimizers],
        rows,
    )

    # The tutorial's other cells, each as its preset runs it (conf/experiment/tutorial_*.yaml).
    legendre3, dynamic = model("legendre3"), model("dynamic")
    ways = [
        ("polynomial_nn: module, sgd", "module", "float32", MODEL, coef0, sgd),
        (
            "polynomial_optim: module, rmsprop",
            "module",
            "float32",
            MODEL,
            coef0,
            optimizers["rmsprop"],
        ),
        (
            "polynomial_module: module, torch.optim.SGD",
            "module",
            "float32",
            MODEL,
            coef0,
            rule("momentum", lr=1e-6, momentum=0.0),
        ),
    ]
    start = np.array([0.0, -1.0, 0.0, 0.3])
    for name, dtype in (("numpy", "float64"), ("tensor", "float32"), ("autograd", "float32")):
        legendre_sgd = rule("sgd", lr=5e-6)
        ways.append(
            (f"custom_function: legendre3, {name}", name, dtype, legendre3, start, legendre_sgd)
        )
    p0 = np.random.default_rng(0).standard_normal(5)
    for name in ("autograd", "module"):
        ways.append(
            (
                f"dynamic_net: dynamic, {name}",
                name,
                "float32",
                dynamic,
                p0,
                rule("momentum", lr=1e-8, momentum=0.9),
            )
        )
    rows = []
    for what, name, dtype, fitted, p, opt in ways:
        dev = "cpu" if name == "numpy" else device
        F = fitted.features(x)
        gdfit_fit(name, F, y, p, min(steps, 200), dtype, dev, opt, fitted)  # warm-up
        t = median_seconds(reps, dev, gdfit_fit, name, F, y, p, steps, dtype, dev, opt, fitted)
        rows.append([what, f"{dtype}, {dev}", f"{t / steps * 1e6:.1f}"])
    table(
        "The tutorial's other cells: µs per step",
        ["cell: model, backend", "dtype, device", "gdfit"],
        rows,
    )


# ---- 2. whole processes --------------------------------------------------------------------


# Runs one command and reports its wall time and peak memory. A child's ru_maxrss starts from
# its parent's high-water mark (it survives fork and exec), so the measuring parent must be this
# small launcher, never the benchmark process itself, which holds large arrays.
LAUNCHER = """
import os, subprocess, sys, time
began = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
cpu = usage.ru_utime + usage.ru_stime
print(time.perf_counter() - began, usage.ru_maxrss, os.waitstatus_to_exitcode(status), cpu)
sys.stderr.write(err.decode(errors="replace"))
"""


class Timed(NamedTuple):
    seconds: float  # wall
    peak: int  # MiB resident
    cpu: float  # seconds of CPU, user and system: what other work on the machine inflates least


def timed_process(command: list[str], cwd: Path, env: dict | None = None) -> Timed:
    """Wall seconds, peak resident memory and CPU seconds of one process."""
    out = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=None if env is None else os.environ | env,
    )
    seconds, maxrss_kib, code, cpu = out.stdout.split()
    if int(code) != 0:
        sys.exit(f"bench: {' '.join(command)} failed:\n{out.stderr}")
    return Timed(float(seconds), int(maxrss_kib) // 1024, float(cpu))


def fresh_uri(folder: Path, name: str) -> str:
    path = folder / name
    path.mkdir(parents=True)
    return f"sqlite:///{path / 'mlflow.db'}"


QUIET = "train.log_every=1000000"


def sweep_command(jobs: int, uri: str, launcher: str) -> list[str]:
    seeds = ",".join(str(s) for s in range(jobs))
    extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    train = str(BIN / "gdfit-train")
    return [train, "-m", *extra, f"train.seed={seeds}", f"tracking.uri={uri}", QUIET]


def bench_processes(reps: int, sweeps: list[tuple[int, str]], folder: Path) -> None:
    """Whole commands as a user meets them, alternating so that the machine's drifts hit all
    alike. The default run against the minimal script, each on a new store (what a first run
    costs); then one run and each sweep on one existing store, created once before any is
    timed (a store is made once, not per sweep: creating it inside a sweep and its one run
    alike would flatter the ratio)."""
    minimal = folder / "minimal.py"
    minimal.write_text(MINIMAL_SCRIPT)
    train = str(BIN / "gdfit-train")
    shared = fresh_uri(folder, "shared")
    timed_process([train, f"tracking.uri={shared}", QUIET], folder)  # the store, once
    times: dict[str, list[Timed]] = {"ours": [], "mini": [], "one": []}
    times |= {f"{n}-{launcher}": [] for n, launcher in sweeps}
    for i in range(reps):
        times["mini"].append(
            timed_process([sys.executable, str(minimal), fresh_uri(folder, f"m{i}")], folder)
        )
        times["ours"].append(
            timed_process([train, f"tracking.uri={fresh_uri(folder, f'g{i}')}", QUIET], folder)
        )
        for n, launcher in sweeps:
            times["one"].append(timed_process([train, f"tracking.uri={shared}", QUIET], folder))
            command = sweep_command(n, shared, launcher)
            times[f"{n}-{launcher}"].append(timed_process(command, folder))
    m = {k: statistics.median(t.seconds for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t.cpu for t in v) for k, v in times.items()}
    targets = {(12, "basic"): "<= 3.5x", (48, "basic"): "<= 9x"}

    def row(what: str, key: str, base: str, name: str, target: str = "") -> list[str]:
        return [
            what,
            f"{m[key]:.2f}",
            f"{m[key] / m[base]:.2f}x {name}".strip(),
            f"{cpu[key]:.2f}",
            f"{cpu[key] / cpu[base]:.2f}x",
            target,
        ]

    rows = [
        row("default gdfit-train, new store", "ours", "mini", "minimal", "<= 0.9x"),
        row("minimal hand-written script, new store", "mini", "mini", ""),
        row("one default run, existing store", "one", "one", ""),
    ]
    for n, launcher in sweeps:
        how = "sequential" if launcher == "basic" else "joblib, n_jobs=2"
        key = f"{n}-{launcher}"
        rows.append(
            row(
                f"{n}-job sweep ({how}), same store",
                key,
                "one",
                "one run",
                targets.get((n, launcher), ""),
            )
        )
    table(
        f"Whole processes: wall seconds (median of {reps}; the sweeps against one run measured "
        "beside each on the same existing store; CPU: user + system seconds)",
        ["what", "seconds", "ratio", "CPU s", "CPU ratio", "target"],
        rows,
    )


# Where a run's seconds go, read from a cProfile of the whole command (the code keeps no timers
# of its own): the cumulative seconds of the functions that do each part.
SECTIONS = {
    "open the store": [("gdfit/store.py", "open_experiment")],
    "create the run, its params": [
        ("gdfit/client.py", "create_run"),
        ("gdfit/runlog.py", "run_params"),
    ],
    "the fit (the loop)": [("gdfit/backends/__init__.py", "fit")],
    "figures": [
        ("gdfit/plots.py", "run_figures"),
        ("gdfit/runlog.py", "log_figure"),
        ("gdfit/runlog.py", "log_images"),
    ],
    "files, curve, metrics, end": [("gdfit/runlog.py", "close"), ("gdfit/runlog.py", "send_files")],
    # a single run's model; a sweep logs its best job's at its end (per job: that over the jobs)
    "the fit as an MLflow model": [("gdfit/modellog.py", "log")],
    "Hydra composing the job": [("hydra/_internal/config_loader_impl.py", "load_sweep_config")],
}


def profiled(command: list[str], folder: Path, name: str) -> dict[tuple[str, str], float]:
    """(file, function) -> cumulative seconds, from a cProfile of `command` (a console script)."""
    import pstats

    out = folder / f"{name}.prof"
    subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(out), *command],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    found: dict[tuple[str, str], float] = {}
    for (path, _, function), row in pstats.Stats(str(out)).stats.items():  # type: ignore[attr-defined]
        key = (path.replace("\\", "/"), function)
        found[key] = found.get(key, 0.0) + row[3]  # cumulative time
    return found


def section_seconds(found: dict[tuple[str, str], float], parts: list[tuple[str, str]]) -> float:
    total = 0.0
    for tail, function in parts:
        total += sum(t for (path, f), t in found.items() if f == function and path.endswith(tail))
    return total


def bench_breakdown(jobs: int, folder: Path) -> None:
    """Where the seconds go: a run on an existing store, and a job of a sequential sweep on it
    (the sweep's seconds in each part over its jobs), from cProfile (which slows Python code
    down, so these seconds are larger than unprofiled ones; their shares are what to read)."""
    train = str(BIN / "gdfit-train")
    uri = fresh_uri(folder, "breakdown")
    timed_process([train, f"tracking.uri={uri}", QUIET], folder)  # the store exists from now
    run = profiled([train, f"tracking.uri={uri}", QUIET], folder, "run")
    sweep = profiled(sweep_command(jobs, uri, "basic"), folder, "sweep")
    rows = [
        [name, f"{section_seconds(run, parts):.3f}", f"{section_seconds(sweep, parts) / jobs:.3f}"]
        for name, parts in SECTIONS.items()
    ]
    rows.append(
        [
            "the whole process (profiled)",
            f"{section_seconds(run, [('gdfit/cli.py', 'main')]):.3f}",
            f"{section_seconds(sweep, [('gdfit/cli.py', 'main')]) / jobs:.3f}",
        ]
    )
    table(
        f"Per-run breakdown under cProfile: seconds (a sweep job: the {jobs}-job sweep's "
        "seconds in each part over its jobs)",
        ["part", "a run, existing store", "a sweep job"],
        rows,
    )


# ---- 3. batched sweeps ------------------------------------------------------------------


def grid_command(side: int, uri: str, batched: bool) -> list[str]:
    """A side x side grid of learning rates (all stable, 2.2e-7 apart) and seeds."""
    rates = ",".join(f"{(i + 1) * 3.4e-6 / side:.3g}" for i in range(side))
    launcher = ["hydra/launcher=batched"] if batched else []
    seeds = f"train.seed=range({side})"
    return [str(BIN / "gdfit-train"), "-m", *launcher, f"optimizer.lr={rates}", seeds,
            f"tracking.uri={uri}", QUIET]  # fmt: skip


def bench_batched_processes(sides: list[int], sequential: int | None, folder: Path) -> None:
    """Whole batched sweeps against one default run on the same existing store, each measured
    beside a run of its own (the machine's drifts hit both alike)."""
    train = str(BIN / "gdfit-train")
    uri = fresh_uri(folder, "batched")
    timed_process([train, f"tracking.uri={uri}", QUIET], folder)  # the store, once
    targets = {16: "<= 6x", 32: "<= 20x"}
    rows = []
    runs = [(side, True) for side in sides] + ([(sequential, False)] if sequential else [])
    for side, batched in runs:
        one = timed_process([train, f"tracking.uri={uri}", QUIET], folder)
        sweep = timed_process(grid_command(side, uri, batched), folder)
        how = "batched" if batched else "sequential (basic launcher)"
        rows.append(
            [
                f"{side * side} configs, {how}",
                f"{sweep.seconds:.1f}",
                f"{one.seconds:.2f}",
                f"{sweep.seconds / one.seconds:.1f}x",
                f"{sweep.cpu / one.cpu:.1f}x",
                f"{sweep.peak}",
                targets.get(side, "") if batched else "",
            ]
        )
    table(
        "Batched sweeps, whole processes: a grid of learning rates x seeds (5,000 steps each) "
        "against one default run measured beside it on the same existing store",
        ["sweep", "seconds", "one run s", "ratio", "CPU ratio", "peak MiB", "target"],
        rows,
    )


def bench_batched_fit(k: int, reps: int) -> None:
    """A config's share of a program of k configs against its fit alone, per backend/dtype."""
    from hydra import compose, initialize_config_dir

    from gdfit import batchfit, train
    from gdfit.paths import conf_dir

    config.register()
    rows = []
    for backend, dtype in [("numpy", "float64"), ("tensor", "float32"), ("numpy", "float32")]:
        with initialize_config_dir(str(conf_dir()), version_base="1.3"):
            cfgs = [
                compose("config", [f"backend={backend}", f"backend.dtype={dtype}",
                                   f"optimizer.lr={(i % 16 + 1) * 2e-7:.3g}", f"train.seed={i}"])
                for i in range(k)
            ]  # fmt: skip
        problems = [train.prepare(c) for c in cfgs]
        steps = cfgs[0].train.steps

        def batch(problems=problems, backend=backend, dtype=dtype, steps=steps) -> None:
            held = batchfit.Batch(problems, steps)
            batchfit.fit(problems, backend, dtype, "cpu", steps, 1000, [], held)

        def alone(problem=problems[0]) -> None:
            train.fit(problem, lambda start, losses, params: None, [])

        together = median_seconds(reps, "cpu", batch)
        single = median_seconds(reps, "cpu", alone)
        form = "Gram" if batchfit.gram_form(dtype) else "residual"
        rows.append(
            [
                f"{backend} {dtype} ({form} form)",
                f"{single * 1e3:.1f}",
                f"{together * 1e3:.0f}",
                f"{together / k * 1e3:.2f}",
                f"{together / k / single:.3f}",
                "<= 1/3" if (backend, dtype) == ("numpy", "float64") else "",
            ]
        )
    table(
        f"The fit itself: one config alone against a program of {k} configs ({steps} steps)",
        ["backend", "alone ms", f"{k} together ms", "a config's share ms", "share / alone",
         "target"],
        rows,
    )  # fmt: skip


BATCHED_SECTIONS = {
    "Hydra composing (sweeper's check + launcher)": [
        ("hydra/_internal/config_loader_impl.py", "load_sweep_config")
    ],
    "the programs (the fit)": [("gdfit/batchfit.py", "fit")],
    "writing the children": [("gdfit/batched.py", "write")],
    "  of which figures": [("gdfit/plots.py", "run_figures"), ("gdfit/runlog.py", "log_images")],
    "the sweep's summary and figures": [("gdfit/sweeps.py", "finish")],
}


def bench_batched_breakdown(side: int, folder: Path) -> None:
    """Where a batched sweep's seconds go, from a cProfile of the command, and how many store
    calls each child costs (gdfit.client.Client._send is every call gdfit makes)."""
    uri = fresh_uri(folder, "batched-profile")
    timed_process([str(BIN / "gdfit-train"), f"tracking.uri={uri}", QUIET], folder)
    found = profiled(grid_command(side, uri, True), folder, "batched")
    whole = section_seconds(found, [("gdfit/cli.py", "main")])
    rows = []
    for name, parts in BATCHED_SECTIONS.items():
        spent = section_seconds(found, parts)
        rows.append([name, f"{spent:.2f}", f"{spent / whole:.0%}"])
    rows.append(["the whole process (profiled)", f"{whole:.2f}", "100%"])
    table(
        f"Where a batched sweep of {side * side} configs goes, under cProfile (seconds)",
        ["part", "seconds", "share"],
        rows,
    )
    import pstats

    stats = pstats.Stats(str(folder / "batched.prof")).stats  # type: ignore[attr-defined]
    calls = sum(  # every write goes through Client._send but a run's creation
        row[1]
        for (path, _, f), row in stats.items()
        if f in ("_send", "create_run") and path.endswith("gdfit/client.py")
    )
    console.print(
        f"store writes gdfit made: {calls}, {calls / side**2:.1f} per child (the parent's included)"
    )


# ---- 4. scale ------------------------------------------------------------------------------


def bench_scale(sizes: list[int], long_steps: int, reps: int, device: str, folder: Path) -> None:
    rows = []
    for n in sizes:
        x = np.linspace(-np.pi, np.pi, n)
        X, y = MODEL.features(x), np.sin(x)
        coef0 = np.random.default_rng(0).standard_normal(4)
        steps = int(max(5, min(2000, 2e7 // n)))  # the fewest timed
        # The loss is a sum over points, so the stable rate shrinks as 1/n: keep lr*n fixed.
        opt = rule("sgd", lr=1e-6 * 2000 / n)
        rates, timed, setups = [], [], []
        for name, dtype in (("numpy", "float64"), ("tensor", "float32"), ("autograd", "float32")):
            dev = "cpu" if name == "numpy" else device
            gdfit_fit(name, X, y, coef0, 2, dtype, dev, opt)  # warm-up: imports, allocations
            # A fit of one step and one of k steps: their difference is the loop alone, and
            # what the one step leaves is the setup (float32 copies, the move to a GPU). k grows
            # until the loop outweighs the setup's noise (a GPU's steps are cheap, its setup not).
            one = median_seconds(reps, dev, gdfit_fit, name, X, y, coef0, 1, dtype, dev, opt)
            k = steps
            while True:
                t = median_seconds(reps, dev, gdfit_fit, name, X, y, coef0, k, dtype, dev, opt)
                if t - one >= max(one, 0.05) or t > 2.0:  # or enough seconds spent
                    break
                k *= 4
            timed.append(f"{k:,}")
            if t - one <= 0.1 * one:  # the loop never stood out of the setup's noise
                rates.append("n/a")
                setups.append("n/a")
                continue
            per_step = (t - one) / (k - 1)
            rates.append(f"{1 / per_step:,.0f}")
            setups.append(f"{max(one - per_step, 0.0):.3f}")
        row = [f"{n:,}", " / ".join(timed), *rates, " / ".join(setups[1:])]
        del X, x, y
        uri = fresh_uri(folder, f"scale{n}")
        peak = timed_process(
            [
                str(BIN / "gdfit-train"),
                f"data.n_points={n}",
                f"optimizer.lr={opt.lr}",
                "train.steps=5",
                f"tracking.uri={uri}",
            ],
            folder,
        ).peak
        row.append(f"{peak:,}")
        rows.append(row)
    table(
        f"Scale: steps per second of the loop (median of {reps}), the setup of a fit apart; "
        "peak memory of a whole 5-step numpy run",
        [
            "n_points",
            "steps timed (numpy/tensor/autograd)",
            "numpy",
            "tensor",
            "autograd",
            "setup s (tensor/autograd)",
            "peak MiB (gdfit-train)",
        ],
        rows,
    )
    uri = fresh_uri(folder, "long")
    seconds, peak, _ = timed_process(
        [
            str(BIN / "gdfit-train"),
            f"train.steps={long_steps}",
            "train.log_every=100000000",
            f"tracking.uri={uri}",
        ],
        folder,
    )
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("gdfit").experiment_id])
    points = len(client.get_metric_history(run.info.run_id, "loss"))
    table(
        "A long run: numpy, default settings",
        ["steps", "wall seconds", "loop seconds", "loss points logged", "peak MiB"],
        [
            [
                f"{long_steps:,}",
                f"{seconds:.1f}",
                f"{run.data.metrics['train_seconds']:.1f}",
                f"{points:,}",
                f"{peak:,}",
            ]
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition (CI)")
    parser.add_argument("--device", default="cpu", help="device of the torch backends")
    parser.add_argument(
        "--only", default="loops,processes,batched,scale", help="comma-separated parts"
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))
    console.print(
        f"[bold]gdfit benchmark[/] on {cpu_name()}, {os.cpu_count()} cores, "
        f"{platform.platform()}, Python {platform.python_version()}"
        f"{' (--quick)' if args.quick else ''}"
    )
    if args.device == "cuda":
        import torch

        console.print(f"GPU: {torch.cuda.get_device_name()}")
    with tempfile.TemporaryDirectory(prefix="gdfit-bench-") as tmp:
        folder = Path(tmp)
        if "loops" in parts:
            bench_loops(
                steps=500 if args.quick else 5000, reps=1 if args.quick else 5, device=args.device
            )
        if "processes" in parts:
            sweeps = (
                [(3, "basic"), (3, "joblib")]
                if args.quick
                else [(12, "basic"), (48, "basic"), (12, "joblib")]
            )
            bench_processes(reps=1 if args.quick else 3, sweeps=sweeps, folder=folder)
            bench_breakdown(jobs=3 if args.quick else 12, folder=folder)
        if "batched" in parts:
            bench_batched_processes(
                sides=[4] if args.quick else [16, 32],
                sequential=None if args.quick else 16,
                folder=folder,
            )
            bench_batched_fit(k=16 if args.quick else 256, reps=1 if args.quick else 3)
            bench_batched_breakdown(side=4 if args.quick else 16, folder=folder)
        if "scale" in parts:
            sizes = [10**3, 10**5] if args.quick else [10**k for k in range(3, 8)]
            bench_scale(
                sizes,
                long_steps=10**5 if args.quick else 10**6,
                reps=1 if args.quick else 3,
                device=args.device,
                folder=folder,
            )


if __name__ == "__main__":
    main()
