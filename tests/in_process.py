"""`dlx` commands run in the test's own process, through Typer's `CliRunner`.

A `python -m dlx` subprocess pays TensorFlow's import (seconds) before it does anything; where
the process itself is not what a test is about, `dlx_in_process` runs the same command line in
the process that already imported it, and answers as `subprocess.run` would: `returncode`,
`stdout` and `stderr` (Click >= 8.2 keeps them apart), an exception that escaped the command
printed on stderr as its traceback, exit status 1.

What a command changes in the process is put back afterwards: the working directory, the
environment (the variables given and any the command set), `sys.path`, the handlers of SIGINT
and SIGTERM, and the CLI's `--debug` flag. Keep a subprocess (`tests/train/processes.py`)
for what only a process shows: signals and exits by signal, several processes, servers,
start-up cost and imports, and settings TensorFlow reads once when it starts.
"""

import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

from typer.testing import CliRunner

from dlx.cli import app
from dlx.cli.exiting import state as _state

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def dlx_in_process(
    *arguments: str, cwd: Path, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess:
    """Run `dlx ARGUMENTS` in `cwd` with the variables `env` set (`None`: unset), here."""
    saved_cwd, saved_path = os.getcwd(), list(sys.path)
    saved_environment, saved_debug = dict(os.environ), _state["debug"]
    saved_handlers = {number: signal.getsignal(number) for number in SIGNALS}
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(arguments), env=env, catch_exceptions=True)
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        for name in set(os.environ) - set(saved_environment):
            del os.environ[name]
        for name, value in saved_environment.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
        _state["debug"] = saved_debug
        for number, handler in saved_handlers.items():
            if handler is not None:  # None: a handler not set from Python, left as it is
                signal.signal(number, handler)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["dlx", *arguments], result.exit_code, result.stdout, stderr)
