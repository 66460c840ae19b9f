"""Files itelib writes: atomic writes, and netCDF4 files that are verified whole before parsing.

**Atomic writes.** The new content goes to a temporary file in the target's own directory (so
that the final rename stays on one file system), named ``<target>.itelib-partial-<pid>-<hex>``
(visible, and next to the target, so a leftover is easy to recognise); it is flushed to disk
with ``fsync`` and only then renamed onto the target with :func:`os.replace`, which is atomic
on POSIX and Windows. If writing fails (an exception, Ctrl-C, a full disk) the temporary file
is removed and the previous target, if any, is left untouched. Only a process killed outright
(``kill -9``, power loss) can leave a temporary file behind: the next save to the same target
removes those whose process is gone (POSIX), and :func:`read_datatree` refuses to load one.

**Framed netCDF4 files.** Saved estimators and posteriors are netCDF4 (HDF5) files with a
512-byte *user block* in front, a fixed-layout ASCII header::

    itelib-file 1
    kind estimator
    bytes 73400
    sha256 <64 hex digits>

padded with NUL bytes to 512 bytes, followed by the HDF5 bytes. The SHA-256 covers every byte
after the header, and the header must be exactly the one these fields render, so any change
to any byte of the file (a bit flip, a bad copy, a truncation) is refused with a
``ValueError`` before h5py or h5netcdf sees a byte of it: a damaged file can neither hang
the parser nor load as different numbers. The HDF5 library finds its superblock at byte 512
(user blocks are part of the HDF5 format), so h5py, xarray, netCDF-C and the HDF5 tools open
these files as they are. Files written before the header existed (their first bytes are the
HDF5 signature) are still read, without that check, by the parser directly; their callers
verify them by the array checksums those files carry.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "FRAME_SIZE",
    "ItelibFile",
    "atomic_write",
    "atomic_write_text",
    "read_datatree",
    "write_datatree",
]

FRAME_SIZE = 512  # the user block: HDF5 looks for its superblock at 0, 512, 1024, ...
FRAME_VERSION = 1
KINDS = ("estimator", "posterior", "summary")  # summary: a site summary (itelib.federated)
_MAGIC = b"itelib-file "
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_PICKLE_PROTOCOLS = (b"\x02", b"\x03", b"\x04", b"\x05")  # a pickle starts PROTO (0x80) n
_FRAME = re.compile(
    rb"itelib-file (?P<version>[1-9][0-9]{0,5})\n"
    rb"kind (?P<kind>[a-z]{1,20})\n"
    rb"bytes (?P<bytes>[1-9][0-9]{0,15})\n"
    rb"sha256 (?P<sha256>[0-9a-f]{64})\n"
    rb"(?P<note>[ -~]*\n)"
    rb"\x00*",
)
_NOTE = "the netCDF4 (HDF5) content starts at byte 512; sha256 covers all of it\n"
_PARTIAL = ".itelib-partial-"
_PARTIAL_NAME = re.compile(r"\.itelib-partial-(\d+)-[0-9a-f]{8}$")
_DAMAGED_FIX = "Fix: use another copy of the file, or refit and save again."


def _fsync_file(path: Path) -> None:
    """Flush a closed file's content to disk."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    """Flush a directory entry (the rename) to disk where the platform allows it."""
    fsync_path(directory, directory=True)


def fsync_path(path: Path, *, directory: bool = False) -> None:
    """Flush a file, or a directory's entries, to disk (a directory only on POSIX)."""
    if directory and os.name != "posix":  # Windows cannot open a directory; renames are durable
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_partials(target: Path) -> None:
    """Remove temporary files a killed save to ``target`` left (their process is gone).

    POSIX only: there ``os.kill(pid, 0)`` asks whether a process exists (on Windows it would
    end it). A live process's file is left alone, so is a file whose pid a new process reuses.
    """
    if os.name != "posix":
        return
    for leftover in target.parent.glob(f"{_glob_escape(target.name)}{_PARTIAL}*"):
        match = _PARTIAL_NAME.search(leftover.name)
        if match is None or leftover.name[: match.start()] != target.name:
            continue
        pid = int(match.group(1))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
        except OSError:  # PermissionError: alive, another user's; anything else: leave it
            continue


def _glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)


def partial_path(target: Path) -> Path:
    """The temporary file a save to ``target`` writes before renaming it onto ``target``."""
    return target.parent / f"{target.name}{_PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}"


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
    OSError
        The disk is full, or another error of the operating system while writing: the
        message names the target and says that its previous content is unchanged.
    Exception
        Whatever else ``write_fn`` raises; the temporary file is removed and the target keeps
        its previous content.
    """
    target = Path(path)
    directory = target.parent
    if not directory.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(target)!r}: the directory {str(directory)!r} does not exist. "
            "Fix: create it first, e.g. with Path(...).parent.mkdir(parents=True)."
        )
    _remove_stale_partials(target)
    tmp = partial_path(target)
    try:
        write_fn(tmp)
        if not tmp.is_file():
            raise FileNotFoundError(f"write_fn did not create the temporary file {str(tmp)!r}")
        _fsync_file(tmp)
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno is None:
            raise
        kept = "its previous content is unchanged" if target.exists() else "nothing was written"
        raise type(err)(
            err.errno,
            f"could not write {str(target)!r} ({err.strerror or err}); {kept}. Fix: free disk "
            "space or choose another folder, and save again",
        ) from err
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


# --------------------------------------------------------------------- framed netCDF4 files
def _frame(n_bytes: int, sha256: str, kind: str) -> bytes:
    text = (
        f"itelib-file {FRAME_VERSION}\nkind {kind}\nbytes {n_bytes}\nsha256 {sha256}\n{_NOTE}"
    ).encode("ascii")
    return text + b"\x00" * (FRAME_SIZE - len(text))


def write_datatree(path: str | os.PathLike[str], tree: Any, *, kind: str) -> Path:
    """Write ``tree`` as a framed netCDF4 file (see the module docstring), atomically.

    The HDF5 bytes are built in memory first, so the only writes to disk are two plain
    ``write`` calls: a full disk is an ``OSError`` that names the target, never an error inside
    the HDF5 library, and the previous file stays whole.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind of itelib file {kind!r}")
    payload = tree.to_netcdf(engine="h5netcdf")
    header = _frame(len(payload), hashlib.sha256(payload).hexdigest(), kind)

    def write(tmp: Path) -> None:
        with open(tmp, "xb") as handle:
            handle.write(header)
            handle.write(payload)

    return atomic_write(path, write)


