"""Whether a recorded run may be resumed (`dlx train --resume`), and from what.

A run may be resumed when it is FAILED or KILLED, or RUNNING while the process that ran it
(its `dlx.process` tag, `host:pid`) is gone: `kill -9`, a lost machine. It resumes from its
checkpoint folder (its `dlx.checkpoints` tag), which must still exist. Every check that a
resume makes is here; the runner trains the run again (`dlx.train.runner.train`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlx.errors import UsageError
from dlx.track.tags import CHECKPOINTS, PROCESS, RESUMED
from dlx.train.multi_worker import Cluster


@dataclass
class Resume:
    """A run to continue (`dlx train --resume`): its id, store and checkpoint folder."""

    run_id: str
    tracking_uri: str
    checkpoints: Path
    count: int = 1
    """How many times the run has been resumed, this time included (its `dlx.resumed` tag)."""


def this_process() -> str:
    """This process, as `host:pid`: the value of a run's `dlx.process` tag."""
    return f"{socket.gethostname()}:{os.getpid()}"


def resume_point(run: Any, tracking_uri: str) -> Resume:
    """Check that a recorded run may be resumed here, and say what to resume it from.

    The status checks are the chief's: the other workers of a multi-worker job resume the
    run that their chief has checked (and is running by then).

    Args:
        run: the MLflow run (`mlflow.entities.Run`).
        tracking_uri: the store it is in.

    Raises:
        UsageError: the run finished, is still running, or has no checkpoints to resume from.
    """
    run_id, status, tags = run.info.run_id, run.info.status, run.data.tags
    if Cluster.from_environment().is_chief:
        if status == "FINISHED":
            raise UsageError(f"the run {run_id} is FINISHED: there is nothing to resume")
        host, _, pid = tags.get(PROCESS, "").rpartition(":")
        if status == "RUNNING" and host == socket.gethostname() and process_alive(int(pid or 0)):
            raise UsageError(f"the run {run_id} is still running (process {pid} on {host})")
    folder = tags.get(CHECKPOINTS)
    if not folder or not Path(folder).is_dir():
        where = f" ({folder} does not exist)" if folder else ""
        raise UsageError(f"the run {run_id} has no checkpoints to resume from{where}")
    return Resume(run_id, tracking_uri, Path(folder), int(tags.get(RESUMED, "0")) + 1)


def process_alive(pid: int) -> bool:
    """Whether a process of this machine still runs (a zombie, killed but not reaped, does not)."""
    if pid <= 0 or pid == os.getpid():  # a container started again can reuse the old pid
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def gone(process: str) -> bool:
    """Whether the process `host:pid` (a `dlx.process` value) is known to be gone: it ran on
    this machine and is no longer there. A process of another machine is never known gone."""
    host, _, pid = process.rpartition(":")
    return host == socket.gethostname() and not process_alive(int(pid or 0))


__all__ = ["Resume", "gone", "process_alive", "resume_point", "this_process"]
