"""A bound on a wait that holds the interpreter: a watchdog process ends this one when it is up."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def bounded(timeout: float, message: str) -> Iterator[None]:
    """End this process with SIGKILL if the block waits longer than `timeout` seconds.

    TensorFlow waits for a cluster (its workers, a TPU) inside one call that holds the
    interpreter, and ignores SIGTERM meanwhile: a worker that never comes would keep it waiting
    for ever. So a small watchdog process ends this one with SIGKILL when the time is up,
    writing `message` to the standard error they share, unless the block is over by then.
    """
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout), message],
        stdin=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        watchdog.kill()
        watchdog.wait()


_WATCHDOG = """
import os, signal, sys, time
pid, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    if os.getppid() != pid:
        sys.exit()
    time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
if os.getppid() == pid:
    print(message, file=sys.stderr, flush=True)
    os.kill(pid, signal.SIGKILL)
"""
