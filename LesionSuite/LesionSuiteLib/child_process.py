"""Run long LesionSuite work in a child process and follow it without blocking the GUI.

The Slicer widgets start training or cohort inference as ``PythonSlicer -m lesion_core ...``
(see :func:`lesion_core_command`) through :class:`ChildProcess`. A background thread reads
the child's output (stdout and stderr merged) line by line into a queue; the widget calls
:meth:`ChildProcess.poll` from a timer and gets the new events: progress lines written by
:func:`lesion_core.progress.format_progress_line` become :class:`ProgressEvent`, every other
line a :class:`LogEvent`, and the end of the process one :class:`FinishedEvent`.

:meth:`ChildProcess.cancel` stops the whole process tree, grandchildren included (data
loader workers, ``torchrun`` ranks): on POSIX the child leads its own process group, which
gets SIGTERM and, after a grace period, SIGKILL; on Windows ``taskkill /T /F`` ends the tree.

Plain Python: no qt, no slicer, so it is tested in plain pytest and usable from any front-end.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, Union

from lesion_core.progress import parse_progress_line

_IS_WINDOWS = os.name == "nt"


@dataclass(frozen=True)
class ProgressEvent:
    """The child reported ``fraction`` (0..1) of its work done; ``message`` says what runs."""
    fraction: float
    message: str


@dataclass(frozen=True)
class LogEvent:
    """One line of the child's output that is not a progress line (newline stripped)."""
    line: str


@dataclass(frozen=True)
class FinishedEvent:
    """The child ended and all its output was read. ``cancelled``: ended by :meth:`cancel`."""
    returncode: int
    cancelled: bool


Event = Union[ProgressEvent, LogEvent, FinishedEvent]

_EOF = object()


def python_executable() -> str:
    """The interpreter for child processes: ``PythonSlicer`` inside Slicer, else this one.

    Inside the Slicer application ``sys.executable`` is not a plain Python interpreter; its
    ``PythonSlicer`` launcher sets up the same environment for a child. Outside the
    application (tests, the command line, the ``slicer-core`` wheel) it is ``sys.executable``.
    """
    slicer_module = sys.modules.get("slicer")
    if slicer_module is not None and hasattr(slicer_module, "app"):
        launcher = shutil.which("PythonSlicer")
        if launcher:
            return launcher
    return sys.executable


def lesion_core_command(args: Sequence[str], python: str | None = None) -> list[str]:
    """``[python, "-m", "lesion_core", *args]``: the command line of a LesionSuite CLI run."""
    return [python or python_executable(), "-m", "lesion_core", *[str(a) for a in args]]


def command_options(options: Mapping[str, object]) -> list[str]:
    """Command-line options from ``{flag: value}``, in order: a value of None or False
    leaves the flag out, True gives the flag alone, anything else the flag and the value
    as text. E.g. ``{"--model": None, "--t1": True, "--device": "cpu"}`` gives
    ``["--t1", "--device", "cpu"]``."""
    args: list[str] = []
    for flag, value in options.items():
        if value is None or value is False:
            continue
        args += [flag] if value is True else [flag, str(value)]
    return args


def child_env() -> dict[str, str]:
    """``PYTHONPATH`` for child processes, so that they import this ``lesion_core``
    (Slicer's ``PythonSlicer`` does not put the extension's module folders on its path)."""
    import lesion_core

    root = str(Path(lesion_core.__file__).resolve().parent.parent)
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


