"""dlx's child processes: starting them, ending them with their parent, bounding a wait.

Every process dlx starts is started here (or by `dlx.proc.launcher`), so signals, parent death
and timeouts are handled one way:

- `run_as_command`, `is_command`: whether this process is the `dlx` command's own.
- `dlx_command`: the command line of a new `dlx` process (a worker of a job, a sweep's `--jobs`
  process). A child is a new `dlx` command, not an import: the CLI of the child renders its
  own output.
- `die_with_parent`: have this process signalled when its parent dies, even by `kill -9`.
- `dlx.proc.watchdog.bounded`: end this process if a call that holds the interpreter waits too
  long (TensorFlow waiting for a cluster).
- `dlx.proc.signals`: Ctrl-C and SIGTERM as exceptions that cannot be lost, a second one that
  always ends the process, and both held back while a checkpoint is written.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
"""Linux's `prctl` option: the signal a process gets when its parent dies."""


_command = False


def run_as_command() -> None:
    """Say that this process runs the `dlx` command, and so is dlx's own: its long-lived
    objects may be frozen out of the garbage collector's reach (`is_command`)."""
    global _command
    _command = True


def is_command() -> bool:
    """Whether this process runs the `dlx` command (not a program that imports dlx, whose
    objects are its own business)."""
    return _command


def dlx_command(*arguments: str) -> list[str]:
    """The command line that runs `dlx ARGUMENTS` with this interpreter (and this dlx)."""
    return [sys.executable, "-m", "dlx", *arguments]


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Have `sig` sent to this process when its parent dies, even by `kill -9`.

    On Linux the kernel sends it (`PR_SET_PDEATHSIG`); elsewhere a daemon thread watches the
    parent's process id. Called in a child: before `exec` (as a `preexec_fn`, `parent` unset),
    or first thing in the child's own code with the `parent` it expects, so that a parent that
    died before the call is noticed too.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
        if parent is not None and os.getppid() != parent:  # it died before the call
            os.kill(os.getpid(), sig)
        return
    expected = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(1.0)
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, name="dlx-parent-watch", daemon=True).start()
