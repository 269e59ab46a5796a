"""Serving a run's logged model over HTTP with MLflow's scoring server.

`dlx serve` is `mlflow models serve --env-manager local` on the run's model: MLflow's FastAPI
app under uvicorn, with its protocol (`GET /ping`, `POST /invocations` taking JSON `inputs` or
`instances`, and `dataframe_split` for a model whose input is one row of features per example)
and its checks of a request against the model's logged signature, which answer a wrong shape or
type with HTTP 400. Several uvicorn worker processes serve concurrent requests. dlx starts
uvicorn itself, on `dlx.deploy.scoring_app`: MLflow's app behind limits on a request's size
(HTTP 413) and on the nesting of its JSON (HTTP 400), and a table sent to a model that cannot
take one (HTTP 400, saying what to send), with a worker health check that waits as long as a
request may run.

The model served is not the logged Keras flavor itself: its pyfunc calls `model.predict` for
each request, which builds a dataset and a step function per call (about 160 ms for one example,
mlflow/mlflow#5259). `dlx serve` wraps the logged model, unchanged, in `KerasServing`, a
`mlflow.pyfunc.PythonModel` that loads it once and answers through one `tf.function` traced for
any batch size, saved with the logged model's signature in a temporary folder.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from mlflow.pyfunc import PythonModel

from dlx.deploy import scoring_app
from dlx.deploy.scoring_app import MB
from dlx.errors import DlxError, UsageError

STOP_GRACE_S = 10.0
"""How long the server's processes have to finish the requests in flight once asked to stop."""


class KerasServing(PythonModel):
    """A logged Keras model as MLflow's scoring server calls it, without `model.predict`.

    `load_context` loads the Keras model from the `keras_model` artifact (the run's logged
    model, as `mlflow.keras.load_model` reads it) and traces `model(inputs, training=False)` in
    a `tf.function` whose input signature is the model's inputs with any batch size: one graph
    serves every request. `predict` takes the request's inputs after MLflow checked them against
    the signature (one array, or a dict of arrays named as the model's inputs) and answers NumPy:
    an array, or a dict by output name for a model with several outputs.
    """

    # The logged signature checks each request: no schema from `predict`'s type hints, and no
    # warning at class definition that they are missing.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        import mlflow.keras
        import tensorflow as tf

        model = mlflow.keras.load_model(context.artifacts["keras_model"])
        self._names = [tensor.name for tensor in model.inputs]
        self._dtypes = [tf.as_dtype(tensor.dtype) for tensor in model.inputs]
        self._outputs = list(model.output_names)
        specs = [
            tf.TensorSpec(tensor.shape, dtype, name=name)
            for tensor, dtype, name in zip(model.inputs, self._dtypes, self._names, strict=True)
        ]

        def call(*inputs):
            return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

        self._call = tf.function(call, input_signature=specs)

    def predict(self, context, model_input, params=None):
        """The model's outputs for `model_input`: an array, or a dict of arrays by output name."""
        if isinstance(model_input, dict):
            arrays = [model_input[name] for name in self._names]
        else:
            arrays = [model_input]
        outputs = self._call(
            *(_as_tensor(array, dtype) for array, dtype in zip(arrays, self._dtypes, strict=True))
        )
        if isinstance(outputs, dict):
            outputs = [outputs[name] for name in self._outputs]
        if isinstance(outputs, (list, tuple)):
            if len(outputs) > 1:
                return {name: out.numpy() for name, out in zip(self._outputs, outputs, strict=True)}
            outputs = outputs[0]
        return outputs.numpy()


def _as_tensor(array: Any, dtype: Any) -> Any:
    import numpy as np
    import tensorflow as tf

    if dtype == tf.string:
        return tf.constant(np.asarray(array, dtype=object).astype(str))
    return tf.constant(np.asarray(array, dtype=dtype.as_numpy_dtype))


_MODEL_CODE = """\
import mlflow.models

from dlx.deploy.serve import KerasServing

mlflow.models.set_model(KerasServing())
"""


