"""Where runs are recorded: the tracking URI, the experiment, and the experiment's artifacts.

dlx's default store is an SQLite file, `mlflow.db`, in the working directory (MLflow 3 refuses a
plain `./mlruns` folder unless opted in). MLflow's client puts the artifacts of a local
database store in `./mlruns` under the *working directory*, so two stores used from one folder
would share one artifact tree, and a store opened from another folder would not find its
artifacts. dlx gives every experiment it creates in an SQLite store an explicit artifact
folder beside the database file instead.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from dlx.errors import DlxError
from dlx.track.params import UNSAFE_CHARACTERS, short_hash

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_STORE_FILE = "mlflow.db"

_SQLITE_PREFIX = "sqlite:///"
_MAX_FOLDER_NAME_LENGTH = 100


def resolve_tracking_uri(spec_uri: str | None) -> str:
    """The tracking URI a run is recorded at.

    In order: `tracking.uri` from the spec, then `$MLFLOW_TRACKING_URI`, else the SQLite store
    `mlflow.db` in the working directory (with its absolute path, so that the URI names the
    same store wherever it is used from).

    Args:
        spec_uri: `tracking.uri` from the spec, or `None`.

    Returns:
        A tracking URI, e.g. `sqlite:////home/me/project/mlflow.db` or `http://127.0.0.1:5000`.
    """
    if spec_uri:
        return spec_uri
    if env_uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return env_uri
    return _SQLITE_PREFIX + (Path.cwd() / DEFAULT_STORE_FILE).resolve().as_posix()


def artifact_location(tracking_uri: str, experiment_name: str) -> str | None:
    """The artifact folder dlx gives a new experiment, or `None` to leave it to the store.

    For an SQLite store `sqlite:///DIR/mlflow.db` it is `file://DIR/mlartifacts/EXPERIMENT`
    (for any other file name, `DIR/NAME-mlartifacts/EXPERIMENT`), where `EXPERIMENT` is the
    experiment's name when that is a safe folder name, else a safe form of it followed by 8 hex
    digits of the name's SHA-256. A tracking server (`http://`, `https://`) and every other
    store choose for themselves.

    Args:
        tracking_uri: the store's URI.
        experiment_name: the name of the experiment about to be created.

    Returns:
        A `file://` URI, or `None`.
    """
    database = sqlite_file(tracking_uri)
    if database is None:
        return None
    root = "mlartifacts" if database.stem == "mlflow" else f"{database.stem}-mlartifacts"
    return (database.parent / root / _folder_name(experiment_name)).as_uri()


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """Return the id of the experiment `name`, creating it if it does not exist.

    A new experiment in an SQLite store gets its artifact folder beside the database
    (see `artifact_location`); on a tracking server the server chooses.

    Args:
        client: an `MlflowClient` for the store.
        name: the experiment's name.

    Returns:
        The experiment's id.

    Raises:
        DlxError: the experiment exists but was deleted (MLflow keeps deleted experiments'
            names taken until they are restored or garbage-collected).
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(
                name, artifact_location=artifact_location(client.tracking_uri, name)
            )
        except MlflowException:
            # Another process may have created it between the look-up and the creation.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise DlxError(
            f"MLflow experiment '{name}' was deleted. Restore it with "
            f"`mlflow experiments restore --experiment-id {experiment.experiment_id}`, "
            "or choose another name with tracking.experiment"
        )
    return experiment.experiment_id


def ui_hint(tracking_uri: str, experiment_id: str | None = None, run_id: str | None = None) -> str:
    """How to look at a store in the MLflow UI: a URL for a server, else the command to start one.

    Args:
        tracking_uri: the store's URI.
        experiment_id: with a server, link to this experiment.
        run_id: with a server and `experiment_id`, link to this run.

    Returns:
        e.g. `http://127.0.0.1:5000/#/experiments/1/runs/0a1b...`, or
        `mlflow ui --backend-store-uri sqlite:////home/me/project/mlflow.db`.
    """
    if tracking_uri.startswith(("http://", "https://")):
        url = tracking_uri.rstrip("/")
        if experiment_id is not None:
            url += f"/#/experiments/{experiment_id}"
            if run_id is not None:
                url += f"/runs/{run_id}"
        return url
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}"


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of an SQLite tracking URI (resolved like SQLite does), else `None`."""
    if not tracking_uri.startswith(_SQLITE_PREFIX):
        return None
    path = tracking_uri[len(_SQLITE_PREFIX) :].split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return Path(path).resolve()


def _folder_name(experiment_name: str) -> str:
    safe = UNSAFE_CHARACTERS.sub("_", experiment_name)[:_MAX_FOLDER_NAME_LENGTH]
    if safe == experiment_name and not safe.startswith("."):
        return safe
    return f"{safe.lstrip('.')}-{short_hash(experiment_name)}"


def quiet_mlflow() -> None:
    """Keep MLflow's and alembic's INFO logs (database set-up and the like) off the console.

    MLflow sets its loggers' levels when it is first imported, so this imports it first.
    """
    import logging

    import mlflow  # noqa: F401

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


# A request to a tracking server that is down fails at once, instead of after MLflow's default
# retries (minutes): for what can wait (metrics while training) or is a last try.
_FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """Within the block, MLflow's requests to a tracking server are tried once, not retried."""
    saved = {name: os.environ.get(name) for name in _FAIL_FAST}
    os.environ.update(_FAIL_FAST)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
