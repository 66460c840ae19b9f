"""The command line's faults: Ctrl-C mid-fit, and an ``--out`` that cannot take the outputs.

Every case runs ``itelib`` in a fresh process, as a user runs it. Ctrl-C must end a fit within
seconds even inside the compiled sampler, with status 130, one line and no traceback, and leave
nothing of the run behind; ``--out`` is checked before anything is fitted, and a folder holds
the outputs of exactly one run. ``CLI_CASES`` and the command-line table of
docs/bad_inputs.md are kept one for one (``test_docs_match_the_cli_cases``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from itelib import cli_output
from itelib.cli_output import MANIFEST, OutputFolder

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "bad_inputs.md"
# A user's shell, not this test session's XLA devices (conftest.py), with this checkout first.
USER_ENV = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)
}
FOREST = ["--estimator", "causal-forest", "--samples", "100", "--no-progress"]
ITELIB_FILES = {"effects.csv", "ate.csv", "diagnostics.json", "posterior.nc", ".itelib-outputs"}


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "itelib.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=USER_ENV,
    )


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 150
    frame = pd.DataFrame({"age": rng.normal(60, 10, n), "arm": rng.integers(0, 2, n)})
    frame["bp"] = 120 - 5 * frame["arm"] + 0.3 * frame["age"] + rng.normal(0, 5, n)
    path = tmp_path / "trial.csv"
    frame.to_csv(path, index=False)
    return path


def fit_args(csv: Path, out: Path) -> list[str]:
    return ["fit", str(csv), "--outcome", "bp", "--treatment", "arm", "--out", str(out)]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry of a folder (hidden ones too) with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def earlier_run(out: Path) -> dict[str, bytes]:
    """A folder as an earlier itelib run left it (before manifests: itelib's names)."""
    out.mkdir(parents=True)
    (out / "diagnostics.json").write_text('{"estimator": "earlier"}\n')
    (out / "effects.csv").write_text("id,mean\n1,0.5\n")
    (out / "model.nc").write_bytes(b"earlier model")
    return snapshot(out)


def assert_one_error_line(res: subprocess.CompletedProcess, *parts: str) -> None:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("itelib fit: error: "), res.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])


# -- Ctrl-C ------------------------------------------------------------------------------------
def interrupt_while_sampling(args: list[str], sig: int) -> tuple[int, float, str]:
    """Run ``itelib`` with stderr on a terminal (so the progress bar shows), wait until the
    bar has advanced (the process is inside the compiled sampler), send ``sig``; the exit
    status, the seconds from the signal to the exit, and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # tqdm's width
    proc = subprocess.Popen(
        [sys.executable, "-m", "itelib.cli", *args],
        stdout=subprocess.DEVNULL, stderr=slave, env=USER_ENV,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 400
        while not re.search(rb"\| *[1-9]\d*/\d+ \[", seen):  # e.g. "|  50/300100 ["
            assert time.monotonic() < deadline, seen[-2000:]
            assert proc.poll() is None, f"the fit ended before it was interrupted: {seen!r}"
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 65536)
        time.sleep(1.0)  # well inside the sampler: it has 300000 iterations to run
        assert proc.poll() is None, "the fit ended before it was interrupted"
        proc.send_signal(sig)
        sent = time.monotonic()
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"still running 30 s after the signal: {seen[-2000:]!r}")
        elapsed = time.monotonic() - sent
        with contextlib.suppress(OSError):
            while select.select([master], [], [], 0.2)[0]:
                chunk = os.read(master, 65536)
                if not chunk:
                    break
                seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, elapsed, seen.decode(errors="replace")


LONG = ["--chains", "1", "--warmup", "300000", "--samples", "100"]  # minutes, little memory


@pytest.mark.skipif(os.name != "posix", reason="a terminal and SIGINT as on POSIX")
def test_ctrl_c_while_sampling_ends_at_once_and_leaves_nothing(csv: Path) -> None:
    out = csv.parent / "results" / "run1"  # its parent does not exist yet either
    code, elapsed, stderr = interrupt_while_sampling([*fit_args(csv, out), *LONG], signal.SIGINT)
    assert code == 130, stderr[-2000:]
    assert elapsed < 5, elapsed
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert stderr.rstrip().endswith("itelib fit: interrupted; nothing was written"), stderr[-500:]
    assert sorted(p.name for p in csv.parent.iterdir()) == ["trial.csv"]  # no folder, no staging


@pytest.mark.skipif(os.name != "posix", reason="a terminal and SIGTERM as on POSIX")
def test_sigterm_while_sampling_keeps_the_earlier_outputs(csv: Path) -> None:
    out = csv.parent / "out"
    before = earlier_run(out)
    code, elapsed, stderr = interrupt_while_sampling([*fit_args(csv, out), *LONG], signal.SIGTERM)
    assert code == 143 and elapsed < 5, (code, elapsed, stderr[-2000:])
    assert "Traceback" not in stderr
    assert f"nothing was written; {out} is as it was" in stderr
    assert snapshot(out) == before
    assert sorted(p.name for p in csv.parent.iterdir()) == ["out", "trial.csv"]


# -- --out -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CliCase:
    id: str
    what: str
    make: object  # (tmp_path) -> the --out path, after preparing it
    message: tuple[str, ...]


def out_is_file(tmp: Path) -> Path:
    (tmp / "results.csv").write_text("mine\n")
    return tmp / "results.csv"


def out_under_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("mine\n")
    return tmp / "notes.txt" / "out"


def out_foreign_files(tmp: Path) -> Path:
    (tmp / "data").mkdir()
    (tmp / "data" / "cohort.csv").write_text("mine\n")
    return tmp / "data"


def out_read_only(tmp: Path) -> Path:
    earlier_run(tmp / "frozen")
    make_read_only(tmp / "frozen")
    return tmp / "frozen"


def make_read_only(folder: Path) -> None:
    """A folder nobody may write in; for root (who ignores permissions) the immutable flag."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root ignores permissions and chattr is not here")
    res = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"root ignores permissions and chattr +i fails here: {res.stderr!r}")


