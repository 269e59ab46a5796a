"""Serving a run's logged model over HTTP with MLflow's scoring server.

`dlx serve` is `mlflow models serve --env-manager local` on the run's logged model: MLflow's
FastAPI app under uvicorn, with its protocol (`GET /ping`, `POST /invocations` taking JSON
`inputs`, `instances` or `dataframe_split`) and its checks of a request against the model's
logged signature, which answer a wrong shape or type with HTTP 400. Several uvicorn worker
processes serve concurrent requests.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from dlx.errors import DlxError, UsageError


def serve_run(tracking_uri: str, run_id: str, *, host: str, port: int, workers: int) -> None:
    """Serve a run's logged model until interrupted.

    Args:
        tracking_uri: the run's store.
        run_id: the run's id.
        host: the address to listen on.
        port: the port to listen on.
        workers: uvicorn worker processes (each loads the model).

    Raises:
        UsageError: the run logged no model, or the port is taken.
        DlxError: the server stopped with an error.
    """
    import socket

    from mlflow.pyfunc.backend import PyFuncBackend

    from dlx.track.logged_models import download_logged_model

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(f"--port: cannot listen on {host}:{port}: {exc.strerror}") from None
    with tempfile.TemporaryDirectory(prefix="dlx-serve-") as folder:
        local = download_logged_model(tracking_uri, run_id, "model", Path(folder))
        # MLflow starts `uvicorn` by name: the one installed beside this Python.
        bin_folder = str(Path(sys.executable).parent)
        os.environ["PATH"] = bin_folder + os.pathsep + os.environ.get("PATH", "")
        backend = PyFuncBackend(config={}, env_manager="local", workers=workers)
        server = backend.serve(str(local), port, host, timeout=None, synchronous=False)
        try:
            status = server.wait()
        finally:  # Ctrl-C or SIGTERM here: the server stops too, its workers with it.
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=30)
        if status != 0:
            raise DlxError(f"the MLflow scoring server stopped with exit status {status}")
