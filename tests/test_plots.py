"""The figures, drawn from real runs in a sqlite store and measured as rendered.

Three shapes of sweep that broke the comparison figure once: a backend x lr grid (one rate
diverges; the three backends coincide), a sweep over optimizer options, and a 20-trial Optuna
search of the learning rate with diverging trials; then every run of the experiment at once.
The PNGs go to $GDFIT_SCREENSHOT_DIR/figures when that is set, to be looked at.
"""

import os
import re
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from conftest import run_command
from hydra import compose, initialize_config_dir
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imsave
from matplotlib.legend import Legend
from mlflow.tracking import MlflowClient

import gdfit
from gdfit import comparisons, data, overlays, plots, readback
from gdfit.digits import short_value
from gdfit.paths import conf_dir
from gdfit.train import train

STEPS = "train.steps=200"


def compose_cfg(uri: str, *overrides: str):
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return compose("config", [f"tracking.uri={uri}", STEPS, *overrides])


def sweep(uri: str, **grid) -> str:
    """gdfit.sweep over `grid` (lists of values), trained in this process; the parent's id.
    A job that diverges ends FAILED, as in any sweep."""
    return gdfit.sweep(steps=200, tracking_uri=uri, progress="none", **grid).parent_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store holding the three shapes; {shape: runs} and the store's URI and folder."""
    folder = tmp_path_factory.mktemp("plots")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    grid = sweep(uri, lr=[1e-6, 1e-4], backend=list(BACKENDS))  # backend changes first
    group = sweep(uri, optimizer=["sgd", "momentum", "adam"])
    out = run_command(  # Optuna's own trials, through the installed command
        "gdfit-train",
        "hparams_search=lr_optuna",
        STEPS,
        f"tracking.uri={uri}",
        f"hydra.sweep.dir={folder / 'sweeps'}",
        cwd=folder,
    )
    # Some trials diverge (the shape this figure must hold up to): results, not failures.
    assert out.returncode == 0 and " diverged, 0 failed" in out.stdout, out.stderr
    assert "0 diverged" not in out.stdout
    optuna = re.search(r"parent run (\w+)", out.stdout)[1]
    shapes = {
        name: readback.search_runs(uri, parent=parent)
        for name, parent in (("grid", grid), ("group", group), ("optuna", optuna))
    }
    shapes["experiment"] = readback.search_runs(uri, experiment="gdfit")
    return shapes, uri, folder


BACKENDS = ("numpy", "tensor", "autograd")


def rendered(fig, name: str, folder: Path):
    """Draw `fig` as it is saved, keep the PNG, and return the renderer for measuring."""
    FigureCanvasAgg(fig)
    fig.savefig(folder / f"{name}.png")
    keep(folder / f"{name}.png")
    return fig.canvas.get_renderer()


def keep(path: Path) -> None:
    if folder := os.environ.get("GDFIT_SCREENSHOT_DIR"):
        (Path(folder) / "figures").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / "figures" / path.name)


def assert_inside(fig, renderer) -> None:
    """Every axes with all it draws (ticks, labels, title; colour bars too), every legend and
    the figure's own texts lie inside the canvas."""
    canvas = fig.bbox
    parts = [
        (f"axes {ax.get_label() or ax.get_ylabel()!r}", ax.get_tightbbox(renderer))
        for ax in fig.axes
    ]
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    parts += [(f"legend {legend_entries(x)}", x.get_window_extent(renderer)) for x in legends]
    texts = fig.texts + ([fig._suptitle] if fig._suptitle else [])
    parts += [(repr(t.get_text()), t.get_window_extent(renderer)) for t in texts]
    for what, box in parts:
        inside = (
            box.x0 >= canvas.x0 - 1
            and box.y0 >= canvas.y0 - 1
            and box.x1 <= canvas.x1 + 1
            and box.y1 <= canvas.y1 + 1
        )
        assert inside, f"{what} at {box} leaves the canvas {canvas}"


