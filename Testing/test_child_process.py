"""LesionSuiteLib.child_process: progress parsing, log lines, exit codes, cancelling a tree."""

from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest

from lesion_core.progress import PROGRESS_LINE_PREFIX, format_progress_line
from LesionSuiteLib.child_process import (
    ChildProcess, FinishedEvent, LogEvent, ProgressEvent, lesion_core_command,
)


def _script(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def _collect(child: ChildProcess, timeout: float = 30.0) -> list:
    """Poll until the FinishedEvent arrives; return every event in order."""
    events: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events.extend(child.poll())
        if events and isinstance(events[-1], FinishedEvent):
            return events
        time.sleep(0.02)
    child.cancel(grace_period=0.5)
    raise AssertionError(f"child did not finish in {timeout}s; events so far: {events}")


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie waiting to be reaped counts as ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return True


def _wait_for_log(child: ChildProcess, prefix: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.poll()
        for line in child.log:
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        time.sleep(0.02)
    raise AssertionError(f"no line starting with {prefix!r}; log: {child.log}")


def test_progress_lines_become_events_and_other_lines_log():
    lines = [format_progress_line(0.0, "starting"), "plain line one",
             format_progress_line(0.5, "half  way   there"), "plain line two",
             format_progress_line(1.0, "done")]
    body = "import sys, time\n" + "".join(
        f"print({line!r}); sys.stdout.flush(); time.sleep(0.05)\n" for line in lines)
    body += "print('to stderr', file=sys.stderr)\n"
    child = ChildProcess(_script(body))
    events = _collect(child)

    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert [(e.fraction, e.message) for e in progress] == [
        (0.0, "starting"), (0.5, "half way there"), (1.0, "done")]
    logs = [e.line for e in events if isinstance(e, LogEvent)]
    assert logs == ["plain line one", "plain line two", "to stderr"]
    assert child.log == logs
    assert child.last_progress == ProgressEvent(1.0, "done")
    assert events[-1] == FinishedEvent(0, False)
    assert child.returncode == 0
    assert child.poll() == []  # the FinishedEvent comes once


def test_events_arrive_while_the_child_still_runs():
    body = f"""
        import sys, time
        print({format_progress_line(0.25, 'first')!r}, flush=True)
        time.sleep(30)
    """
    child = ChildProcess(_script(body))
    try:
        deadline = time.monotonic() + 20
        seen = []
        while not seen and time.monotonic() < deadline:
            seen = [e for e in child.poll() if isinstance(e, ProgressEvent)]
            time.sleep(0.02)
        assert seen == [ProgressEvent(0.25, "first")]
        assert child.running and child.returncode is None
    finally:
        child.cancel(grace_period=1.0)


def test_nonzero_exit_code_is_reported():
    child = ChildProcess(_script("""
        import sys
        print("lesion-suite: something went wrong", file=sys.stderr)
        sys.exit(3)
    """))
    events = _collect(child)
    assert events[-1] == FinishedEvent(3, False)
    assert child.returncode == 3
    assert child.wait(5) == 3
    assert "something went wrong" in child.log_tail()


def test_uncaught_exception_gives_exit_code_1_and_traceback_in_log():
    child = ChildProcess(_script("raise RuntimeError('boom')"))
    events = _collect(child)
    assert events[-1].returncode == 1
    assert any("RuntimeError: boom" in line for line in child.log)


@pytest.mark.skipif(os.name == "nt", reason="process groups and /proc are POSIX")
@pytest.mark.parametrize("grandchild_ignores_sigterm", [False, True])
def test_cancel_kills_child_and_grandchild(grandchild_ignores_sigterm):
    grandchild_code = ("import signal, time; "
                       + ("signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          if grandchild_ignores_sigterm else "")
                       + "time.sleep(120)")
    body = f"""
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", {grandchild_code!r}])
        print("grandchild-pid", grandchild.pid, flush=True)
        for step in range(1000):
            print({PROGRESS_LINE_PREFIX!r}, step / 1000, "working", flush=True)
            time.sleep(0.05)
    """
    child = ChildProcess(_script(body))
    grandchild_pid = int(_wait_for_log(child, "grandchild-pid"))
    assert _pid_alive(grandchild_pid)
    deadline = time.monotonic() + 20
    while child.last_progress is None and time.monotonic() < deadline:
        child.poll()
        time.sleep(0.02)
    assert child.running

    started = time.monotonic()
    child.cancel(grace_period=1.0)
    assert time.monotonic() - started < 15

    events = _collect(child, timeout=10)
    assert child.last_progress.message == "working"
    finished = events[-1]
    assert isinstance(finished, FinishedEvent) and finished.cancelled
    assert finished.returncode != 0
    assert child.cancelled and not child.running

    deadline = time.monotonic() + 10
    while _pid_alive(grandchild_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(grandchild_pid), "grandchild survived cancel()"


def test_cancel_after_normal_exit_is_harmless():
    child = ChildProcess(_script("print('bye')"))
    events = _collect(child)
    child.cancel(grace_period=0.1)
    assert events[-1] == FinishedEvent(0, False)
    assert not child.cancelled


def test_context_manager_cancels_a_running_child():
    with ChildProcess(_script("import time; time.sleep(60)")) as child:
        assert child.running
    assert not child.running and child.cancelled


def test_lesion_core_command_runs_this_interpreter_with_the_module():
    argv = lesion_core_command(["wmh", "predict", 3])
    assert argv == [sys.executable, "-m", "lesion_core", "wmh", "predict", "3"]
    assert lesion_core_command(["x"], python="py")[0] == "py"


def test_env_and_cwd_are_passed(tmp_path):
    child = ChildProcess(_script("import os; print(os.environ['LS_TEST_VALUE'], os.getcwd())"),
                         cwd=tmp_path, env={"LS_TEST_VALUE": "forty-two"})
    _collect(child)
    value, cwd = child.log[0].split(" ", 1)
    assert value == "forty-two"
    assert os.path.samefile(cwd, tmp_path)
