"""Saved files that cannot lie (issue 23, items 2, 3 and 7): every byte of a saved model or
posterior is verified before any parser reads it, a damaged file is refused with ``ValueError``
at once, and a save that fails (full disk, Ctrl-C, ``kill -9``) leaves the previous file whole.

No fit here: the model is the format-1 file in tests/data (written before files had a header),
loaded and saved again, so the tests take seconds. The file layout is described in
:mod:`itelib._io`.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import itelib
import itelib._io as fileio
from itelib._io import FRAME_SIZE, read_datatree, write_datatree

DATA = Path(__file__).parent / "data"
LEGACY_MODEL = DATA / "saved_hierarchical_v1.nc"
# an edit with h5py changes the content's SHA-256, and often its length too
DAMAGED = r"(SHA-256 of its content differs|bytes of content, its header says).*damaged"


@pytest.fixture(scope="module")
def model() -> itelib.HierarchicalITE:
    return itelib.HierarchicalITE.load(LEGACY_MODEL)


@pytest.fixture(scope="module")
def model_bytes(model, tmp_path_factory) -> bytes:
    return model.save(tmp_path_factory.mktemp("model") / "model.nc").read_bytes()


@pytest.fixture(scope="module")
def posterior(model) -> itelib.EffectPosterior:
    post = model.effect()
    return post.sel(post.patient_ids[:8])


@pytest.fixture(scope="module")
def posterior_bytes(posterior, tmp_path_factory) -> bytes:
    return posterior.save(tmp_path_factory.mktemp("post") / "effects.nc").read_bytes()


def flipped(data: bytes, position: int, xor: int) -> bytes:
    out = bytearray(data)
    out[position] ^= xor
    return bytes(out)


def reframe(path: Path) -> None:
    """Recompute the header after editing the HDF5 content in place (as a tool that knew the
    layout would): what is left to catch such an edit are the checks inside the content."""
    data = path.read_bytes()
    payload = data[FRAME_SIZE:]
    path.write_bytes(fileio._frame(len(payload), hashlib.sha256(payload).hexdigest(), "estimator")
                     + payload)  # fmt: skip


# ----------------------------------------------------------------------- the fuzz test (bar)
def fuzz_every_byte(data: bytes, path: Path, load, same, monkeypatch) -> dict[str, int]:
    """Flip every byte of ``data`` (written at ``path``) in turn and load it.

    The one-bit flips of the issue: each byte of the content gets one, of bit ``position % 8``
    (so every bit position occurs throughout the file), and each of the 512 bytes of the
    header gets all eight. Each flip must be refused with ``ValueError`` within a second
    without the netCDF parser ever running (so it cannot hang, nor raise h5py's errors), or
    load ``same`` as the original. Exhaustive over every byte of the file rather than a
    sample: a refusal costs one SHA-256 of the file (0.1-0.2 ms for these 70 KB and 20 KB
    files), so the ~95,000 loads take about 10-15 s on two cores.
    """
    parsed: list[object] = []
    parse = fileio._parse

    def spy(source):
        parsed.append(source)
        return parse(source)

    monkeypatch.setattr(fileio, "_parse", spy)
    flips = [(i, 1 << bit) for i in range(FRAME_SIZE) for bit in range(8)]
    flips += [(i, 1 << (i % 8)) for i in range(FRAME_SIZE, len(data))]
    counts = {"refused": 0, "loaded": 0}
    worst = 0.0
    fd = os.open(path, os.O_RDWR)
    try:
        for position, xor in flips:
            os.pwrite(fd, bytes([data[position] ^ xor]), position)
            start = time.perf_counter()
            try:
                back = load(path)
            except ValueError as err:
                counts["refused"] += 1
                assert not parsed, f"flip at byte {position} reached the parser: {err}"
            else:
                counts["loaded"] += 1
                assert same(back), f"flip at byte {position} (^{xor}) loaded other numbers"
                parsed.clear()
            worst = max(worst, time.perf_counter() - start)
            os.pwrite(fd, data[position : position + 1], position)
    finally:
        os.close(fd)
    assert worst < 1.0, f"the slowest refusal took {worst:.2f} s"
    assert counts["refused"] + counts["loaded"] == len(flips)
    return counts


def test_every_byte_flip_of_a_saved_model_is_refused(model, model_bytes, tmp_path, monkeypatch):
    path = tmp_path / "model.nc"
    path.write_bytes(model_bytes)
    expected = model.effect().draws()

    def same(back) -> bool:
        return np.array_equal(back.effect().draws(), expected)

    counts = fuzz_every_byte(model_bytes, path, itelib.HierarchicalITE.load, same, monkeypatch)
    # with a digest of every byte, no flip can load at all
    assert counts["loaded"] == 0
    assert path.read_bytes() == model_bytes
    assert same(itelib.HierarchicalITE.load(path))


def test_every_byte_flip_of_a_posterior_file_is_refused(
    posterior, posterior_bytes, tmp_path, monkeypatch
):
    path = tmp_path / "effects.nc"
    path.write_bytes(posterior_bytes)
    expected = posterior.draws()

    def same(back) -> bool:
        return np.array_equal(back.draws(), expected) and back.attrs == posterior.attrs

    counts = fuzz_every_byte(posterior_bytes, path, itelib.EffectPosterior.load, same, monkeypatch)
    assert counts["loaded"] == 0


def test_every_byte_flip_of_a_saved_causal_forest_is_refused(tmp_path, monkeypatch):
    """A CausalForest file (training rows + recipe + fingerprint; loading refits) is refused
    on any flip before the parser, so before any refit (about 31,000 loads of a 27 KB file: 6 s)."""
    from itelib.simulate import simulate

    trial = simulate("multisite_rct", n=100, seed=1)
    est = itelib.CausalForest(n_estimators=40, cv=2, n_jobs=1, random_state=0)
    data = est.fit(**trial.fit_kwargs()).save(tmp_path / "forest.nc").read_bytes()
    path = tmp_path / "flipped.nc"
    path.write_bytes(data)
    expected = est.effect().draws()

    def same(back) -> bool:
        return np.array_equal(back.effect().draws(), expected)

    counts = fuzz_every_byte(data, path, itelib.CausalForest.load, same, monkeypatch)
    assert counts["loaded"] == 0
    assert same(itelib.CausalForest.load(path))  # the unflipped file loads (refits)


# ----------------------------------------------------------- item 2: the metadata is covered
def test_a_changed_digit_of_outcome_scale_is_refused(model_bytes, tmp_path):
    """The issue's case: 1.294 -> 3.294 in the JSON metadata multiplied every effect by 2.5."""
    match = re.search(rb'"outcome_scale": (\d)', model_bytes)
    assert match is not None
    digit = match.start(1)
    other = b"3" if model_bytes[digit : digit + 1] != b"3" else b"4"
    path = tmp_path / "model.nc"
    path.write_bytes(model_bytes[:digit] + other + model_bytes[digit + 1 :])
    with pytest.raises(ValueError, match="SHA-256 of its content differs.*Fix: use another copy"):
        itelib.HierarchicalITE.load(path)


def test_swapped_site_labels_are_refused(model_bytes, tmp_path):
    """Swapping two sites' labels in the metadata would give each the other's effect."""
    match = re.search(rb'"site_index": \{[^}]*"levels": \["([^"]+)", "([^"]+)"', model_bytes)
    assert match is not None
    first, second = match.group(1), match.group(2)
    assert len(first) == len(second)
    data = bytearray(model_bytes)
    data[match.start(1) : match.end(1)] = second
    data[match.start(2) : match.end(2)] = first
    path = tmp_path / "model.nc"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256 of its content differs"):
        itelib.HierarchicalITE.load(path)


def test_emptied_checksums_are_refused(model_bytes, tmp_path):
    """An empty list of array checksums no longer turns the check off (issue: it did)."""
    path = tmp_path / "model.nc"
    path.write_bytes(model_bytes)
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs["metadata"])
        assert meta["checksums"]
        f.attrs["metadata"] = json.dumps(meta | {"checksums": {}})
    with pytest.raises(ValueError, match=DAMAGED):
        itelib.HierarchicalITE.load(path)  # caught first by the file's header
    reframe(path)
    with pytest.raises(ValueError, match="list of array checksums is empty"):
        itelib.HierarchicalITE.load(path)  # and by the array checks behind it


