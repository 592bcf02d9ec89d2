"""The rest of "Learning PyTorch with Examples": the module backend, RMSprop, the Legendre model
and the dynamic net, each against the tutorial's own cell (tests/tutorial_cells.py) from the
same start point; the presets; the whole tutorial as one sweep, rerun bit for bit."""

import contextlib
import math
import random

import numpy as np
import pytest
import torch
import tutorial_cells as cells
from conftest import run_command
from fitting import rule
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from gdfit import api, backends, config, models
from gdfit.errors import ConfigError

STEPS = 300
# The same arithmetic in the same precision parts only by rounding: here the powers of x are
# rounded from float64, there computed in float32.
TOLERANCE = {"float64": 1e-12, "float32": 1e-5}


def build(name: str, **settings):
    return models.build(OmegaConf.structured(config.schema("model", name)(name=name, **settings)))


def tutorial_data(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """The cells' x and sin(x), computed by torch in `dtype` as they are: gdfit's own float64
    linspace differs from float32's by an ulp here and there, which the dynamic net's loss,
    jumping between orders, would amplify a hundredfold."""
    x = torch.linspace(-math.pi, math.pi, 2000, dtype=getattr(torch, dtype))
    return x.double().numpy(), torch.sin(x).double().numpy()


def gdfit_curve(backend, model, start, settings, dtype, steps=STEPS):
    """gdfit's fit of `model` (a Model) from `start` on the cells' data: (the loss before each
    update, final parameters), through the chunk loop of a run (an odd chunk size tests its
    seams)."""
    x, y = tutorial_data(dtype)
    losses = []
    params = backends.fit(
        backend,
        model,
        model.features(x),
        y,
        np.asarray(start, dtype=np.float64),
        settings,
        steps=steps,
        dtype=dtype,
        device="cpu",
        chunk=97,
        on_chunk=lambda first, chunk, params: losses.append(chunk.copy()),
    )
    return np.concatenate(losses), params


@contextlib.contextmanager
def torch_default(dtype: str):
    """The tutorial's cells use torch's default dtype; float64 runs them in double."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def assert_same_curve(ours, reference, dtype, rtol=None):
    (losses, params), (_, ref_losses, ref_params) = ours, reference
    rtol = rtol or TOLERANCE[dtype]
    np.testing.assert_allclose(losses, ref_losses, rtol=rtol)
    np.testing.assert_allclose(params, ref_params, rtol=rtol * 10, atol=rtol * 1e-2)
    assert ref_losses[-1] < ref_losses[0]  # the cell really trains over these steps


# Each cell, the gdfit way that reproduces it: (backend, rule settings).
POLYNOMIAL_CELLS = {
    "polynomial_nn": (cells.polynomial_nn, "module", ("sgd", {"lr": 1e-6})),
    "polynomial_optim": (cells.polynomial_optim, "module", ("rmsprop", {"lr": 1e-3})),
    "polynomial_module": (
        cells.polynomial_module,
        "module",
        ("momentum", {"lr": 1e-6, "momentum": 0.0}),
    ),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", POLYNOMIAL_CELLS)
def test_module_backend_follows_the_torch_nn_cells(cell, dtype):
    run_cell, backend, (name, values) = POLYNOMIAL_CELLS[cell]
    torch.manual_seed(1)  # the cell draws its own start: Linear's init, or torch.randn
    with torch_default(dtype):
        reference = run_cell(STEPS)
    ours = gdfit_curve(backend, build("polynomial"), reference[0], rule(name, **values), dtype)
    assert_same_curve(ours, reference, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["autograd", "tensor", "numpy"])
def test_legendre3_follows_the_custom_function_cell(backend, dtype):
    reference = cells.polynomial_custom_function(STEPS, dtype=getattr(torch, dtype))
    ours = gdfit_curve(backend, build("legendre3"), reference[0], rule("sgd", lr=5e-6), dtype)
    assert_same_curve(ours, reference, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dynamic_module_follows_the_dynamic_net_cell(dtype):
    torch.manual_seed(1)
    random.seed(5)  # the cell draws its orders from Python's global generator
    with torch_default(dtype):
        reference = cells.dynamic_net(STEPS)
    settings = rule("momentum", lr=1e-8, momentum=0.9)
    ours = gdfit_curve("module", build("dynamic", seed=5), reference[0], settings, dtype)
    assert_same_curve(ours, reference, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dynamic_autograd_follows_the_dynamic_net_cell_under_plain_sgd(dtype):
    """Without momentum a zero gradient (autograd's e on a step with no x^4) and no gradient
    (the module's) move nothing alike; with momentum they part, as the model's notes say."""
    torch.manual_seed(2)
    random.seed(7)
    with torch_default(dtype):
        reference = cells.dynamic_net(STEPS, lr=1e-8, momentum=0.0)
    settings = rule("sgd", lr=1e-8)
    ours = gdfit_curve("autograd", build("dynamic", seed=7), reference[0], settings, dtype)
    assert_same_curve(ours, reference, dtype)


def test_dynamic_draws_the_same_orders_again_and_others_for_another_seed():
    start = np.random.default_rng(0).standard_normal(5)
    settings = rule("momentum", lr=1e-8, momentum=0.9)
    for backend in ("autograd", "module"):
        first = gdfit_curve(backend, build("dynamic", seed=3), start, settings, "float32", 100)
        again = gdfit_curve(backend, build("dynamic", seed=3), start, settings, "float32", 100)
        other = gdfit_curve(backend, build("dynamic", seed=4), start, settings, "float32", 100)
        assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
        assert not np.array_equal(first[0], other[0])


def test_legendre3_hand_gradient_is_the_custom_functions():
    model = build("legendre3")
    data_x, data_y = tutorial_data("float64")
    F = model.features(data_x)
    for p in ([0.0, -1.0, 0.0, 0.3], [0.2, -1.7, 0.05, 0.25]):
        loss, grad = model.loss_grad(np.array(p), F, data_y)
        w = torch.tensor(p, dtype=torch.float64, requires_grad=True)
        x, y = torch.as_tensor(data_x), torch.as_tensor(data_y)
        reference = (w[0] + w[1] * cells.LegendrePolynomial3.apply(w[2] + w[3] * x) - y).pow(2)
        reference.sum().backward()
        np.testing.assert_allclose(loss, reference.sum().item(), rtol=1e-13)
        np.testing.assert_allclose(grad, w.grad.numpy(), rtol=1e-11, atol=1e-9)


def test_dynamic_optimum_is_the_least_mean_loss_over_its_three_forms():
    model = build("dynamic")
    data_x, data_y = tutorial_data("float64")
    F = model.features(data_x)
    best = model.optimum(F, data_y)
    # Written apart from the model: the three forms' losses, their mean, its gradient at best.
    w = torch.tensor(best, requires_grad=True)
    x, y = torch.as_tensor(data_x), torch.as_tensor(data_y)
    cubic = w[0] + w[1] * x + w[2] * x**2 + w[3] * x**3
    forms = [cubic, cubic + w[4] * x**4, cubic + w[4] * x**4 + w[4] * x**5]
    mean = sum(((f - y) ** 2).sum() for f in forms) / 3
    mean.backward()
    assert np.abs(w.grad.numpy()).max() < 1e-6 * mean.item()
    assert model.loss(best, F, data_y) == pytest.approx(mean.item(), rel=1e-12)


@pytest.mark.parametrize(
    ("model", "backend"),
    [
        ("legendre3", "tensor"),
        ("legendre3", "autograd"),
        ("dynamic", "autograd"),
        ("dynamic", "module"),
    ],
)
def test_new_models_reach_the_host_once_per_chunk(model, backend, host_syncs):
    calls = host_syncs
    m = build(model)
    x = np.linspace(-1, 1, 200)
    start = np.zeros(len(m.param_names))
    seen = []
    backends.fit(
        backend,
        m,
        m.features(x),
        np.sin(x),
        start,
        rule("momentum", lr=1e-5),
        steps=1000,
        dtype="float32",
        device="cpu",
        chunk=250,
        on_chunk=lambda first, losses, params: seen.append(first),
    )
    assert seen == [0, 250, 500, 750]
    assert calls.count("cpu") == 4 and calls.count("numpy") == 4
    assert not {"item", "tolist", "__float__", "__bool__", "__int__"} & set(calls)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model=dynamic", "backend=numpy"],
            "backend=numpy cannot fit model=dynamic; choose backend=autograd or backend=module",
        ),
        (
            ["model=dynamic", "backend=tensor"],
            "backend=tensor cannot fit model=dynamic; choose backend=autograd or backend=module",
        ),
        (
            ["model=legendre3", "backend=module"],
            "backend=module cannot fit model=legendre3; choose backend=autograd or "
            "backend=numpy or backend=tensor",
        ),
        (["optimizer=rmsprop", "optimizer.alpha=1"], "must be in [0, 1)"),
        (["model=legendre3", "model.init=[1,2,3]"], "must have 4 numbers: a, b, c, d"),
    ],
)
def test_bad_combinations_are_refused_naming_what_is_allowed(overrides, message):
    with pytest.raises(ConfigError) as refused:
        api.compose(*overrides)
    assert message in str(refused.value)


def test_the_command_refuses_a_bad_combination_in_one_line(tmp_path):
    out = run_command("gdfit-train", "model=dynamic", "backend=numpy", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "gdfit: error: backend.name: backend=numpy cannot fit model=dynamic; "
        "choose backend=autograd or backend=module"
    ]
    assert not (tmp_path / "mlruns").exists()


# ---- presets, and the whole tutorial as one sweep ----

PRESETS = {  # preset: (model, backend, dtype, optimizer, lr, steps)
    "numpy": ("polynomial", "numpy", "float64", "sgd", 1e-6, 2000),
    "tensor": ("polynomial", "tensor", "float32", "sgd", 1e-6, 2000),
    "autograd": ("polynomial", "autograd", "float32", "sgd", 1e-6, 2000),
    "legendre3": ("legendre3", "autograd", "float32", "sgd", 5e-6, 2000),
    "nn": ("polynomial", "module", "float32", "sgd", 1e-6, 2000),
    "rmsprop": ("polynomial", "module", "float32", "rmsprop", 1e-3, 2000),
    "module": ("polynomial", "module", "float32", "momentum", 1e-6, 2000),
    "dynamic": ("dynamic", "module", "float32", "momentum", 1e-8, 30000),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_holds_its_cells_settings(preset):
    cfg = api.compose(f"experiment=tutorial_{preset}")
    o = cfg.optimizer
    got = (cfg.model.name, cfg.backend.name, cfg.backend.dtype, o.name, o.lr, cfg.train.steps)
    assert got == PRESETS[preset]
    assert (cfg.data.n_points, cfg.data.target, cfg.device.name) == (2000, "sin", "cpu")
    assert cfg.tracking.run_name == f"tutorial_{preset}-seed0"
    if o.name == "momentum":
        assert o.momentum == (0.9 if preset == "dynamic" else 0.0) and not o.nesterov
    if preset == "legendre3":
        assert list(cfg.model.init) == [0.0, -1.0, 0.0, 0.3]


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tutorial")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    out = run_command(
        "gdfit-train", "experiment=tutorial", "train.steps=200", f"tracking.uri={uri}", cwd=folder
    )
    assert out.returncode == 0, out.stderr
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("gdfit").experiment_id
    (parent,) = client.search_runs([experiment], "tags.gdfit.sweep = 'true'")
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return uri, folder, parent, {c.info.run_name: c for c in children}


def test_the_tutorial_is_one_sweep_of_every_preset(tutorial):
    uri, _, parent, children = tutorial
    assert sorted(children) == sorted(f"tutorial_{p}-seed0" for p in PRESETS)
    for name, child in children.items():
        preset = name.removeprefix("tutorial_").removesuffix("-seed0")
        params = child.data.params
        assert child.info.status == "FINISHED"
        assert (params["model.name"], params["backend.name"]) == PRESETS[preset][:2]
        assert params["optimizer.name"] == PRESETS[preset][3]
        assert params["train.steps"] == "200"
    legendre = children["tutorial_legendre3-seed0"].data.metrics
    assert "final_loss" in legendre and not {"loss_gap", "optimal_loss"} & set(legendre)
    dynamic = children["tutorial_dynamic-seed0"].data.metrics
    assert {"coef_4", "loss_gap"} <= set(dynamic)
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(parent.info.run_id)}
    assert {"comparison.png", "summary.csv"} <= artifacts


def test_the_tutorials_models_are_ranked_by_their_own_optimum_and_say_so(tutorial):
    """The dynamic net has more parameters than the cubic: its lower loss is not a better fit.
    Across models the sweep ranks by the gap to each model's own optimum, and says so."""
    uri, _, parent, children = tutorial
    note = parent.data.tags["mlflow.note.content"]
    assert "Ranked by loss_gap: models or data differ, so each run against its own optimum." in note
    table = note.split("```")[1].strip().splitlines()[2:]
    names = [line.split()[1] for line in table]
    gaps = {name: children[name].data.metrics.get("loss_gap") for name in names}
    ranked = [gaps[name] for name in names if gaps[name] is not None]
    assert ranked == sorted(ranked) and names[-1] == "tutorial_legendre3-seed0"  # no optimum
    best = min((c for c in children.values() if "loss_gap" in c.data.metrics), key=gap_of)
    assert parent.data.tags["gdfit.best_run_id"] == best.info.run_id
    assert note.startswith(f"**Best**: [{best.info.run_name}](")


def gap_of(run) -> float:
    return run.data.metrics["loss_gap"]


def test_the_tutorials_comparison_names_each_run_whole_below_its_curves(tutorial, tmp_path):
    """comparison.png of the tutorial: a legend entry per run, under the axes, whole (nothing
    cut with "..."), naming only what differs between the runs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from gdfit import comparisons, readback

    uri, folder, parent, children = tutorial
    runs = readback.search_runs(uri, parent=parent.info.run_id)
    fig = comparisons.comparison(uri, runs)
    FigureCanvasAgg(fig)
    fig.savefig(tmp_path / "tutorial-comparison.png")  # looked at while writing this test
    renderer = fig.canvas.get_renderer()
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == len(children)  # models differ: no one optimum to draw
    assert not any(t.endswith("...") or "log_every" in t for t in texts)
    for part in {p for t in texts for p in t.split(" (")[0].split(", ")}:
        assert sum(part in t.split(" (")[0].split(", ") for t in texts) < len(children), part
    axes = fig.axes[0].get_tightbbox(renderer)
    box = legend.get_window_extent(renderer)
    assert box.y1 <= axes.y0 and fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1  # under it


def test_runs_of_different_lengths_share_a_log_step_axis():
    """2,000 steps beside 30,000: the short run fills more than its first 7% of the axis."""
    from gdfit import overlays

    short = overlays.Curve(("numpy",), list(range(2000)), list(np.geomspace(1e4, 9, 2000)))
    long = overlays.Curve(("dynamic",), list(range(30000)), list(np.geomspace(1e4, 9, 30000)))
    fig = overlays.comparison_figure([short, long], optimum=8.8)
    ax = fig.axes[0]
    assert ax.get_xscale() == "symlog" and ax.get_xlim()[0] == 0
    to_axes = ax.transAxes.inverted().transform
    x_short = to_axes(ax.transData.transform((1999, 10)))[0]
    assert x_short > 0.6


def test_every_tutorial_job_reruns_bit_for_bit(tutorial):
    uri, folder, parent, _ = tutorial
    out = run_command(
        "gdfit-rerun", parent.info.run_id, "--check", "--tracking-uri", uri, cwd=folder
    )
    assert out.returncode == 0, out.stdout + out.stderr
    verdicts = [line for line in out.stdout.splitlines() if line.startswith("check of ")]
    assert len(verdicts) == len(PRESETS)
    assert all(": identical: " in line for line in verdicts), out.stdout
