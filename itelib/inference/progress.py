"""Progress bars fed from inside compiled samplers.

Compiled code outlives a fit, so it cannot hold a reference to that fit's tqdm bar. A sampler is
instead compiled with an integer token as an ordinary argument and reports ``(token, steps)``
through a host callback to this registry. Without a bar the token is None and no callback is
compiled in at all: JAX's persistent cache cannot store programs with host callbacks.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["progress", "maybe_report", "show_progress", "REPORT_EVERY"]

REPORT_EVERY = 50
_BARS: dict[int, Any] = {}
_LOCK = threading.Lock()
_TOKENS = itertools.count(1)


def show_progress(option: bool | None) -> bool:
    """An estimator's ``progress_bar`` option: None shows a bar when a person is probably
    watching (a terminal or a notebook)."""
    if option is None:
        return sys.stderr.isatty() or "ipykernel" in sys.modules
    return bool(option)


def _report(token: np.ndarray, n: np.ndarray) -> None:
    with _LOCK:
        bar = _BARS.get(int(token))
        if bar is not None:
            bar.update(int(n))


def maybe_report(token: jax.Array | None, i: jax.Array, weight: int = 1) -> None:
    """Inside compiled code: advance bar ``token`` by ``REPORT_EVERY * weight`` every
    ``REPORT_EVERY`` steps (``i`` counts from 0); nothing at all when ``token`` is None."""
    if token is None:
        return

    def tick() -> None:
        jax.debug.callback(_report, token, jnp.asarray(REPORT_EVERY * weight))

    jax.lax.cond((i + 1) % REPORT_EVERY == 0, tick, lambda: None)


@contextmanager
def progress(
    show: bool, total: int, description: str, unit: str = "it"
) -> Iterator[jax.Array | None]:
    """Open a bar of ``total`` steps (when ``show``) and yield the token to compile against
    (None without a bar)."""
    if not show:
        yield None
        return
    from tqdm.auto import tqdm

    token = next(_TOKENS)
    bar = tqdm(total=total, desc=description, unit=unit, leave=True)
    with _LOCK:
        _BARS[token] = bar
    try:
        yield jnp.asarray(token, jnp.int32)
    finally:
        with _LOCK:
            _BARS.pop(token, None)
        bar.n = bar.total
        bar.close()
