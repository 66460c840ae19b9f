"""The command line's ``--out`` folder and Ctrl-C: a folder holds the outputs of exactly one run.

``itelib fit`` and ``itelib demo`` check ``--out`` before anything is read or fitted (a file, an
unwritable place, a folder of someone else's files are refused at once, in flags), write every
output into a hidden temporary folder beside it, and move them in together only when the whole
run succeeded. An existing ``--out`` that holds an earlier itelib run's outputs (and nothing
else) is replaced as a whole; one that holds other files is refused unless ``--force``, which
writes itelib's files beside them and removes the earlier run's itelib files.

Ctrl-C (SIGINT) and SIGTERM end the process within a second even while the main thread is
inside a compiled JAX/XLA sampler, which does not return to Python until it finishes (so a
``KeyboardInterrupt`` would come minutes late). The signal's C handler writes to a wakeup socket
(:func:`signal.set_wakeup_fd`); a watcher thread blocked on that socket removes this run's
temporary folder, prints one line, and ends the process with status 130 (143 for SIGTERM)
through :func:`os._exit`. A second Ctrl-C while that cleanup runs ends the process at once.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from itelib._io import fsync_path

__all__ = [
    "MANIFEST",
    "OUTPUT_NAMES",
    "EXIT_INTERRUPTED",
    "OutputError",
    "OutputFolder",
    "watch_interrupts",
]

OUTPUT_NAMES = frozenset({"effects.csv", "ate.csv", "diagnostics.json", "posterior.nc", "model.nc"})
"""The files an ``itelib fit`` / ``itelib demo`` run writes (an earlier run's, without a
manifest, are recognised by these names)."""

MANIFEST = ".itelib-outputs"
"""Written last into every output folder: the names of the files that run wrote, one a line."""

EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}
_CLEANUP_SECONDS = 10.0  # the most the watcher waits for the cleanup before it quits anyway


class OutputError(ValueError):
    """``--out`` cannot take this run's outputs; the message names ``--out`` and the fix."""


