"""Serving a run's logged model over HTTP with MLflow's scoring server.

`dlx serve` is `mlflow models serve --env-manager local` on the run's model: MLflow's FastAPI
app under uvicorn, with its protocol (`GET /ping`, `POST /invocations` taking JSON `inputs`,
`instances` or `dataframe_split`) and its checks of a request against the model's logged
signature, which answer a wrong shape or type with HTTP 400. Several uvicorn worker processes
serve concurrent requests.

The model served is not the logged Keras flavor itself: its pyfunc calls `model.predict` for
each request, which builds a dataset and a step function per call (about 160 ms for one example,
mlflow/mlflow#5259). `dlx serve` wraps the logged model, unchanged, in `KerasServing`, a
`mlflow.pyfunc.PythonModel` that loads it once and answers through one `tf.function` traced for
any batch size, saved with the logged model's signature in a temporary folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from mlflow.pyfunc import PythonModel

from dlx.errors import DlxError, UsageError


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
        serving = save_serving_model(local, Path(folder))
        # MLflow starts `uvicorn` by name: the one installed beside this Python.
        bin_folder = str(Path(sys.executable).parent)
        os.environ["PATH"] = bin_folder + os.pathsep + os.environ.get("PATH", "")
        backend = PyFuncBackend(config={}, env_manager="local", workers=workers)
        server = backend.serve(str(serving), port, host, timeout=None, synchronous=False)
        try:
            status = server.wait()
        finally:  # Ctrl-C or SIGTERM here: the server stops too, its workers with it.
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=30)
        if status != 0:
            raise DlxError(f"the MLflow scoring server stopped with exit status {status}")