def test_an_added_array_is_refused(model_bytes, tmp_path):
    path = tmp_path / "model.nc"
    path.write_bytes(model_bytes)
    with h5py.File(path, "r+") as f:
        f["posterior"].create_dataset("planted", data=np.arange(3.0))
    reframe(path)
    with pytest.raises(ValueError, match=r"holds arrays \['/posterior/planted'\] that were not"):
        itelib.HierarchicalITE.load(path)


def test_format_version_that_is_not_a_number(model, tmp_path):
    """Lower list: format_version="abc" gave a raw int() error."""
    tree = read_datatree(model.save(tmp_path / "model.nc"), what="estimator").tree
    tree.attrs["format_version"] = "abc"
    write_datatree(tmp_path / "model.nc", tree, kind="estimator")
    with pytest.raises(ValueError, match="format_version 'abc', not an integer.*damaged"):
        itelib.HierarchicalITE.load(tmp_path / "model.nc")


def test_header_of_a_newer_itelib(model_bytes, tmp_path):
    path = tmp_path / "model.nc"
    path.write_bytes(model_bytes.replace(b"itelib-file 1\n", b"itelib-file 2\n", 1))
    with pytest.raises(ValueError, match="header version 2; this itelib reads version 1"):
        itelib.HierarchicalITE.load(path)


