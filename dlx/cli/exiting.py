"""How a `dlx` command ends: the exit status each failure maps to (`call_api`, the one place
that decides it), signals, and the exit of a process that imported TensorFlow."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import TypeVar

import typer

from dlx.cli import render

T = TypeVar("T")

state = {"debug": False}
"""The command line's global options: `--debug`."""


def call_api(call: Callable[[], T], show: Callable[[T], None] | None = None) -> T:
    """Call the API and return its result, shown by `show`; on an exception, exit.

    SIGTERM (`timeout`, `docker stop`, Kubernetes) stops the call as Ctrl-C does: a run in
    progress is recorded KILLED, and the exit status is 143. A second signal ends the process
    at once, with a line saying so. A run that fell short of what was asked of it (an error
    with a `result`: `ExpectationError`, an export that differs) is shown all the same, before
    the error.
    """
    from dlx.proc.signals import stops_raised

    try:
        with stops_raised(on_second=_stopped_at_once):
            result = call()
    except (Exception, KeyboardInterrupt) as exc:
        shown = getattr(exc, "result", None)
        if show is not None and shown is not None:
            show(shown)
        status = exit_status(exc)
    else:
        if show is not None:
            show(result)
        return result
    # What the failure left (e.g. TensorFlow's thread pool of a collective that failed) is
    # collected now, while it can still close: at exit it would print "Exception ignored". Here,
    # out of the `except` block, the exception and the frames of its traceback are released.
    gc.collect()
    raise typer.Exit(status)


def _stopped_at_once(signum: int) -> None:
    """What a second Ctrl-C or SIGTERM leaves, said as the process ends at once."""
    import signal

    render.stderr(
        f"dlx: a second {signal.Signals(signum).name}: stopped at once. A run it was recording "
        "may be left RUNNING: `dlx runs` shows it, and `--resume RUN` continues it from its "
        "last checkpoint"
    )


def exit_status(exc: BaseException) -> int:
    """Report an exception to the user and return the exit status it maps to: the one place
    that does. A `DlxError` says what went wrong; anything else is a line naming the exception
    (with `--debug`, every exception but an interrupt is raised again, for its traceback)."""
    from dlx.errors import (
        MAX_MESSAGE,
        DlxError,
        ExitStatus,
        Interrupted,
        no_space_left,
        no_space_message,
        shorten,
    )

    if isinstance(exc, KeyboardInterrupt):
        stopped = exc if isinstance(exc, Interrupted) else Interrupted()
        render.stderr(str(stopped))
        return int(stopped.exit_status)
    if state["debug"]:
        raise exc
    if isinstance(exc, DlxError):
        render.stderr(exc.render())
        return int(exc.exit_status)
    where = no_space_left(exc)
    if where is not None:
        then = "run the command again (a run it left RUNNING continues with `--resume RUN`)"
        render.stderr(f"error: {no_space_message(where, then)}")
        return int(ExitStatus.FAILURE)
    message = shorten(" ".join(str(exc).split()), MAX_MESSAGE)
    what = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    render.stderr(f"error: {what} (--debug for the traceback)")
    return int(ExitStatus.FAILURE)


def exit_at_once(code: object) -> None:
    """End a process that imported TensorFlow without tearing the interpreter down.

    Python's own exit frees every module and object one by one, and TensorFlow's runtime
    with them: a second or more after a training has been recorded, for nothing. What an exit
    must still do is done here, in Python's order: other threads that are not daemons are
    waited for, the `atexit` functions run (logging's flush, temporary folders, MLflow's and
    TensorFlow's own), and the output is flushed; then the process ends with `code`, as
    `SystemExit(code)` would end it.
    """
    import atexit
    import os
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        sys.stderr.write(f"{code}\n")
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`dlx train ... | head`): as Python does
            status = status or 120
    os._exit(status)
