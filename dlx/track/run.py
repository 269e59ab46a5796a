"""One MLflow run, written through `MlflowClient` so that dlx is safe to use as a library.

MLflow's fluent API (`mlflow.start_run`, `mlflow.log_metric`, `mlflow.keras.log_model`) keeps
the active run and the tracking URI in process-wide state: a library using it would change, or
write into, the runs of the program that calls it. `TrackedRun` holds its own client and run id
and never touches that state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dlx.errors import DlxError
from dlx.track.params import (
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    PARAM_TRUNCATION_MARKER,
    TAG_TRUNCATION_MARKER,
    flatten_params,
    safe_key,
    truncate_value,
)
from dlx.track.store import (
    ensure_experiment,
    fail_fast,
    open_for_writing,
    resolve_tracking_uri,
    ui_hint,
)
from dlx.track.tags import RUN_NAME, resolved_spec_text, standard_tags

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure
    from mlflow import MlflowClient
    from mlflow.models.model import ModelInfo

    from dlx.spec import LoadedSpec

logger = logging.getLogger(__name__)

# MLflow's limits per `log_batch` request (`mlflow.utils.validation`).
_PARAMS_OR_TAGS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000

_SIGNATURE_SAMPLES = 8


class TrackedRun:
    """One MLflow run: params and tags when it starts, metrics and artifacts while it runs.

    Used as a context manager, the run ends `FINISHED` when the block completes, `FAILED` when
    it raises (with the traceback logged as `traceback.txt`; what was logged before stays), and
    `KILLED` on `KeyboardInterrupt`. The exception is never swallowed.

    Args:
        experiment: the experiment's name; created if missing (see `ensure_experiment`).
        run_name: the run's name; a `mlflow.runName` tag in `tags` when the run starts names it
            instead (a sweep's trial, `<name>-<trial>`, is a run of its spec).
        tracking_uri: where to record; default: `resolve_tracking_uri(None)`.
        tags: tags to create the run with; keys are made safe and long values cut (see
            `dlx.track.params`).
        params: params to log when the run starts, e.g. from `flatten_params`.
        spec_text: the resolved spec, logged as `spec.yaml` when the run starts.

    Example:

    ```python
    with TrackedRun("digits", run_name="digits-cnn", params={"seed": "42"}) as run:
        run.log_metrics({"loss": 0.3, "accuracy": 0.9}, step=0)
        run.log_text("notes", "notes.txt")
    print(run.ui_hint())
    ```
    """

    def __init__(
        self,
        experiment: str,
        *,
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        spec_text: str | None = None,
    ):
        self.experiment = experiment
        self.run_name = run_name
        self.tracking_uri = tracking_uri or resolve_tracking_uri(None)
        self.tags = dict(tags or {})
        self.params = dict(params or {})
        self.spec_text = spec_text
        self.client: MlflowClient | None = None
        self.experiment_id: str | None = None
        self.run_id: str | None = None
        self.end_recorded = False
        """Whether the store was told how the run ended (it may be unreachable by then)."""

    @classmethod
    def for_spec(
        cls,
        loaded: LoadedSpec,
        *,
        strategy: str,
        replicas: int,
        data_fingerprint: str | None = None,
    ) -> TrackedRun:
        """The run of a spec, as docs/spec.md section 7 describes it (not started yet).

        The experiment is `tracking.experiment` (default: the spec's name), the store
        `resolve_tracking_uri(tracking.uri)`, the params `flatten_params` of the spec's data,
        the tags `standard_tags`, and the resolved spec is logged as `spec.yaml`.

        Args:
            loaded: the spec being run.
            strategy: the name of the `tf.distribute` strategy in use.
            replicas: the number of replicas in sync.
            data_fingerprint: a digest of the training data, if known now (else set it later
                with `set_tags({tags.DATA_FINGERPRINT: ...})`).

        Returns:
            The run, to be started with `with`.
        """
        tracking = loaded.spec.tracking
        spec_text = resolved_spec_text(loaded)
        return cls(
            tracking.experiment or loaded.name,
            run_name=loaded.name,
            tracking_uri=resolve_tracking_uri(tracking.uri),
            tags=standard_tags(
                loaded,
                strategy=strategy,
                replicas=replicas,
                data_fingerprint=data_fingerprint,
                spec_text=spec_text,
            ),
            params=flatten_params(loaded.document.data),
            spec_text=spec_text,
        )

    def start(self) -> TrackedRun:
        """Create the experiment if needed, then the run with its tags, params and spec.

        Raises:
            DlxError: the store cannot be used (see `open_for_writing`), could not be
                reached, or refused the run.
        """
        from mlflow.exceptions import MlflowException

        if self.run_id is not None:
            raise DlxError(f"the MLflow run {self.run_id} has already been started")
        self.client = open_for_writing(self.tracking_uri)
        try:
            self.experiment_id = ensure_experiment(self.client, self.experiment)
            self.run_name = self.tags.get(RUN_NAME, self.run_name)
            run = self.client.create_run(
                self.experiment_id, run_name=self.run_name, tags=_safe_tags(self.tags)
            )
        except MlflowException as exc:
            raise DlxError(
                f"could not start an MLflow run in experiment '{self.experiment}' "
                f"at {self.tracking_uri}: {exc.message}"
            ) from exc
        self.run_id = run.info.run_id
        try:
            self.log_params(self.params)
            if self.spec_text is not None:
                self.log_text(self.spec_text, "spec.yaml")
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def reopen(self, run_id: str) -> TrackedRun:
        """Continue an existing run (`dlx train --resume`): it is RUNNING again, its params
        and spec stay as they were, and `tags` are set on it.

        Raises:
            DlxError: the store cannot be used, could not be reached, or has no such run.
        """
        from mlflow.exceptions import MlflowException

        self.client = open_for_writing(self.tracking_uri)
        try:
            run = self.client.get_run(run_id)
            self.client.update_run(run_id, status="RUNNING")
        except MlflowException as exc:
            raise DlxError(
                f"could not reopen the MLflow run {run_id} at {self.tracking_uri}: {exc.message}"
            ) from exc
        self.experiment_id, self.run_id = run.info.experiment_id, run_id
        self.set_tags(self.tags)
        return self

    def end(self, status: str = "FINISHED") -> None:
        """End the run with `status`: `FINISHED`, `FAILED` or `KILLED`."""
        client, _, run_id = self._started()
        client.set_terminated(run_id, status=status)

    def __enter__(self) -> TrackedRun:
        return self if self.run_id is not None else self.start()  # started, or reopened

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end("FINISHED")
            self.end_recorded = True
            return
        # The exception goes on to the caller; failing to record it must not replace it. One
        # quick try: the failure may be the store's own (a server that went away).
        try:
            with fail_fast():
                if isinstance(exc, KeyboardInterrupt):
                    self.end("KILLED")
                else:
                    text = "".join(traceback.format_exception(exc_type, exc, tb))
                    self.log_text(text, "traceback.txt")
                    self.end("FAILED")
            self.end_recorded = True
        except Exception as failure:
            logger.warning("could not record the end of MLflow run %s: %s", self.run_id, failure)

    def log_params(self, params: Mapping[str, str]) -> None:
        """Log params (keys made safe, values cut at 6,000 characters), batched by 100."""
        from mlflow.entities import Param

        client, _, run_id = self._started()
        items = [
            Param(
                safe_key(key),
                truncate_value(value, MAX_PARAM_VALUE_LENGTH, PARAM_TRUNCATION_MARKER),
            )
            for key, value in params.items()
        ]
        for batch in _batches(items, _PARAMS_OR_TAGS_PER_BATCH):
            client.log_batch(run_id, params=batch)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set tags (keys made safe, values cut at MLflow's 8,000 characters), batched."""
        from mlflow.entities import RunTag

        client, _, run_id = self._started()
        items = [RunTag(key, value) for key, value in _safe_tags(tags).items()]
        for batch in _batches(items, _PARAMS_OR_TAGS_PER_BATCH):
            client.log_batch(run_id, tags=batch)

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
    ) -> None:
        """Log metrics at `step` in as few requests as MLflow allows (1,000 metrics each).

        Keys are made safe with `safe_key`; values are converted with `float` (NumPy and
        TensorFlow scalars included). `timestamp` (ms since the epoch) defaults to now.
        """
        from mlflow.entities import Metric

        client, _, run_id = self._started()
        timestamp = int(time.time() * 1000) if timestamp is None else timestamp
        items = [
            Metric(safe_key(key), float(value), timestamp, step or 0)
            for key, value in metrics.items()
        ]
        for batch in _batches(items, _METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=batch)

    def metric_steps(self) -> set[int]:
        """The steps at which the store has metrics for this run (of its first metric key:
        every epoch logs all its metrics in one request)."""
        client, _, run_id = self._started()
        metrics = client.get_run(run_id).data.metrics
        if not metrics:
            return set()
        return {metric.step for metric in client.get_metric_history(run_id, min(metrics))}

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log `text` as the artifact `artifact_file` (e.g. `model_summary.txt`)."""
        client, _, run_id = self._started()
        client.log_text(run_id, text, artifact_file)

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Log a local file (or a folder's files) under `artifact_path` in the run's artifacts."""
        client, _, run_id = self._started()
        path = os.fspath(local_path)
        if os.path.isdir(path):
            client.log_artifacts(run_id, path, artifact_path)
        else:
            client.log_artifact(run_id, path, artifact_path)

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        """Log a Matplotlib figure as an image artifact (e.g. `learning_curves.png`)."""
        client, _, run_id = self._started()
        client.log_figure(run_id, figure, artifact_file)

    def log_keras_model(
        self, model: keras.Model, sample_inputs: Any, *, name: str = "model"
    ) -> ModelInfo:
        """Log `model` in MLflow's Keras flavor, with a signature, as this run's output.

        The signature is inferred from the first 8 samples of `sample_inputs` and the model's
        outputs for them. The requirements are pinned to this process's TensorFlow and Keras
        (resolving them from the environment would cost seconds). The model is written like
        `mlflow.keras.log_model` writes it, through this run's client: it is a logged model of
        the run, found as `runs:/<run_id>/<name>` or `models:/<model_id>`.

        Args:
            model: the trained model.
            sample_inputs: model inputs, as `model.predict` takes them: an array, or a list or
                dict of arrays, with the samples along the first axis.
            name: the logged model's name.

        Returns:
            MLflow's `ModelInfo`; `model_uri` is `models:/<model_id>`.
        """
        import keras
        import mlflow.keras
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model, infer_signature

        client, experiment_id, run_id = self._started()
        batch = keras.tree.map_structure(lambda array: array[:_SIGNATURE_SAMPLES], sample_inputs)
        # A direct call: `predict` would trace a function for this batch's shape (a fraction
        # of a second) to give the same outputs.
        outputs = keras.tree.map_structure(keras.ops.convert_to_numpy, model(batch, training=False))
        signature = infer_signature(batch, outputs)
        logged = client.create_logged_model(experiment_id, name=name, source_run_id=run_id)
        try:
            with tempfile.TemporaryDirectory() as folder:
                local_path = os.path.join(folder, name)
                mlflow_model = Model(
                    artifact_path=logged.artifact_location,
                    model_uuid=logged.model_id,
                    run_id=run_id,
                    model_id=logged.model_id,
                )
                with _installed_requirements_unchecked():
                    mlflow.keras.save_model(
                        model,
                        local_path,
                        mlflow_model=mlflow_model,
                        signature=signature,
                        pip_requirements=[*_backend_requirements(), f"keras=={keras.__version__}"],
                    )
                client.log_model_artifacts(logged.model_id, local_path)
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        except BaseException:
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
            raise
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        return mlflow_model.get_model_info(logged)

    def logged_metric_keys(self) -> set[str]:
        """The keys of the metrics this run has logged so far (a resumed run's included)."""
        client, _, run_id = self._started()
        return set(client.get_run(run_id).data.metrics)

    def fail_unfinished_models(self) -> list[str]:
        """Mark FAILED the logged models of this run left PENDING: an earlier attempt stopped
        while writing them (killed, or its store gone). Returns their ids."""
        from mlflow.entities import LoggedModelStatus

        client, experiment_id, run_id = self._started()
        found = client.search_logged_models(
            experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        pending = [m.model_id for m in found if m.status == LoggedModelStatus.PENDING]
        for model_id in pending:
            client.finalize_logged_model(model_id, LoggedModelStatus.FAILED)
        return pending

    def ui_hint(self) -> str:
        """Where to see this run: its URL on a server, else the command that opens the UI."""
        return ui_hint(self.tracking_uri, self.experiment_id, self.run_id)

    def _started(self) -> tuple[MlflowClient, str, str]:
        """The client, experiment id and run id of the started run."""
        if self.client is None or self.experiment_id is None or self.run_id is None:
            raise DlxError("the MLflow run has not been started; use `with TrackedRun(...)`")
        return self.client, self.experiment_id, self.run_id


def _backend_requirements() -> list[str]:
    """The pip requirements of the backend Keras runs here: what loads the logged model."""
    import importlib

    import keras

    modules = {"tensorflow": ("tensorflow",), "jax": ("jax", "jaxlib")}
    names = modules.get(keras.backend.backend(), ())
    return [f"{name}=={importlib.import_module(name).__version__}" for name in names]


@contextlib.contextmanager
def _installed_requirements_unchecked() -> Iterator[None]:
    """Within the block, MLflow does not check a model's requirements against the packages
    installed.

    The check maps every installed distribution's files to its modules (most of a second) to
    warn when a requirement is not met; the requirements dlx gives are this process's own
    versions, which it met by running. Without MLflow's function (another MLflow), nothing is
    changed.
    """
    from mlflow.utils import environment

    check = getattr(environment, _REQUIREMENTS_CHECK, None)
    if check is None:
        yield
        return
    setattr(environment, _REQUIREMENTS_CHECK, lambda requirements: None)
    try:
        yield
    finally:
        setattr(environment, _REQUIREMENTS_CHECK, check)


_REQUIREMENTS_CHECK = "warn_dependency_requirement_mismatches"
"""MLflow's check of a model's requirements against the installed packages, as
`mlflow.utils.environment` names it."""


def _safe_tags(tags: Mapping[str, str]) -> dict[str, str]:
    return {
        safe_key(key): truncate_value(str(value), MAX_TAG_VALUE_LENGTH, TAG_TRUNCATION_MARKER)
        for key, value in tags.items()
    }


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