def legend_entries(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


def legend_texts(fig) -> list[str]:
    return [text for legend in fig.findobj(Legend) for text in legend_entries(legend)]


def assert_short_labels(texts: list[str]) -> None:
    for text in texts:
        assert not re.search(r"\w=(,|$|\s)", text), f"empty setting in {text!r}"
        assert not re.search(r"\d\.?\d{6,}", text), f"long number in {text!r}"


def main_axes(fig):
    return fig.axes[0]


def diverged_peaks(uri: str, runs) -> list[float]:
    return [
        max(readback.loss_curve(uri, r.info.run_id).losses)
        for r in runs
        if "gdfit.diverged_at_step" in r.data.tags
    ]


def test_grid_figure_names_backend_and_rate_and_shows_the_coinciding_backends(store):
    shapes, uri, folder = store
    runs = shapes["grid"]
    fig = comparisons.comparison(uri, runs)
    renderer = rendered(fig, "grid-comparison", folder)
    assert_inside(fig, renderer)
    texts = legend_texts(fig)
    assert_short_labels(texts)
    assert texts[:2] == ["numpy, lr=1e-6", "tensor, lr=1e-6 (coincides with numpy)"]
    assert "numpy, lr=1e-4 (diverged at step" in texts[3]
    assert any(t.startswith("least-squares optimum 8.81") for t in texts)
    # the backends that coincide carry different markers at staggered places
    lines = {line.get_label(): line for line in main_axes(fig).get_lines()}
    same = [lines[t] for t in texts if "lr=1e-6" in t]
    assert len({line.get_marker() for line in same}) == 3
    assert len({line.get_markevery() for line in same}) == 3
    # the diverged runs do not set the y-range
    top = main_axes(fig).get_ylim()[1]
    assert all(peak > top for peak in diverged_peaks(uri, runs))
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert top >= max(max(readback.loss_curve(uri, r.info.run_id).losses) for r in finished)
    assert main_axes(fig).get_window_extent(renderer).width > 0.5 * fig.bbox.width


def test_optimizer_group_is_labelled_by_name_only(store):
    shapes, uri, folder = store
    fig = comparisons.comparison(uri, shapes["group"])
    renderer = rendered(fig, "group-comparison", folder)
    assert_inside(fig, renderer)
    texts = legend_texts(fig)
    assert texts[:3] == ["sgd", "momentum", "adam"]
    assert main_axes(fig).get_window_extent(renderer).width > 0.6 * fig.bbox.width
    assert comparisons.versus_figures(shapes["group"]) == {}  # each option's own lr is no sweep


def test_optuna_search_gets_a_colour_scale_and_keeps_diverged_trials_off_the_range(store):
    shapes, uri, folder = store
    runs = shapes["optuna"]
    assert len(runs) == 20 and diverged_peaks(uri, runs)  # the search tried unstable rates
    fig = comparisons.comparison(uri, runs)
    renderer = rendered(fig, "optuna-comparison", folder)
    assert_inside(fig, renderer)
    (bar,) = [ax for ax in fig.axes if ax.get_ylabel() == "lr"]  # the colour bar
    assert bar.get_yscale() == "log"  # the trials span two decades
    texts = legend_texts(fig)
    assert len(texts) < 5 and not any(t.startswith("lr=") for t in texts)
    assert any(t.startswith("diverged (") for t in texts)
    assert_short_labels(texts + [fig.axes[0].get_title()])
    top = main_axes(fig).get_ylim()[1]
    assert all(peak > top for peak in diverged_peaks(uri, runs))
    assert top < 1e5  # the curves start near 2e4; diverged trials reached 1e9 and more


def test_few_runs_get_a_legend_and_many_a_colour_bar(store):
    shapes, uri, _ = store
    for runs in (shapes["grid"], shapes["group"]):
        assert len(runs) <= overlays.MAX_LEGEND
        assert len(comparisons.comparison(uri, runs).axes) == 1  # no colour bar
    assert len(comparisons.comparison(uri, shapes["optuna"]).axes) == 2


def test_whole_experiment_figure_is_not_all_legend(store):
    shapes, uri, folder = store
    runs = shapes["experiment"]
    assert len(runs) == 29
    fig = comparisons.comparison(uri, runs)
    renderer = rendered(fig, "experiment-comparison", folder)
    assert_inside(fig, renderer)
    texts = legend_texts(fig)
    assert set(BACKENDS) <= set(texts)  # line styles by backend
    assert len(texts) <= 8
    assert "also varying: optimizer" in fig.axes[0].get_title()
    assert main_axes(fig).get_window_extent(renderer).width > 0.5 * fig.bbox.width
    png = folder / "all.png"
    out = run_command(
        "gdfit-compare",
        "--experiment",
        "gdfit",
        "--tracking-uri",
        uri,
        "--out",
        str(png),
        cwd=folder,
    )
    assert out.returncode == 0, out.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_final_loss_against_a_swept_rate(store):
    shapes, uri, folder = store
    for shape in ("grid", "optuna"):
        runs = shapes[shape]
        figures = comparisons.versus_figures(runs)
        assert list(figures) == ["final_loss_vs_optimizer.lr.png"]
        fig = figures["final_loss_vs_optimizer.lr.png"]
        renderer = rendered(fig, f"{shape}-final_loss_vs_lr", folder)
        assert_inside(fig, renderer)
        loss_ax, gap_ax = fig.axes
        assert loss_ax.get_xlabel() == "lr"
        finished = [r.data.metrics["final_loss"] for r in runs if r.info.status == "FINISHED"]
        gaps = [r.data.metrics["loss_gap"] for r in runs if r.info.status == "FINISHED"]
        # A log axis only where the values span a decade; else a linear one around them,
        # with no offset to add (final losses of 8.82 to 9.08 do not lie flat on a decade).
        optimum = comparisons.optimum(runs)  # drawn on the loss axis too
        for ax, values in ((loss_ax, finished + [optimum]), (gap_ax, gaps)):
            spread = max(values) / min(values)
            assert ax.get_yscale() == ("log" if spread >= 10 else "linear")
            low, high = ax.get_ylim()
            assert low <= min(values) and max(values) <= high
            if spread < 10:
                assert high - low < 2 * (max(values) - min(values)) + 0.03 * max(values)
                assert ax.yaxis.get_offset_text().get_text() == ""
        # The swept rates are the ticks, written short.
        rates = sorted({float(r.data.params["optimizer.lr"]) for r in runs})
        if len(rates) <= 8:
            shown = [t.get_text() for t in loss_ax.get_xticklabels()]
            assert shown == [short_value(repr(x)) for x in rates]
        assert loss_ax.xaxis.get_offset_text().get_text() == ""
        series = [
            line
            for line in loss_ax.get_lines()
            if line.get_marker() != "x" and not line.get_label().startswith("least-squares")
        ]
        plotted = np.concatenate([line.get_ydata() for line in series])
        assert sorted(plotted) == pytest.approx(sorted(finished))
        assert "diverged or failed (no final loss)" in legend_texts(fig)
        assert_short_labels(legend_texts(fig))
    assert comparisons.versus_figures(shapes["optuna"])  # x spans two decades: log scale
    optuna = comparisons.versus_figures(shapes["optuna"])["final_loss_vs_optimizer.lr.png"]
    assert optuna.axes[0].get_xscale() == "log"


def test_sweep_parent_holds_the_versus_figure(store):
    shapes, uri, _ = store
    parent = shapes["optuna"][0].data.tags["mlflow.parentRunId"]
    names = {a.path for a in MlflowClient(uri).list_artifacts(parent)}
    assert {"comparison.png", "final_loss_vs_optimizer.lr.png"} <= names


def test_loss_marks_the_optimum_and_fit_names_its_run(store, tmp_path):
    _, uri, folder = store
    result = train(compose_cfg(uri, "tracking.experiment=single"))
    loss = plots.loss_figure(result.loss_steps, result.losses, result.optimal_loss)
    renderer = rendered(loss, "loss", folder)
    assert_inside(loss, renderer)
    (line,) = [x for x in loss.axes[0].get_lines() if x.get_label().startswith("least-squares")]
    assert line.get_ydata()[0] == result.optimal_loss
    assert legend_texts(loss)[1] == f"least-squares optimum {result.optimal_loss:.6g}"

    x, y = data.make_data(compose_cfg(uri).data)
    fitted = np.polynomial.polynomial.polyval(x, result.coef)
    fit = plots.fit_figure(x, y, fitted, "sin", "numpy-sgd-lr1e-06-seed0", "y = a + b x")
    assert_inside(fit, rendered(fit, "fit", folder))
    assert fit.get_suptitle() == "numpy-sgd-lr1e-06-seed0"


def test_fit_frames_show_each_snapshot(store):
    _, _, folder = store
    x, y = np.linspace(-np.pi, np.pi, 2000), np.sin(np.linspace(-np.pi, np.pi, 2000))
    coefs = [
        (0, [0.5, -1.0, 0.3, 0.2]),
        (10, [0.0, 0.8, 0.0, -0.1]),
        (5000, [0, 0.857, 0, -0.0933]),
    ]
    snapshots = [(s, np.polynomial.polynomial.polyval(x, c)) for s, c in coefs]
    frames = plots.fit_frames(x, y, "sin", snapshots, "numpy-sgd-lr1e-06-seed0")
    assert [step for step, _ in frames] == [0, 10, 5000]
    images = [image for _, image in frames]
    assert all(i.dtype == np.uint8 and i.ndim == 3 and i.shape[2] == 3 for i in images)
    assert {i.shape for i in images} == {(360, 360, 3)}  # what an image card's frame holds
    assert all((a != b).any() for a, b in zip(images, images[1:], strict=False))
    imsave(folder / "frames.png", np.concatenate(images, axis=0))
    keep(folder / "frames.png")


def artifacts(client, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


def test_figures_none_leaves_a_run_without_figures(make_cfg, client):
    result = train(make_cfg("train.steps=50", "tracking.figures=none"))
    run = client.get_run(result.run_id)
    assert run.data.tags["gdfit.figures"] == "none"
    assert "mlflow.loggedImages" not in run.data.tags
    names = artifacts(client, result.run_id)
    assert not {"fit.png", "loss.png", "images"} & names
    assert {"config.yaml", "coefficients.json", "loss.npz"} <= names  # to draw them from later
    drawn = train(make_cfg("train.steps=50"))  # auto, a single run: drawn, no tag
    assert {"fit.png", "loss.png", "images"} <= artifacts(client, drawn.run_id)
    assert "gdfit.figures" not in client.get_run(drawn.run_id).data.tags


def test_a_sweep_too_large_for_every_jobs_figures_draws_its_best_at_its_end(
    monkeypatch, store_uri, client
):
    """tracking.figures=auto: the jobs of a sweep of more than FIGURES_AUTO_MOST jobs draw
    nothing; its end draws the best FIGURES_AUTO_BEST jobs' figures from the store."""
    from gdfit import config

    monkeypatch.setattr(config, "FIGURES_AUTO_MOST", 1)
    monkeypatch.setattr(config, "FIGURES_AUTO_BEST", 1)
    result = gdfit.sweep(
        lr=[5e-7, 2e-6, 1e-6],
        steps=50,
        tracking_uri=store_uri,
        experiment="figures-auto-large",
        progress="none",
    )
    parent = client.get_run(result.parent_id)
    best = parent.data.tags["gdfit.best_run_id"]
    assert best == min(result.runs, key=lambda r: r.data.metrics["final_loss"]).info.run_id
    for job in result.runs:
        run = client.get_run(job.info.run_id)
        names = artifacts(client, job.info.run_id)
        if job.info.run_id == best:
            assert run.data.tags["gdfit.figures"] == "drawn at the sweep's end"
            assert {"fit.png", "loss.png", "images"} <= names
            assert run.data.tags["mlflow.loggedImages"] == "True"
        else:
            assert run.data.tags["gdfit.figures"] == "left for the sweep's end"
            assert not {"fit.png", "loss.png", "images"} & names
    assert {"comparison.png", "summary.csv"} <= artifacts(client, result.parent_id)


def pixels(figure) -> np.ndarray:
    """The PNG a run saves of `figure` (savefig), read back."""
    from io import BytesIO

    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    return read_png(buffer)


LONG = "y = 100000.1 + 0.9123 x + -0.0931 x^3 + 0.0001234 x^2 + 0.000123 x^4"
RUNS = [  # the data (its scale and offset), the fitted curve's amplitude, first loss, optimum
    (1.0, 0.0, 0.9, 3e4, 8.8),
    (1.0, 0.0, 0.95, 2e4, 8.8),  # the same views as the first
    (1.0, 0.0, 1.3, 5e3, 8.8),  # the fit leaves the data's range; three decades instead of five
    (1.0, 0.0, 0.9, 3e4, 8.8),  # back to the first views
    (1.0, 0.0, 0.5, 12.0, 8.8),  # less than a decade: autoscaled, every minor tick
    (1.0, 0.0, 0.9, 3e4, 1e-20),  # an optimum of almost zero
    (1.0, 0.0, 0.9, 3e4, None),  # a model without a closed-form optimum: no floor, no legend
    (0.5, 0.0, 0.4, 3e4, 8.8),  # other data, the same target
    (1.0, 1e5, 0.9, 3e4, 8.8),  # an axis offset (+1e5), under a long title ...
    (1.0, 1e5, 0.9, 3e4, 8.8),  # ... then a short one: matplotlib moves it by its width
    (1.0, 0.0, 0.9, 3e304, 3e294),  # losses near the largest float
]


@pytest.mark.parametrize(
    "rc", [{}, {"axes.axisbelow": False, "axes.grid": True}, {"axes.titlelocation": "right"}]
)
def test_a_runs_figures_on_the_kept_figures_are_the_pixels_of_new_ones(monkeypatch, rc):
    """A sweep's jobs in one process draw fit.png, loss.png and the frames on the figures kept
    from the job before (plots.kept), their artists updated: every PNG must hold what a new
    figure of that run draws. The runs repeat views, change them and come back; a matplotlibrc
    may put the grid over the lines, or the title at the right."""
    monkeypatch.setattr(plots, "_kept", {})  # a new process's: built under this rc
    x, steps = np.linspace(-np.pi, np.pi, 2000), np.arange(3000)
    with matplotlib.rc_context(rc):
        for k, (scale, offset, amplitude, first, optimum) in enumerate(RUNS):
            y = offset + scale * np.sin(x)
            fitted = offset + amplitude * np.sin(x) + 0.01 * x**3
            losses = np.exp(-steps / 400) * first + (optimum or 8.8)
            snapshots = [(s, fitted * s / 2000) for s in (0, 1000, 2000)]
            name = f"numpy-sgd-lr1e-06-seed{k}"
            formula = "y = b x" if k % 2 else LONG
            for kind, draw, args in (
                (plots.FitFigure, plots.fit_figure, (x, y, fitted, "sin", name, formula)),
                (plots.LossFigure, plots.loss_figure, (steps, losses, optimum)),
            ):
                kept = pixels(plots.kept(kind).draw(*args))
                assert np.array_equal(kept, pixels(draw(*args))), (k, kind.__name__)
            kept = plots.kept(plots.Frames).draw(x, y, "sin", snapshots, name)
            new = plots.fit_frames(x, y, "sin", snapshots, name)
            assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(kept, new, strict=True))


def test_loss_png_ends_on_whole_decades():
    """The runs of a sweep then share one axis; a view under a decade keeps its own ends."""
    steps = np.arange(3000)
    ylim = plots.loss_figure(steps, np.exp(-steps / 400) * 3e4 + 8.8, 8.8).axes[0].get_ylim()
    assert ylim == (1.0, 1e5)
    low, high = plots.loss_figure(steps, np.exp(-steps / 400) * 12 + 8.8, 8.8).axes[0].get_ylim()
    assert 1 < high / low < 10 and (low, high) != (1.0, 10.0)


def read_png(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"))
