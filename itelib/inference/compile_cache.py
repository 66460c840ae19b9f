"""JAX's persistent compilation cache, on by default in a directory the user controls.

A fresh process spends 15-35 s compiling a sampler; with the on-disk cache the second process
loads it in a few seconds. The directory is ``$ITELIB_JAX_CACHE`` (``off`` disables), else
``$XDG_CACHE_HOME/itelib/jax`` (``~/.cache/itelib/jax``). A cache directory the user already gave
JAX (``jax_compilation_cache_dir``) is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache", "cache_dir"]

_MIN_COMPILE_SECONDS = 1.0  # smaller programs are not worth a disk round trip


def cache_dir() -> Path | None:
    """Where compiled programs are kept, or None when the cache is off."""
    setting = os.environ.get("ITELIB_JAX_CACHE")
    if setting is not None:
        return None if setting.strip().lower() in ("", "0", "off", "false", "no") else Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "itelib" / "jax"


def enable_compilation_cache() -> Path | None:
    """Point JAX's persistent cache at :func:`cache_dir` unless JAX already has one."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    path = cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail the fit
        return None
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_SECONDS)
    # JAX decides once per process, at its first compilation, whether a cache is in use; if
    # anything compiled before this call, that decision was "no" and must be taken again.
    compilation_cache.reset_cache()
    return path
