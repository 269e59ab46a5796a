"""`dlx train SPEC --workers N`: a multi-worker job on this machine, for trying one out.

The launcher starts N `dlx train` processes on 127.0.0.1, each with the `TF_CONFIG` a cluster
manager would give it (free ports, worker 0 the chief), shows the chief's output as its own,
keeps the others' in log files, and returns the chief's exit status. Every wait is bounded and
no child outlives it:

- a worker that never joins: every worker gives up after `timeout` seconds
  (`DLX_WORKER_TIMEOUT`, see `dlx.train.strategy`);
- a worker that dies: the chief gets `grace` seconds to record the run as FAILED (its
  collectives fail within seconds), then every child left is killed with SIGKILL (a worker
  blocked in a collective ignores SIGTERM); a chief that fails leaves the others 5 seconds;
- Ctrl-C or SIGTERM: forwarded to the chief (it records the run KILLED), then the same grace
  and SIGKILL; the launcher exits 130 or 143 as the chief does;
- the launcher itself killed: the children get SIGKILL from the kernel (Linux's
  `PR_SET_PDEATHSIG`).

Nothing here imports TensorFlow: the launcher only supervises. It prints nothing either: what
it has to say goes to its caller's `report` (the CLI writes it to stderr).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from dlx.errors import Interrupted, Terminated
from dlx.proc import die_with_parent, dlx_command
from dlx.proc.signals import stops_raised

_POLL_SECONDS = 0.2
_LOG_TAIL_LINES = 20


def launch(
    arguments: Sequence[str],
    workers: int,
    *,
    timeout: float = 300,
    grace: float = 60,
    report: Callable[[str], None] = lambda line: None,
) -> int:
    """Run `dlx ARGUMENTS` as a job of `workers` local workers; the chief's exit status.

    Args:
        arguments: the `dlx` command line each worker runs (e.g. `["train", "spec.yaml"]`).
        workers: how many workers (2 or more).
        timeout: seconds a worker waits for the others to join.
        grace: seconds the chief gets to finish after another worker died or an interrupt.
        report: called with each line the launcher has to say (the workers started, a worker
            that exited, an interrupt).
    """
    ports = _free_ports(workers)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    logs = Path(tempfile.mkdtemp(prefix="dlx-workers-"))
    report(
        f"dlx: {workers} workers on 127.0.0.1 (ports {', '.join(map(str, ports))}); "
        f"worker 0 is the chief, the others log to {logs}"
    )
    children: list[subprocess.Popen] = []
    try:
        with stops_raised():
            for index in range(workers):
                task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
                environment = {
                    **os.environ,
                    "TF_CONFIG": json.dumps(task),
                    "DLX_WORKER_TIMEOUT": f"{timeout:g}",
                }
                output = None if index == 0 else (logs / f"worker-{index}.log").open("wb")
                children.append(
                    subprocess.Popen(
                        dlx_command(*arguments),
                        env=environment,
                        stdout=output,
                        stderr=None if output is None else subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,  # signals reach them through the launcher
                        preexec_fn=die_with_parent,
                    )
                )
                if output is not None:
                    output.close()
            status = _supervise(children, logs, grace, report)
            if status < 0:  # the chief was killed by a signal: as a shell says it, 128 + N
                status = 128 - status
            if status == 0:
                shutil.rmtree(logs, ignore_errors=True)  # kept when something went wrong
            return status
    except KeyboardInterrupt as exc:
        stopped = exc if isinstance(exc, Interrupted) else Interrupted()
        if children:
            with contextlib.suppress(ProcessLookupError):
                children[0].send_signal(
                    signal.SIGTERM if isinstance(stopped, Terminated) else signal.SIGINT
                )
            _wait(children[:1], grace)
        report(f"dlx: {stopped.cause}; workers stopped")
        return int(stopped.exit_status)
    finally:
        _kill(children)


def _supervise(
    children: list[subprocess.Popen], logs: Path, grace: float, report: Callable[[str], None]
) -> int:
    chief = children[0]
    while True:
        if chief.poll() is not None:
            # The job is over: the others end with it (after a failed chief, nothing is left
            # for them to finish: a few seconds, then SIGKILL).
            _wait(children[1:], grace if chief.returncode == 0 else min(grace, 5))
            for index, child in enumerate(children[1:], start=1):
                if child.poll() not in (0, None):
                    report(_exited(index, child, logs))
            return chief.returncode
        for index, child in enumerate(children[1:], start=1):
            if child.poll() not in (0, None):
                report(_exited(index, child, logs))
                _wait([chief], grace)
                return chief.returncode if chief.returncode not in (0, None) else 1
        time.sleep(_POLL_SECONDS)


def _exited(index: int, child: subprocess.Popen, logs: Path) -> str:
    """What to say of a worker that exited with an error: its status and its log's end."""
    path = logs / f"worker-{index}.log"
    lines = path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(
        [
            f"dlx: worker {index} exited with status {child.returncode}; the end of {path}:",
            *(f"  {line}" for line in lines),
        ]
    )


def _wait(children: Sequence[subprocess.Popen], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=max(0.0, deadline - time.monotonic()))


def _kill(children: Sequence[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
    for child in children:
        child.wait()


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (held open together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
