"""All-or-nothing outputs: an interrupted or killed write leaves the earlier complete result
(or nothing), never a mix; --out and --stem are checked before any computation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lesion_core import output_folder
from lesion_core.cli import main
from lesion_core.errors import CommandError, UnreadableFileError
from lesion_core.output_folder import WRITING_MARKER, check_complete, publish
from lesion_core.tasks import get_task

NAMES = ("a.bin", "b.bin", "c.json")


def _writer(tag: str, size: int = 1000):
    def write(folder):
        paths = {}
        for name in NAMES:
            (folder / name).write_bytes(tag.encode() * size)
            paths[name] = folder / name
        return paths
    return write


def _tags(folder) -> set[str]:
    return {(folder / n).read_bytes()[:3].decode() for n in NAMES if (folder / n).exists()}


def test_publish_moves_every_file_and_leaves_nothing_behind(tmp_path):
    paths = publish(tmp_path / "out", _writer("old"))
    assert sorted(p.name for p in paths.values()) == sorted(NAMES)
    (tmp_path / "out" / "other_stem.csv").write_text("kept")
    publish(tmp_path / "out", _writer("new"))
    assert _tags(tmp_path / "out") == {"new"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(NAMES + ("other_stem.csv",))


def test_an_interrupted_writer_leaves_the_earlier_result_whole(tmp_path):
    publish(tmp_path / "out", _writer("old"))

    def interrupted(folder):
        _writer("new")(folder)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish(tmp_path / "out", interrupted)
    assert _tags(tmp_path / "out") == {"old"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(NAMES)


def test_ctrl_c_during_the_moves_is_held_until_they_are_done(tmp_path, monkeypatch):
    publish(tmp_path / "out", _writer("old"))
    real_replace = os.replace
    calls = []

    def replace_and_interrupt(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the marker, then the first file: Ctrl-C now
            os.kill(os.getpid(), signal.SIGINT)
        return real_replace(src, dst)

    monkeypatch.setattr(output_folder.os, "replace", replace_and_interrupt)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own
    try:
        with pytest.raises(KeyboardInterrupt):
            publish(tmp_path / "out", _writer("new"))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert _tags(tmp_path / "out") == {"new"}
    assert not (tmp_path / "out" / WRITING_MARKER).exists()


def test_a_folder_killed_mid_move_is_refused_by_the_readers(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / WRITING_MARKER).write_text("[]")
    with pytest.raises(UnreadableFileError, match="interrupted while it was being written"):
        check_complete(folder, "Run it again")
    with pytest.raises(UnreadableFileError, match="interrupted"):
        get_task("ich").read_outputs(folder)


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from lesion_core.output_folder import publish
    tag = sys.argv[2]
    def write(folder):
        paths = {}
        for name in ("a.bin", "b.bin", "c.json"):
            with open(folder / name, "wb") as handle:
                for _ in range(40):
                    handle.write(tag.encode() * 25_000)
                    time.sleep(0.002)
            paths[name] = folder / name
        return paths
    print("start", flush=True)
    publish(Path(sys.argv[1]), write)
""")


def test_sigkill_at_any_moment_leaves_old_or_new_never_a_mix(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(_KILLED_WRITER)
    out = tmp_path / "out"
    publish(out, _writer("old", 1_000_000))
    rng = np.random.default_rng(0)
    for attempt in range(8):
        child = subprocess.Popen([sys.executable, str(script), str(out), f"n{attempt:02d}"],
                                 stdout=subprocess.PIPE)
        child.stdout.readline()
        time.sleep(float(rng.uniform(0.0, 0.35)))
        child.kill()
        child.wait()
        if (out / WRITING_MARKER).exists():  # killed inside the moves: readers refuse
            continue
        tags = _tags(out)
        assert len(tags) == 1, tags
        sizes = {(out / n).stat().st_size for n in NAMES}
        assert sizes in ({3_000_000}, {3 * 25_000 * 40}), sizes
    publish(out, _writer("end"))  # the next run cleans up the killed runs' staging
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)


def test_out_that_cannot_be_a_folder_is_refused_before_work(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out, fragment in ((a_file, "existing file"), (a_file / "sub", "which is a file")):
        with pytest.raises(CommandError, match=fragment):
            output_folder.check_output_folder(out)
        # The input does not even exist: --out is judged first, in one line.
        code = main(["ich", "predict", str(tmp_path / "absent.nii.gz"), "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and fragment in err[0]


@pytest.mark.parametrize("stem", ["../../x", "a/b", "..", "", " x"])
def test_stem_must_be_a_plain_file_name(tmp_path, capsys, stem):
    code = main(["wmh", "predict", str(tmp_path / "absent.nii.gz"), "--stem", stem,
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "plain file name" in err[0]