def save_serving_model(logged: Path, folder: Path) -> Path:
    """Save `KerasServing` on the logged Keras model at `logged` into `folder/serving`.

    The saved model carries the logged model's signature (MLflow checks each request against
    it) and its pinned requirements (nothing is resolved from the environment).

    Returns:
        The saved model's folder, which `mlflow models serve` takes.
    """
    import mlflow.pyfunc
    from mlflow.models import Model

    path = folder / "serving"
    # MLflow's "models from code": a file that names the model, rather than a pickled object.
    code = folder / "keras_serving.py"
    code.write_text(_MODEL_CODE)
    with warnings.catch_warnings():  # The signature checks requests; no example is needed.
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        mlflow.pyfunc.save_model(
            str(path),
            python_model=str(code),
            artifacts={"keras_model": str(logged)},
            signature=Model.load(str(logged / "MLmodel")).signature,
            pip_requirements=str(logged / "requirements.txt"),
        )
    return path


def serve_run(
    tracking_uri: str,
    run_id: str,
    *,
    host: str,
    port: int,
    workers: int,
    max_request_mb: int,
) -> None:
    """Serve a run's logged model until interrupted.

    Args:
        tracking_uri: the run's store.
        run_id: the run's id.
        host: the address to listen on.
        port: the port to listen on.
        workers: uvicorn worker processes (each loads the model).
        max_request_mb: the largest request body, in MB of 1,048,576 bytes (larger: HTTP 413).

    Raises:
        UsageError: the run logged no model, the port is taken, or `max_request_mb` is not
            positive.
        DlxError: the server stopped with an error.
    """
    import socket

    from dlx.track.logged_models import download_logged_model

    if max_request_mb < 1:
        raise UsageError(
            f"--max-request-mb: expected a positive number of MB. Received: {max_request_mb}"
        )
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(f"--port: cannot listen on {host}:{port}: {exc.strerror}") from None
    with tempfile.TemporaryDirectory(prefix="dlx-serve-") as folder:
        local = download_logged_model(tracking_uri, run_id, "model", Path(folder))
        serving = save_serving_model(local, Path(folder))
        server = _start_server(
            serving, host=host, port=port, workers=workers, max_bytes=max_request_mb * MB
        )
        try:
            status = server.wait()
        finally:  # Ctrl-C or SIGTERM here: the server stops too, its workers with it.
            _stop_server(server)
        if status != 0:
            raise DlxError(f"the MLflow scoring server stopped with exit status {status}")


def _start_server(
    model: Path, *, host: str, port: int, workers: int, max_bytes: int
) -> subprocess.Popen:
    """uvicorn on `dlx.deploy.scoring_app`, in a process group of its own (which
    `_stop_server` stops whole), sent SIGTERM if dlx dies.

    A worker is declared hung, killed and replaced, only when it has not answered uvicorn's
    health check for as long as MLflow lets a request run (`MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT`,
    60 s unless set): the check is answered by a thread of the worker, which waits while a
    request holds the interpreter (Python's JSON parser holds it for seconds on a body of tens
    of MB), and uvicorn's own 5 s killed workers busy with such requests.
    """
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT

    from dlx.proc import die_with_parent

    timeout = MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()
    command = [
        *(sys.executable, "-m", "uvicorn", "--factory", f"{scoring_app.__name__}:create_app"),
        *("--host", host, "--port", str(port), "--workers", str(workers)),
        *("--timeout-worker-healthcheck", str(timeout)),
    ]
    environment = {
        **os.environ,
        scoring_app.MODEL_VARIABLE: str(model),
        scoring_app.MAX_BYTES_VARIABLE: str(max_bytes),
        MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.name: str(timeout),
    }
    return subprocess.Popen(
        command,
        env=environment,
        start_new_session=True,
        preexec_fn=functools.partial(die_with_parent, signal.SIGTERM),
    )


def _stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the server's processes, uvicorn's and its workers', which finish the requests
    they are answering; SIGKILL to what is left after `STOP_GRACE_S` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()
