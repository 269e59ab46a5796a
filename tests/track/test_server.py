"""A run written to a real `mlflow server`, started for this module and stopped after it."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
from mlflow import MlflowClient

from dlx.track import TrackedRun

_START_TIMEOUT_S = 60
_STOP_TIMEOUT_S = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"mlflow server did not answer within {_START_TIMEOUT_S} s:\n{log.read_text()}")


def _stop(server: subprocess.Popen) -> None:
    """Stop the server and every process it started (they share its new process group)."""
    for sig, wait in ((signal.SIGTERM, _STOP_TIMEOUT_S), (signal.SIGKILL, _STOP_TIMEOUT_S)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        try:
            os.killpg(server.pid, 0)  # any child still alive in the group?
        except ProcessLookupError:
            return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder}/mlflow.db",
        "--artifacts-destination",
        str(folder / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # Background jobs (for GenAI evaluation) start a dozen extra processes; runs need none.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = folder / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_healthy(url, process, log)
        yield url, folder
    finally:
        _stop(process)
        with pytest.raises(ProcessLookupError):
            os.killpg(process.pid, 0)


def test_a_run_is_written_to_a_tracking_server(server, tmp_path):
    url, folder = server
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x = np.ones((4, 3), dtype=np.float32)
    with TrackedRun("served", run_name="remote", tracking_uri=url, params={"a": "1"}) as run:
        run.log_metrics({"loss": 0.5}, step=0)
        run.log_text("hello", "notes.txt")
        info = run.log_keras_model(model, x)

    client = MlflowClient(url)
    record = client.get_run(run.run_id)
    assert record.info.status == "FINISHED"
    assert record.data.params == {"a": "1"}
    assert record.data.metrics == {"loss": 0.5}
    experiment = client.get_experiment(run.experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    served = folder / "mlartifacts" / run.experiment_id
    assert (served / run.run_id / "artifacts" / "notes.txt").read_text() == "hello"
    assert (served / "models" / info.model_id / "artifacts" / "MLmodel").exists()
    assert run.ui_hint() == f"{url}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
    assert not list(tmp_path.iterdir())  # nothing written in the client's working directory


def test_dlx_train_records_its_run_on_the_server(server):
    from dlx import api
    from tests.conftest import ROOT

    url, _ = server
    spec = ROOT / "specs" / "digits_cnn.yaml"
    result = api.train(spec, ["train.epochs=2", f"tracking.uri={url}"])
    record = MlflowClient(url).get_run(result.run_id)
    assert record.info.status == "FINISHED"
    assert record.data.metrics["val_accuracy"] == result.metrics["val_accuracy"]
    assert record.data.tags["dlx.strategy"] == "default"
    assert not (Path.cwd() / "mlflow.db").exists()
