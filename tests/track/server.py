"""A real `mlflow server` for tests: started, stopped and started again on the same port and store.

```python
server = MlflowServer(tmp_path / "server")
server.start()          # answers `/health` when this returns
MlflowClient(server.url).search_experiments()
server.stop()           # every process of it gone, the port closed
server.start()          # the same URL, the same runs
server.stop()
```

The server runs in a process group of its own, so `stop` ends the processes it starts too.
Every wait is bounded: a server that does not start or stop in time raises `ServerError`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 10


class ServerError(RuntimeError):
    """The server did not start or stop in time, or exited by itself (its log is attached)."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """An `mlflow server` on 127.0.0.1: a SQLite store and served artifacts, in `folder`.

    Args:
        folder: where the store (`mlflow.db`), the artifacts (`mlartifacts/`) and the server's
            log (`server.log`, appended to by every start) are; created if missing.
        port: the port to listen on; default: a free one, kept across restarts.
    """

    def __init__(self, folder: Path, port: int | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.folder / "server.log"
        self.starts = 0
        """How many times the server was started."""
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()  # start and stop may be called from another thread

    @property
    def running(self) -> bool:
        return self._process is not None

    def command(self) -> list[str]:
        mlflow = Path(sys.executable).with_name("mlflow")
        return [
            str(mlflow),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.folder / "mlartifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the server and return once it answers `/health` (within `timeout` seconds).

        Raises:
            ServerError: it is already running, exited, or did not answer in time (it is
                stopped then).
        """
        with self._lock:
            if self._process is not None:
                raise ServerError(f"the server at {self.url} is already running")
            # Background jobs (for GenAI evaluation) start a dozen extra processes; runs need none.
            env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
            with open(self.log, "a") as out:
                out.write(f"--- start {self.starts + 1} ---\n")
                out.flush()
                self._process = subprocess.Popen(
                    self.command(),
                    cwd=self.folder,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: `stop` ends all of it
                )
            self.starts += 1
            try:
                self._wait_until_healthy(self._process, timeout)
            except BaseException:
                self._stop()
                raise

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the server and every process it started: SIGTERM, then SIGKILL.

        Each signal is given `timeout` seconds; nothing happens when it is not running.

        Raises:
            ServerError: some process of it outlived SIGKILL.
        """
        with self._lock:
            self._stop(timeout)

    def __enter__(self) -> MlflowServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _wait_until_healthy(self, process: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerError(
                    f"mlflow server exited with {process.returncode}:\n{self.log_text()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise ServerError(f"mlflow server did not answer within {timeout} s:\n{self.log_text()}")

    def _stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        group = process.pid  # the group's id is its leader's pid (`start_new_session`)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            if _group_ended(process, group, timeout):
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)  # reap the leader, whatever happened
        if not _group_ended(process, group, 0):
            raise ServerError(f"processes of the mlflow server (group {group}) outlived SIGKILL")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _group_ended(process: subprocess.Popen, group: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for every process of `group` to end (the leader reaped)."""
    deadline = time.monotonic() + timeout
    while True:
        process.poll()  # reap the leader: a zombie still counts as a member of the group
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
