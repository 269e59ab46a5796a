"""Loading the Keras models that dlx runs logged (a transfer backbone, `dlx score`, `dlx export`,
`dlx serve`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from dlx.errors import UsageError


def load_run_model(tracking_uri: str | None, run_id: str) -> Any:
    """The model a run logged, from a spec's store: the loader of backbones given by run id
    (`backbone: {run: <id>}`) that `dlx.build.model.build_model` takes.

    Args:
        tracking_uri: the spec's `tracking.uri`, or `None` for the default store
            (`$MLFLOW_TRACKING_URI`, else `./mlflow.db`).
        run_id: the run's id.

    Raises:
        UsageError: no such run in the store, or the run logged no model.
    """
    from dlx.track.store import resolve_tracking_uri

    return load_logged_model(resolve_tracking_uri(tracking_uri), run_id)


def load_logged_model(tracking_uri: str, run_id: str, name: str = "model") -> Any:
    """The Keras model a run logged under `name`, read from the store at `tracking_uri`.

    Raises:
        UsageError: no such run in the store, or the run logged no model of that name.
    """
    import mlflow.keras

    with tempfile.TemporaryDirectory() as folder:
        return mlflow.keras.load_model(
            str(download_logged_model(tracking_uri, run_id, name, Path(folder)))
        )


def download_logged_model(tracking_uri: str, run_id: str, name: str, folder: Path) -> Path:
    """Download the MLflow model a run logged under `name` into `folder`; its local path.

    The logged model is found among the run's and read from its artifact location: MLflow's own
    `runs:/<run_id>/<name>` resolution would read the process's global tracking URI instead.

    Raises:
        UsageError: no such run in the store, or the run logged no model of that name.
    """
    import mlflow.artifacts
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from dlx.track.store import mlflow_uri, quiet_mlflow

    quiet_mlflow()
    client = MlflowClient(mlflow_uri(tracking_uri))
    try:
        info = client.get_run(run_id).info
    except MlflowException:
        raise UsageError(f"no run with id '{run_id}' in {tracking_uri}") from None
    matches = client.search_logged_models(
        [info.experiment_id], filter_string=f"source_run_id = '{run_id}' AND name = '{name}'"
    )
    if not matches and info.status == "RUNNING":  # a run logs its models when training ends
        raise UsageError(
            f"the run {run_id} is still running and has logged no model '{name}' yet: wait "
            f"until it finishes; if its process was killed, resume it (dlx train --resume "
            f"{run_id}) and use it once it has finished"
        )
    if not matches:
        raise UsageError(
            f"the run {run_id} logged no model '{name}' (was tracking.log_model false?)"
        )
    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=matches[0].artifact_location,
            dst_path=str(folder),
            tracking_uri=client.tracking_uri,
        )
    )
