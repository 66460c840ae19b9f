"""Atomic file writes: a crash mid-write never leaves a half-written file in place of a good one.

The new content goes to a temporary file in the target's own directory (so that the final
rename stays on one file system), is flushed to disk with ``fsync`` and only then renamed onto
the target with :func:`os.replace`, which is atomic on POSIX and Windows. If writing fails the
temporary file is removed and the previous target, if any, is left untouched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_text", "read_datatree"]


def _fsync_file(path: Path) -> None:
    """Flush a closed file's content to disk."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    """Flush a directory entry (the rename) to disk where the platform allows it."""
    if os.name != "posix":  # Windows cannot open a directory; its rename is durable enough
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write_fn: Callable[[Path], object]) -> Path:
    """Write a file atomically through a temporary file in the same directory.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace. Its directory must exist.
    write_fn : callable
        Called once as ``write_fn(tmp_path)``; it must create and fully write ``tmp_path``
        (a :class:`pathlib.Path` that does not exist yet) and close it before returning.

    Returns
    -------
    pathlib.Path
        The target path.

    Raises
    ------
    FileNotFoundError
        If the target's directory does not exist, or ``write_fn`` wrote no file.
    Exception
        Whatever ``write_fn`` raises; the temporary file is removed and the target keeps its
        previous content.
    """
    target = Path(path)
    directory = target.parent
    if not directory.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(target)!r}: the directory {str(directory)!r} does not exist. "
            "Fix: create it first, e.g. with Path(...).parent.mkdir(parents=True)."
        )
    tmp = directory / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        write_fn(tmp)
        if not tmp.is_file():
            raise FileNotFoundError(f"write_fn did not create the temporary file {str(tmp)!r}")
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write text to a file atomically (see :func:`atomic_write`).

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace.
    text : str
        The full new content.
    encoding : str, default "utf-8"
        Text encoding.

    Returns
    -------
    pathlib.Path
        The target path.
    """

    def write(tmp: Path) -> None:
        with open(tmp, "x", encoding=encoding, newline="") as handle:
            handle.write(text)

    return atomic_write(path, write)


def read_datatree(path: str | os.PathLike[str], *, what: str) -> Any:
    """Read a whole netCDF4 file written by itelib into memory and close it.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not a readable netCDF4 file (truncated, corrupted, another format).
    """
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {str(path)!r}")
    try:
        # phony_dims="access": HDF5 files not written by netCDF get made-up dims instead of
        # h5netcdf's warning; such files then fail the caller's checks.
        with xr.open_datatree(path, engine="h5netcdf", phony_dims="access") as opened:
            return opened.load()
    except PermissionError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{str(path)!r} is not a readable netCDF4 file (truncated or corrupted?): {err}"
        ) from err