def make_writable(folder: Path) -> None:
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    with contextlib.suppress(OSError):
        folder.chmod(0o755)


CLI_CASES = [
    CliCase("cli_out_is_file", "--out names a file", out_is_file,
            ("--out", "results.csv is a file, not a folder", "Fix:")),
    CliCase("cli_out_under_file", "--out lies under a file", out_under_file,
            ("--out", "notes.txt is a file, not a folder", "Fix:")),
    CliCase("cli_out_foreign_files", "--out holds files itelib did not write", out_foreign_files,
            ("--out", "holds 1 file(s) itelib did not write (cohort.csv)", "--force")),
    CliCase("cli_out_read_only", "--out is a folder that cannot be written", out_read_only,
            ("--out", "frozen: cannot write in it", "Fix:")),
]  # fmt: skip


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_bad_out_is_refused_before_anything_runs(case: CliCase, tmp_path: Path) -> None:
    """One line naming --out and the fix, exit status 2, nothing changed or left behind; the
    CSV does not exist, so the refusal came before the CSV was read, let alone fitted."""
    work = tmp_path / "work"
    work.mkdir()
    out = case.make(work)
    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    try:
        res = run_cli(*fit_args(tmp_path / "absent.csv", out), *FOREST, timeout=120)
    finally:
        if case.id == "cli_out_read_only":
            make_writable(out)
    assert_one_error_line(res, *case.message)
    assert "absent.csv" not in res.stderr  # --out first
    assert {p: p.read_bytes() for p in work.rglob("*") if p.is_file()} == before
    assert not [p for p in work.rglob(".*itelib-*")], "a staging folder was left behind"