class ChildProcess:
    """A child process whose output is read in the background and polled for events.

    ``argv`` is the full command line (e.g. from :func:`lesion_core_command`). The process
    starts in the constructor. ``env`` entries are added to this process's environment;
    ``PYTHONUNBUFFERED=1`` is always set so progress lines arrive as they are written.
    """

    def __init__(self, argv: Sequence[str], cwd: str | Path | None = None,
                 env: Mapping[str, str] | None = None):
        self.argv = [str(a) for a in argv]
        self.log: list[str] = []
        self.last_progress: ProgressEvent | None = None
        self._cancelled = False
        self._finished_reported = False
        self._eof = False
        self._queue: queue.Queue = queue.Queue()

        child_env = dict(os.environ)
        child_env.update(env or {})
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env.setdefault("PYTHONIOENCODING", "utf-8")

        popen_kwargs: dict = {}
        if _IS_WINDOWS:
            popen_kwargs["creationflags"] = (subprocess.CREATE_NEW_PROCESS_GROUP
                                             | getattr(subprocess, "CREATE_NO_WINDOW", 0))
        else:
            # The child leads a new session (and process group): cancel() signals the group.
            popen_kwargs["start_new_session"] = True

        self._process = subprocess.Popen(
            self.argv, cwd=str(cwd) if cwd is not None else None, env=child_env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, encoding="utf-8", errors="replace", bufsize=1, **popen_kwargs)
        self._reader = threading.Thread(target=self._read_output, name="lesion-suite-child-reader",
                                        daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ reading
    def _read_output(self) -> None:
        stream = self._process.stdout
        try:
            for line in stream:
                self._queue.put(line.rstrip("\r\n"))
        except (OSError, ValueError):
            pass  # the pipe was closed under us (cancel on some platforms)
        finally:
            self._queue.put(_EOF)

    def _event_for_line(self, line: str) -> Event:
        parsed = parse_progress_line(line)
        if parsed is not None:
            event = ProgressEvent(*parsed)
            self.last_progress = event
            return event
        self.log.append(line)
        return LogEvent(line)

    def poll(self) -> list[Event]:
        """New events since the last call; never blocks.

        The last event of a run is one :class:`FinishedEvent`, delivered once the process
        has ended and all of its output was read; later calls return ``[]``.
        """
        events: list[Event] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _EOF:
                self._eof = True
            else:
                events.append(self._event_for_line(item))
        if self._eof and not self._finished_reported and self._process.poll() is not None:
            self._finished_reported = True
            events.append(FinishedEvent(self._process.returncode, self._cancelled))
        return events

    # ------------------------------------------------------------------ state
    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """Exit status once the child has ended, else ``None`` (negative: killed by signal)."""
        return self._process.poll()

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def wait(self, timeout: float | None = None) -> int:
        """Block until the child ends and its output is read; return its exit status.

        Raises :class:`subprocess.TimeoutExpired` after ``timeout`` seconds.
        """
        returncode = self._process.wait(timeout)
        self._reader.join(timeout)
        return returncode

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` log lines, for an error message when the child failed."""
        return "\n".join(self.log[-lines:])

    # ------------------------------------------------------------------ cancel
    def cancel(self, grace_period: float = 5.0) -> None:
        """End the child and all its descendants; returns once the child has ended.

        POSIX: SIGTERM to the child's process group, then SIGKILL to whatever of the group
        is left after ``grace_period`` seconds. Windows: ``taskkill /T /F`` on the tree.
        """
        if self._process.poll() is None:
            self._cancelled = True
        elif _IS_WINDOWS:
            return
        if _IS_WINDOWS:
            self._cancel_windows()
        else:
            self._cancel_posix(grace_period)

    def _cancel_posix(self, grace_period: float) -> None:
        pgid = self._process.pid  # the child leads its group (start_new_session)
        if not _signal_group(pgid, signal.SIGTERM):
            self._process.poll()
            return  # nothing of the group is left
        deadline = time.monotonic() + max(grace_period, 0.0)
        while time.monotonic() < deadline:
            if self._process.poll() is not None and not _group_alive(pgid):
                return
            time.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)
        self._process.wait()

    def _cancel_windows(self) -> None:
        subprocess.run(["taskkill", "/PID", str(self._process.pid), "/T", "/F"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    # ------------------------------------------------------------- context use
    def __enter__(self) -> "ChildProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.running:
            self.cancel()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member we may not signal; the group still exists


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