class OutputFolder:
    """``--out``, checked now; outputs go to :attr:`staging` and move in on :meth:`commit`.

    Parameters
    ----------
    out : Path
        The ``--out`` folder.
    force : bool
        ``--force``: write into a folder that also holds files itelib did not write.
    """

    def __init__(self, out: Path, force: bool = False) -> None:
        self.out = out
        self.state = "open"  # then "committed" or "discarded"
        self._lock = threading.Lock()
        self._created: list[Path] = []  # parent folders this run made, removed if it fails
        self._old_names = self._check(force)
        self._merge = self._old_names is not None and (
            bool(set(_entries(out)) - self._old_names) or _in_place_only(out)
        )
        if self._old_names is not None:
            _probe_writable(out)  # a read-only folder is refused now, not after the fit
        # merging: the staging folder inside --out, so that each file's move is a rename
        self.staging = self._make_staging(out if self._merge else out.absolute().parent)

    # -- before the run --------------------------------------------------------------------
    def _check(self, force: bool) -> set[str] | None:
        """Refuse an unusable ``--out``; the earlier run's file names (None: no folder)."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise OutputError(
                f"--out {out} is a file, not a folder. Fix: give --out a folder (itelib "
                "creates it, or replaces an earlier itelib run's outputs in it), or move the "
                "file away."
            )
        if not out.exists():
            if out.is_symlink():
                raise OutputError(
                    f"--out {out} is a link to nothing. Fix: remove the link or give --out "
                    "another folder."
                )
            blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
            if blocked is not None:
                raise OutputError(
                    f"--out {out}: {blocked} is a file, not a folder, so the folder cannot be "
                    "created. Fix: give --out a path under a folder."
                )
            return None
        entries = set(_entries(out))
        earlier = _earlier_outputs(out, entries)
        foreign = sorted(entries - earlier)
        if foreign and not force:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise OutputError(
                f"--out {out} holds {len(foreign)} file(s) itelib did not write ({shown}); "
                "itelib replaces a folder only when it holds an earlier itelib run's outputs. "
                "Fix: give --out a new or empty folder, or add --force to write itelib's "
                "files beside the others (an earlier run's itelib files there are replaced)."
            )
        return earlier

    def _make_staging(self, parent: Path) -> Path:
        """The hidden folder in ``parent`` that this run writes into (made now: this is also
        the check that ``parent`` can be written)."""
        missing = [p for p in (parent, *parent.parents) if not p.exists()]
        try:
            for p in reversed(missing):
                p.mkdir()
                self._created.append(p)
            staging = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.itelib-", dir=parent))
        except OSError as err:
            self._remove_created()
            raise OutputError(
                f"--out {self.out}: cannot write in {_nearest_existing(parent)} "
                f"({err.strerror or err}). Fix: give --out a folder you can write to."
            ) from err
        mask = os.umask(0)
        os.umask(mask)
        staging.chmod(0o777 & ~mask)  # the folder a plain mkdir would have made
        return staging

    # -- after the run ---------------------------------------------------------------------
    def commit(self) -> list[Path]:
        """Move every file of :attr:`staging` into ``--out`` together; the final paths."""
        with self._lock:
            if self.state != "open":
                raise OSError(f"the run was {self.state} already")
            names = sorted(_entries(self.staging))
            (self.staging / MANIFEST).write_text("".join(f"{n}\n" for n in names))
            for name in [*names, MANIFEST]:  # on disk before they are moved in
                _fsync(self.staging / name)
            if self._merge:
                self._merge_in(names)
            elif self._old_names is None:
                os.rename(self.staging, self.out)
            else:
                old = self.staging.with_name(self.staging.name + "-old")
                os.rename(self.out, old)
                try:
                    os.rename(self.staging, self.out)
                except OSError:
                    os.rename(old, self.out)  # the earlier outputs back in place
                    raise
                shutil.rmtree(old, ignore_errors=True)
            self.state = "committed"
            _fsync(self.out.absolute().parent, directory=True)
            _fsync(self.out, directory=True)
            return [self.out / n for n in names]

    def _merge_in(self, names: list[str]) -> None:
        for gone in sorted((self._old_names or set()) - set(names) - {MANIFEST}):
            (self.out / gone).unlink(missing_ok=True)
        for name in [*names, MANIFEST]:
            os.replace(self.staging / name, self.out / name)
        self.staging.rmdir()

    def discard(self) -> str:
        """Remove everything this run made (unless it committed); says what ``--out`` holds."""
        with self._lock:
            if self.state == "committed":
                return f"the run had finished: {self.out} holds its outputs"
            if self.state == "discarded":
                return "nothing was written"
            for _ in range(3):  # the main thread may still be writing into it
                shutil.rmtree(self.staging, ignore_errors=True)
                if not self.staging.exists():
                    break
            self._remove_created()
            self.state = "discarded"  # nothing more to do, whatever the main thread does
            if self._old_names is None:
                return "nothing was written"
            return f"nothing was written; {self.out} is as it was"

    def _remove_created(self) -> None:
        for p in reversed(self._created):
            with contextlib.suppress(OSError):
                p.rmdir()
        self._created = []


def _entries(folder: Path) -> list[str]:
    return os.listdir(folder)


def _earlier_outputs(out: Path, entries: set[str]) -> set[str]:
    """The entries of ``out`` that an earlier itelib run wrote: those its manifest lists, or
    (a run from before manifests) itelib's output names when ``diagnostics.json`` is there."""
    manifest = out / MANIFEST
    if manifest.is_file():
        with contextlib.suppress(OSError, UnicodeDecodeError):
            listed = set(manifest.read_text().splitlines()) | {MANIFEST}
            return {n for n in listed & entries if _is_file(out / n)}
    if "diagnostics.json" in entries:
        return {n for n in entries if n in OUTPUT_NAMES and _is_file(out / n)}
    return set()


def _is_file(path: Path) -> bool:
    return path.is_symlink() or path.is_file()