def test_saved_files_open_as_plain_netcdf(model_bytes, posterior_bytes, posterior, tmp_path):
    """The header is an HDF5 user block: xarray and h5py read the files as they are."""
    import xarray as xr

    assert model_bytes.startswith(b"itelib-file 1\nkind estimator\n")
    assert posterior_bytes.startswith(b"itelib-file 1\nkind posterior\n")
    path = tmp_path / "effects.nc"
    path.write_bytes(posterior_bytes)
    with h5py.File(path, "r") as f:
        assert f.userblock_size == FRAME_SIZE
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        drawn = tree["posterior"]["effect"].values
    np.testing.assert_array_equal(drawn, posterior.draws())


# -------------------------------------------- files from before the header: still loaded
def test_format_1_files_still_load_through_the_array_checksums(model, tmp_path):
    """tests/data's model has no header: it loads, checked by its array checksums only."""
    assert LEGACY_MODEL.read_bytes().startswith(b"\x89HDF\r\n\x1a\n")
    read = read_datatree(LEGACY_MODEL, what="estimator")
    assert read.verified is False
    path = tmp_path / "old.nc"
    path.write_bytes(LEGACY_MODEL.read_bytes())
    with h5py.File(path, "r+") as f:
        f["posterior/tau0"][0, 0] += 1.0
    with pytest.raises(ValueError, match=r"damaged.*posterior/tau0"):
        itelib.HierarchicalITE.load(path)


def test_format_1_posterior_files_still_load(posterior, tmp_path):
    path = tmp_path / "old_effects.nc"
    posterior.to_datatree().to_netcdf(path, engine="h5netcdf")  # what save() wrote before
    back = itelib.EffectPosterior.load(path)
    np.testing.assert_array_equal(back.draws(), posterior.draws())