class ItelibFile(NamedTuple):
    """What :func:`read_datatree` read: the tree, and whether the whole file was verified."""

    tree: Any
    verified: bool  # False: a file from before the header, read by the parser unchecked
    kind: str | None


def _refuse(path: Path, why: str) -> ValueError:
    return ValueError(
        f"{str(path)!r} is not a readable netCDF4 file written by itelib: {why}. It is damaged "
        f"(a changed, missing or extra byte), truncated, or another kind of file. {_DAMAGED_FIX}"
    )


def read_datatree(path: str | os.PathLike[str], *, what: str) -> ItelibFile:
    """Read a whole netCDF4 file written by itelib into memory, verified, and close it.

    A framed file (see the module docstring) is read whole and its SHA-256 checked before
    any parser sees it. An unframed file that starts with the HDF5 signature (written by an
    itelib from before the header existed) is parsed directly: ``verified`` is then False.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is damaged, truncated, an unfinished save's temporary file, or not a
        netCDF4 file written by itelib.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {str(path)!r}")
    if _PARTIAL_NAME.search(path.name):
        raise ValueError(
            f"{str(path)!r} is the temporary file of a save that did not finish (the process "
            "was killed), not a saved file. Fix: delete it, and load the file without the "
            f"'{_PARTIAL}...' suffix."
        )
    with open(path, "rb") as handle:
        data = handle.read()
    if data.startswith(_MAGIC):
        payload, kind = _verified_payload(path, data)
        try:
            tree = _parse(io.BytesIO(payload))
        except Exception as err:  # verified bytes that do not parse: not written by itelib
            raise _refuse(
                path, f"its content does not parse ({type(err).__name__}: {err})"
            ) from err
        return ItelibFile(tree, True, kind)
    if data[:1] == b"\x80" and data[1:2] in _PICKLE_PROTOCOLS:
        raise ValueError(
            f"{str(path)!r} is a Python pickle (earlier itelib versions saved CausalForest "
            "that way), and itelib never unpickles a file: unpickling can run any code written "
            "into it. It was not opened. Fix: refit the model on your data and save it again "
            "(a netCDF4 file). If you cannot refit, load the pickle with the itelib version "
            "that wrote it, only if you trust the file, and save what you need from it, e.g. "
            "est.effect().save('effects.nc'), which EffectPosterior.load reads."
        )
    if not data.startswith(_HDF5_SIGNATURE):
        raise _refuse(path, "it starts with neither itelib's header nor the HDF5 signature")
    try:
        return ItelibFile(_parse(path), False, None)
    except PermissionError:
        raise
    except Exception as err:  # h5py and h5netcdf raise OSError, RuntimeError, KeyError, ...
        raise ValueError(
            f"{str(path)!r} is not a readable netCDF4 file (truncated or corrupted?): "
            f"{type(err).__name__}: {err}. {_DAMAGED_FIX}"
        ) from err


def _verified_payload(path: Path, data: bytes) -> tuple[memoryview, str]:
    header = data[:FRAME_SIZE]
    match = _FRAME.fullmatch(header) if len(header) == FRAME_SIZE else None
    if match is None:
        raise _refuse(path, "its 512-byte header is malformed")
    version = int(match["version"])
    if version != FRAME_VERSION:
        raise ValueError(
            f"{str(path)!r} has itelib file header version {version}; this itelib reads "
            f"version {FRAME_VERSION}. Fix: load it with the newer itelib that wrote it (or, "
            f"if no itelib wrote version {version}, the file is damaged: {_DAMAGED_FIX})"
        )
    kind = match["kind"].decode("ascii")
    if kind not in KINDS:
        raise _refuse(path, f"its header names an unknown kind of file {kind!r}")
    payload = memoryview(data)[FRAME_SIZE:]
    expected = int(match["bytes"])
    if len(payload) != expected:
        raise _refuse(path, f"it holds {len(payload)} bytes of content, its header says {expected}")
    digest = hashlib.sha256(payload).hexdigest()
    if digest.encode("ascii") != match["sha256"]:
        raise _refuse(path, "the SHA-256 of its content differs from the one saved with it")
    if header != _frame(expected, digest, kind):  # e.g. a changed byte in the note or the padding
        raise _refuse(path, "its header differs from the one itelib writes")
    return payload, kind


def _parse(source: Any) -> Any:
    import xarray as xr

    # phony_dims="access": HDF5 files not written by netCDF get made-up dims instead of
    # h5netcdf's warning; such files then fail the caller's checks.
    with xr.open_datatree(source, engine="h5netcdf", phony_dims="access") as opened:
        return opened.load()