def _in_place_only(out: Path) -> bool:
    """A folder that must not be swapped for another: a link, a mount point, or the working
    folder or one above it (renaming it would pull it from under the shell)."""
    if out.is_symlink() or os.path.ismount(out):
        return True
    return Path.cwd().resolve().is_relative_to(out.resolve())


def _fsync(path: Path, directory: bool = False) -> None:
    with contextlib.suppress(OSError):  # best effort: the outputs are already complete
        fsync_path(path, directory=directory)


def _probe_writable(folder: Path) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OutputError(
            f"--out {folder}: cannot write in it ({err.strerror or err}). Fix: give --out a "
            "folder you can write to."
        ) from err


def _nearest_existing(path: Path) -> Path:
    return next((p for p in (path, *path.parents) if p.exists()), path)


# -- Ctrl-C --------------------------------------------------------------------------------------
@contextlib.contextmanager
def watch_interrupts(command: str, folder: OutputFolder | None) -> Iterator[None]:
    """While the block runs, Ctrl-C or SIGTERM removes ``folder``'s staging, prints one line
    to stderr and ends the process (130 / 143) within a second, wherever the main thread is.
    Outside the main thread (where signals cannot be caught) it watches nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = {s: signal.getsignal(s) for s in EXIT_INTERRUPTED}
    old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    for s in EXIT_INTERRUPTED:
        signal.signal(s, _ignore)  # the Python-level handler: the watcher does the work
    watcher = threading.Thread(
        target=_watch, args=(reader, command, folder), name="itelib-interrupt", daemon=True
    )
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_fd)
        for s, handler in previous.items():
            signal.signal(s, handler)
        writer.close()  # the watcher's recv returns b"" and it ends
        watcher.join(timeout=1)
        reader.close()


def _ignore(signum: int, frame: object) -> None:  # noqa: ARG001
    return None


def _watch(reader: socket.socket, command: str, folder: OutputFolder | None) -> None:
    while True:
        try:
            data = reader.recv(1)
        except OSError:
            return
        if not data:  # the run ended and closed the socket
            return
        if data[0] in EXIT_INTERRUPTED:
            break
    code = EXIT_INTERRUPTED[signal.Signals(data[0])]
    outcome: list[str] = []
    done = threading.Event()

    def clean() -> None:
        outcome.append(folder.discard() if folder is not None else "nothing was written")
        for stream in (sys.stdout, sys.stderr):  # what the run printed so far
            with contextlib.suppress(Exception):
                stream.flush()
        done.set()

    threading.Thread(target=clean, name="itelib-cleanup", daemon=True).start()
    deadline = _CLEANUP_SECONDS
    while not done.is_set() and deadline > 0:
        ready, _, _ = select.select([reader], [], [], 0.05)
        deadline -= 0.05
        if ready:
            again = reader.recv(1)
            if again and again[0] in EXIT_INTERRUPTED:  # a second Ctrl-C: no more waiting
                _last_words(f"itelib {command}: interrupted again; quitting without cleaning up\n")
                os._exit(code)
    if not done.is_set():
        where = "" if folder is None else f" (it may leave {folder.staging})"
        _last_words(f"itelib {command}: interrupted; cleanup did not finish in time{where}\n")
        os._exit(code)
    _last_words(f"itelib {command}: interrupted; {outcome[0]}\n")
    os._exit(code)


def _last_words(line: str) -> None:
    """Say ``line`` as the process's last output: the main thread keeps running until
    ``os._exit`` (a progress bar may redraw), so stderr's descriptor is pointed at /dev/null
    first and the line goes to a private copy of it."""
    try:
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
    except OSError:
        saved = 2  # say it where it would have gone anyway
    _say(line, fd=saved)


def _say(line: str, fd: int = 2) -> None:
    """Write to stderr's file descriptor directly (the main thread may hold sys.stderr)."""
    with contextlib.suppress(OSError):
        if os.isatty(fd):  # below a progress bar's line, not on it
            line = "\n" + line
        os.write(fd, line.encode(errors="replace"))
