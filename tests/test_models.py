"""Every registered model against references: its hand-written gradient against autograd, its
closed-form optimum against its own gradient and loss, every backend it allows against the
others, and the backends it does not allow refused. A new model module is picked up by every
test here."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from gdfit import backends, config, data, models, registry
from gdfit.errors import ConfigError
from gdfit.optimizers import sgd

MODELS = registry.names("model")
BACKENDS = registry.names("backend")
X, Y = data.make_data(OmegaConf.structured(config.DataConfig()))  # sin on 2,000 points


def build(name: str, **values):
    """Model `name` at its schema's defaults, then `values`, with the features of X."""
    model = models.build(OmegaConf.structured(config.schema("model", name)(name=name, **values)))
    return model, model.features(X)


def gradients(name: str) -> tuple[str, ...]:
    return registry.load("model", name).GRADIENTS


def able(name: str) -> list[str]:
    """The backends whose gradient model `name` supports."""
    return [b for b in BACKENDS if registry.load("backend", b).GRADIENT in gradients(name)]


def autograd(loss, p: np.ndarray, F, y) -> tuple[float, np.ndarray]:
    """(loss, d loss / d p) of `loss` by torch autograd, float64."""
    w = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    value = loss(w, tuple(torch.as_tensor(a) for a in F), torch.as_tensor(y))
    (grad,) = torch.autograd.grad(value, w)
    return float(value.detach()), grad.numpy()


def gradient(model, name: str, p: np.ndarray, F) -> np.ndarray:
    """d loss / d p: by hand where the model has it, else autograd of its `loss`."""
    if "hand" in gradients(name):
        return np.asarray(model.loss_grad(p, F, Y)[1])
    return autograd(model.loss, p, F, Y)[1]


def start(model, seed: int = 0) -> np.ndarray:
    return model.init(np.random.default_rng(seed))


def fit(backend: str, model, F, p0: np.ndarray, settings, steps: int = 20):
    """(the loss before each update, the final parameters) of a float64 fit on the CPU."""
    losses = []
    params = backends.fit(
        backend,
        model,
        F,
        Y,
        p0,
        settings,
        steps=steps,
        dtype="float64",
        device="cpu",
        chunk=7,  # an odd chunk: the seams too
        on_chunk=lambda start, chunk, params: losses.extend(chunk.tolist()),
    )
    return np.array(losses), params


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Torch on one thread: these problems are small, and the suite shares two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", [m for m in MODELS if "hand" in gradients(m)])
def test_hand_written_gradient_matches_autograd(name, seed):
    model, F = build(name)
    p = start(model, seed)
    loss, grad = model.loss_grad(p, F, Y)
    reference = model.autograd_loss() if hasattr(model, "autograd_loss") else model.loss
    ref_loss, ref_grad = autograd(reference, p, F, Y)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert np.abs(grad - ref_grad).max() <= 1e-10 * np.abs(ref_grad).max()


def with_optimum() -> list[str]:
    """The models with a closed-form optimum (legendre3, not linear in its parameters, has
    none: its test is that `optimum` says so)."""
    built = {name: build(name) for name in MODELS}
    return [name for name, (model, F) in built.items() if model.optimum(F, Y) is not None]


def test_a_model_without_a_closed_form_optimum_has_no_curvature_either():
    for name in set(MODELS) - set(with_optimum()):
        model, F = build(name)
        assert model.optimum(F, Y) is None and model.curvature(F) is None, name


@pytest.mark.parametrize("name", with_optimum())
def test_the_optimum_is_where_the_gradient_vanishes_and_the_loss_is_least(name):
    model, F = build(name)
    best = model.optimum(F, Y)
    scale = np.abs(gradient(model, name, start(model), F)).max()
    assert np.abs(gradient(model, name, best, F)).max() <= 1e-9 * scale
    least = model.loss(best, F, Y)
    rng = np.random.default_rng(0)
    for size in (1e-2, 1e-4):
        for _ in range(5):
            near = best + size * rng.standard_normal(len(best))
            assert least < model.loss(near, F, Y)


@pytest.mark.parametrize("name", MODELS)
def test_describe_is_one_line_with_every_parameter_and_what_names_the_class(name):
    model, _ = build(name)
    p = start(model)
    text = model.describe(p)
    assert text.startswith("y = ") and "\n" not in text
    for v in p:
        assert str(float(v)) in text
    short = model.describe(p, 4)
    assert short.startswith("y = ") and "\n" not in short
    for v in p:
        assert f"{float(v):.4g}" in short
    assert isinstance(model.what, str) and model.what.strip()


@pytest.mark.parametrize("name", MODELS)
def test_every_backend_the_model_allows_gives_the_same_losses(name):
    model, F = build(name)
    curvature = model.curvature(F)
    settings = OmegaConf.structured(config.schema("optimizer", "sgd")(name="sgd"))
    # A quarter of the stable rate; without one, the dynamic tutorial's rate (its x^5 column
    # makes 1e-6 diverge from a random start).
    settings.lr = 1e-8 if curvature is None else sgd.stable_lr(curvature, settings) / 4
    p0 = start(model)
    # The dynamic model draws its forms from a random.Random(model.seed) of its own, made
    # afresh for each fit: every backend sees the same draws without seeding anything.
    curves = {backend: fit(backend, model, F, p0, settings) for backend in able(name)}
    (first, (ref_losses, ref_params)), *others = curves.items()
    assert np.isfinite(ref_losses).all() and ref_losses[-1] < ref_losses[0]
    for backend, (losses, params) in others:
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-9, err_msg=f"{backend} vs {first}")
        np.testing.assert_allclose(params, ref_params, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", MODELS)
def test_backends_the_model_does_not_allow_are_refused(name):
    from gdfit.api import compose  # imports MLflow (~2 s): only this test needs it

    for backend in BACKENDS:
        if backend in able(name):
            compose(f"model={name}", f"backend={backend}")
        else:
            with pytest.raises(ConfigError, match=f"cannot fit model={name}") as refused:
                compose(f"model={name}", f"backend={backend}")
            assert refused.value.key == "backend.name"


def test_chebyshev_columns_are_numpys_chebyshev_polynomials_of_the_scaled_x():
    cheb = models.build(
        OmegaConf.structured(config.schema("model", "chebyshev")("chebyshev", degree=5))
    )
    # results.Fit describes a run with a model that has seen no data: u in the data's terms
    assert cheb.describe(np.zeros(6)).endswith(
        "u = (2x - data.x_min - data.x_max) / (data.x_max - data.x_min)"
    )
    x = np.linspace(-1.0, 3.0, 101)  # u = (x - 1) / 2
    X, Xt = cheb.features(x)
    np.testing.assert_allclose(X, np.polynomial.chebyshev.chebvander((x - 1) / 2, 5), atol=1e-13)
    assert np.shares_memory(X, Xt)
    assert cheb.describe(np.zeros(6), 4).endswith(", u = (x - 1) / 2")
    assert cheb.what == "a quintic in the Chebyshev basis"


def test_chebyshev_fits_the_polynomials_functions():
    (cheb, cheb_F), (poly, poly_F) = build("chebyshev", degree=5), build("polynomial", degree=5)
    np.testing.assert_allclose(
        cheb.predict(cheb.optimum(cheb_F, Y), cheb_F),
        poly.predict(poly.optimum(poly_F, Y), poly_F),
        atol=1e-12,
    )