def test_docs_match_the_cli_cases() -> None:
    section = DOCS.read_text().split("## The command line", 1)[-1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(cli_[a-z_]+)` \| ([^|]*) \| exit status 2 \|$", section, re.M)
    assert rows == [(c.id, c.what) for c in CLI_CASES], (
        "docs/bad_inputs.md's command-line table and CLI_CASES differ"
    )


def test_force_writes_beside_other_files_and_a_second_run_replaces_the_first(
    csv: Path,
) -> None:
    """--force keeps the user's file; a second run into the folder removes every file of the
    first (a hierarchical model.nc does not outlive a causal-forest run), and only then."""
    out = out_foreign_files(csv.parent)
    (out / "model.nc").write_bytes(b"an earlier itelib model")
    (out / ".itelib-outputs").write_text("model.nc\n")  # the earlier run's manifest
    res = run_cli(*fit_args(csv, out), *FOREST, "--force")
    assert res.returncode == 0, res.stderr
    assert {p.name for p in out.iterdir()} == ITELIB_FILES | {"cohort.csv"}
    assert (out / "cohort.csv").read_text() == "mine\n"
    assert (out / ".itelib-outputs").read_text().split() == sorted(
        ITELIB_FILES - {".itelib-outputs"}
    )
    first = snapshot(out)
    # a failing run (an unknown column) into the same folder changes nothing
    args = fit_args(csv, out)
    args[args.index("bp")] = "weight"
    bad = run_cli(*args, *FOREST, "--force")
    assert_one_error_line(bad, "weight")
    assert snapshot(out) == first
    assert sorted(p.name for p in csv.parent.iterdir()) == ["data", "trial.csv"]


def test_a_second_run_replaces_an_earlier_runs_folder_as_a_whole(csv: Path) -> None:
    out = csv.parent / "out"
    earlier_run(out)
    res = run_cli(*fit_args(csv, out), *FOREST)
    assert res.returncode == 0, res.stderr
    assert {p.name for p in out.iterdir()} == ITELIB_FILES  # the earlier model.nc is gone
    assert json.loads((out / "diagnostics.json").read_text())["estimator"] == "CausalForest"
    assert sorted(p.name for p in csv.parent.iterdir()) == ["out", "trial.csv"]


# -- the output folder itself, in process ----------------------------------------------------
def stage(folder, **files: str) -> None:
    for name, text in files.items():
        (folder.staging / name).write_text(text)


def test_a_linked_out_stays_a_link_and_the_working_folder_stays_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real"
    before = earlier_run(real)
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    folder = OutputFolder(tmp_path / "link")
    stage(folder, **{"effects.csv": "new\n", "diagnostics.json": "{}\n"})
    folder.commit()
    assert (tmp_path / "link").is_symlink()
    assert {p.name for p in real.iterdir()} == {"effects.csv", "diagnostics.json", MANIFEST}
    assert (real / "effects.csv").read_text() == "new\n" != before["effects.csv"].decode()
    monkeypatch.chdir(real)  # --out . : the shell's folder is written into, never swapped
    inode = os.stat(".").st_ino
    folder = OutputFolder(Path("."))
    stage(folder, **{"ate.csv": "x\n", "diagnostics.json": "{}\n"})
    assert [p.name for p in folder.commit()] == ["ate.csv", "diagnostics.json"]
    assert os.stat(".").st_ino == inode
    assert {p.name for p in real.iterdir()} == {"ate.csv", "diagnostics.json", MANIFEST}


def test_a_failed_move_puts_the_earlier_outputs_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    before = earlier_run(out)
    folder = cli_output.OutputFolder(out)
    stage(folder, **{"effects.csv": "new\n"})
    real_rename, calls = os.rename, []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new folder into place
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(cli_output.os, "rename", rename)
    with pytest.raises(OSError, match="No space"):
        folder.commit()
    monkeypatch.setattr(cli_output.os, "rename", real_rename)
    assert folder.discard() == f"nothing was written; {out} is as it was"
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_interrupt_during_the_move_waits_for_it(tmp_path: Path) -> None:
    """The watcher's cleanup and the main thread's move never interleave: once moved, the
    outputs stay and Ctrl-C says so."""
    folder = OutputFolder(tmp_path / "out")
    stage(folder, **{"effects.csv": "new\n"})
    folder.commit()
    assert folder.discard() == f"the run had finished: {tmp_path / 'out'} holds its outputs"
    assert (tmp_path / "out" / "effects.csv").read_text() == "new\n"


def test_a_second_ctrl_c_ends_a_slow_cleanup_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher, driven through its socket: the first SIGINT starts the cleanup, a second
    one while the cleanup hangs ends the process at once with 130."""
    import socket
    import threading

    release, exits, said = threading.Event(), [], []

    class Hanging:
        staging = Path("staging")

        def discard(self) -> str:
            release.wait(10)  # a cleanup stuck on, say, a network drive
            return "nothing was written"

    class Exited(Exception):
        pass

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise Exited  # ends the watcher here, as os._exit would end everything

    def watch(*args: object) -> None:
        with contextlib.suppress(Exited):
            cli_output._watch(*args)

    monkeypatch.setattr(cli_output.os, "_exit", fake_exit)
    monkeypatch.setattr(cli_output, "_last_words", said.append)
    reader, writer = socket.socketpair()
    watcher = threading.Thread(target=watch, args=(reader, "fit", Hanging()))
    watcher.start()
    writer.send(bytes([signal.SIGINT]))
    time.sleep(0.3)
    assert not exits  # cleaning up
    writer.send(bytes([signal.SIGINT]))
    watcher.join(5)
    release.set()
    assert exits == [130]
    assert said == ["itelib fit: interrupted again; quitting without cleaning up\n"]
    reader.close()
    writer.close()
