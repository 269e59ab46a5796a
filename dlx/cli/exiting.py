"""How `dlx` ends a process that imported TensorFlow."""

from __future__ import annotations

import sys


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
