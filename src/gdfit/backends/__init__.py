"""The backends: the array library a fit runs in and where its gradients come from, one module
each (its name is its option, `backend=<name>`, in conf/backend/<name>.yaml). A backend module
defines

    GRADIENT   what it asks of the model: "hand" (`model.loss_grad`) or "autograd"
               (`model.loss`, differentiated by torch)
    DEVICES    the devices it runs on, of "cpu" and "cuda"
    TORCH      whether it imports torch (the run then seeds torch and makes it deterministic)
    Fit(model, F, y, p0, settings, rule, *, dtype, device, chunk), an object with
        step(i)    one update of the rule; the loss before it goes to slot i of a buffer of
                   `chunk` losses kept where the arrays live
        read(n)    (losses, params) on the host, in one transfer: the first n losses of the
                   buffer (a view: copy what you keep) and a float64 copy of the parameters

`fit` runs every backend through the same chunk loop; the host sees the losses and parameters
once per chunk and never inside one, so a step never waits for a GPU. Torch is imported only
inside the torch backends' functions.
"""

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from gdfit import registry

OnChunk = Callable[[int, np.ndarray, np.ndarray], None]


def fit(
    backend: str,
    model,
    F: tuple[np.ndarray, ...],
    y: np.ndarray,
    p0: np.ndarray,
    settings,
    *,
    steps: int,
    dtype: str,
    device: str,
    chunk: int,
    on_chunk: OnChunk,
    ends: Iterable[int] = (),
) -> np.ndarray:
    """Run `steps` updates of the rule `settings` describes (the `optimizer.*` settings) on the
    model's loss with `backend`, from `p0`; return the final parameters as float64.

    F: the model's features of the data, y: (n_points,) targets, p0: (n_params,) start, all
    float64 numpy. After each chunk of at most `chunk` steps, `on_chunk(first_step, losses,
    params)` gets the loss before each of the chunk's updates (loss t is measured before update
    t, as the example prints it) and the parameters after its last. A chunk also ends at each
    step count in `ends`, so `on_chunk` sees the parameters after exactly that many updates.
    """
    rule = registry.load("optimizer", settings.name)
    run = registry.load("backend", backend).Fit(
        model, F, y, p0, settings, rule, dtype=dtype, device=device, chunk=chunk
    )
    step, params = run.step, np.asarray(p0, dtype=np.float64)
    for start, stop in chunks(steps, chunk, ends):
        for i in range(stop - start):
            step(i)
        losses, params = run.read(stop - start)
        on_chunk(start, losses, params)
    return params


def chunks(steps: int, size: int, ends: Iterable[int] = ()) -> Iterator[tuple[int, int]]:
    """[start, stop) ranges of at most `size` steps covering 0..steps-1 in order, one of them
    stopping at each of `ends` that lies in 1..steps-1."""
    start = 0
    for end in sorted({e for e in ends if 0 < e < steps} | {steps}):
        while start < end:
            stop = min(start + size, end)
            yield start, stop
            start = stop