# item 3: flips of the format-1 file (found by a seeded search) on which h5py or h5netcdf
# raised AttributeError and KeyError instead of the documented ValueError
@pytest.mark.parametrize(
    ("position", "xor", "raised"), [(20975, 220, "AttributeError"), (10259, 160, "KeyError")]
)
def test_parser_errors_of_format_1_files_are_value_errors(position, xor, raised, tmp_path):
    path = tmp_path / "old.nc"
    path.write_bytes(flipped(LEGACY_MODEL.read_bytes(), position, xor))
    with pytest.raises(ValueError, match=f"not a readable netCDF4 file.*{raised}") as info:
        itelib.HierarchicalITE.load(path)
    assert type(info.value.__cause__).__name__ == raised


def test_not_hdf5_and_not_itelib(tmp_path):
    path = tmp_path / "notes.nc"
    path.write_bytes(b"\x00" * 600)
    with pytest.raises(ValueError, match="neither itelib's header nor the HDF5 signature"):
        itelib.EffectPosterior.load(path)


# ----------------------------------------------------------------- item 7: failed saves
class FullDisk:
    """``open`` for itelib._io whose files fill the disk after ``room`` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room

    def __call__(self, file, mode="r", *args, **kwargs):
        handle = builtins.open(file, mode, *args, **kwargs)
        if "x" not in mode and "w" not in mode:
            return handle
        room = self.room
        real_write = handle.write

        class Handle:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def write(self, data):
                nonlocal room
                if len(data) > room:
                    real_write(bytes(data[:room]))
                    room = 0
                    raise OSError(errno.ENOSPC, "No space left on device")
                room -= len(data)
                return real_write(data)

        return Handle()


@pytest.mark.parametrize("what", ["model", "posterior"])
def test_a_full_disk_keeps_the_old_file(what, model, posterior, tmp_path, monkeypatch):
    obj = model if what == "model" else posterior
    path = obj.save(tmp_path / "file.nc")
    before = path.read_bytes()
    monkeypatch.setattr(fileio, "open", FullDisk(room=10_000), raising=False)
    with pytest.raises(OSError, match="could not write.*No space left.*previous content is unch"):
        obj.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["file.nc"]  # no temporary left
    type(obj).load(path)


def test_a_full_disk_before_the_first_save(posterior, tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "open", FullDisk(room=0), raising=False)
    with pytest.raises(OSError, match="nothing was written") as info:
        posterior.save(tmp_path / "effects.nc")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_kill_9_during_a_save_leaves_a_visible_file_that_the_next_save_removes(posterior, tmp_path):
    """kill -9 cannot be caught: it leaves ``<target>.itelib-partial-<pid>-<hex>`` beside the
    target (not hidden); load refuses it by name, and the next save to the target removes it."""
    target = tmp_path / "effects.nc"
    posterior.save(target)
    before = target.read_bytes()
    child = textwrap.dedent(
        f"""
        import sys, time
        from itelib._io import atomic_write
        def write(tmp):
            with open(tmp, "xb") as handle:
                handle.write(b"patient-level data, half written")
                handle.flush()
                print("writing", flush=True)
                time.sleep(60)
        atomic_write({str(target)!r}, write)
        """
    )
    with subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout.readline().strip() == "writing"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    left = [p for p in tmp_path.iterdir() if p != target]
    assert len(left) == 1
    assert re.fullmatch(rf"effects\.nc\.itelib-partial-{proc.pid}-[0-9a-f]{{8}}", left[0].name)
    assert target.read_bytes() == before
    with pytest.raises(ValueError, match="temporary file of a save that did not finish"):
        itelib.EffectPosterior.load(left[0])
    posterior.save(target)
    assert [p.name for p in tmp_path.iterdir()] == ["effects.nc"]


def test_a_live_saves_temporary_file_is_left_alone(posterior, tmp_path):
    """Only a dead process's temporary file is removed: ours (a live pid) stays."""
    live = tmp_path / f"effects.nc.itelib-partial-{os.getppid()}-0123abcd"
    live.write_bytes(b"another save in progress")
    other = tmp_path / "effects.nc.itelib-partial-notes"
    other.write_bytes(b"not ours")
    posterior.save(tmp_path / "effects.nc")
    assert live.exists() and other.exists()
