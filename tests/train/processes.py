"""Processes for the multi-process tests: bounded runs of `dlx`, and the ones left behind.

Every wait here has a hard bound: a test that hangs is a failure, never a stuck CI job.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DLX = [sys.executable, "-m", "dlx"]
BOUND_S = 240


def dlx(*arguments: str, cwd: Path, env: dict | None = None, timeout: float = BOUND_S):
    """Run `dlx ARGUMENTS` to its end (at most `timeout` seconds; then it is killed)."""
    return subprocess.run(
        [*DLX, *arguments],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(*arguments: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """Start `dlx ARGUMENTS` in its own process group (stop it with `kill_group`), with
    Ctrl-C's default meaning, as a shell starts a command: a signal a test process ignores
    would be ignored by its children too."""
    return subprocess.Popen(
        [*DLX, *arguments],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_default_signals,
    )


def _default_signals() -> None:
    """In the child, before `exec`: SIGINT and SIGTERM back to their defaults."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def tf_config(ports: list[int], index: int) -> str:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def wait_for(
    condition,
    what: str,
    timeout: float = BOUND_S,
    every: float = 0.02,
    job: subprocess.Popen | None = None,
):
    """Poll `condition()` until it returns something truthy; fail after `timeout` seconds, or
    at once if `job` (a `start`ed process that should bring it about) ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if job is not None and job.poll() is not None:
            output = job.stdout.read() if job.stdout else ""
            raise AssertionError(
                f"the process ended (status {job.returncode}) before {what}:\n{output[-3000:]}"
            )
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def journal_lines(cwd: Path) -> int:
    """Epochs journaled so far by the run training in `cwd` (its `metrics.jsonl`)."""
    journals = list(cwd.glob("dlx-checkpoints/*/metrics.jsonl"))
    return len(journals[0].read_text().splitlines()) if journals else 0


def processes_with(variable: str, value: str) -> list[int]:
    """Live (not zombie) processes whose environment has `variable=value`, this test's marker."""
    found = []
    needle = f"{variable}={value}".encode()
    for folder in Path("/proc").iterdir():
        if not folder.name.isdigit():
            continue
        try:
            if needle not in (folder / "environ").read_bytes().split(b"\0"):
                continue
            state = (folder / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(folder.name))
    return found


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)
