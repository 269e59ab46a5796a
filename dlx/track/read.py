"""Reading runs back from MLflow, for `dlx runs`, `dlx compare` and `dlx reproduce`.

Only MLflow is imported here (lazily), never TensorFlow or Keras: listing and comparing runs
must stay fast.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlx.errors import DlxError, UsageError, did_you_mean
from dlx.track.store import resolve_tracking_uri, sqlite_file

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Experiment, Run

MAX_RUNS = 5000
"""The most runs one listing reads; far more than a table can show."""


class Store:
    """An MLflow tracking store, opened for reading.

    Args:
        uri: the tracking URI; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.
    """

    def __init__(self, uri: str | None = None) -> None:
        from mlflow import MlflowClient

        self.uri = resolve_tracking_uri(uri)
        local = sqlite_file(self.uri)
        if local is not None and not local.exists():
            raise UsageError(
                f"no MLflow store at {local}: train a spec here first, or point at a store "
                "with --tracking-uri or $MLFLOW_TRACKING_URI"
            )
        self.client: MlflowClient = MlflowClient(self.uri)

    def experiment(self, name: str | None) -> Experiment:
        """The experiment of that name; without a name, the one with the newest run."""
        client = self.client
        if name is not None:
            found = client.get_experiment_by_name(name)
            if found is None:
                names = [e.name for e in client.search_experiments()]
                raise UsageError(
                    f"no experiment '{name}' in {self.uri}{did_you_mean(name, names)}; "
                    f"experiments: {', '.join(names) or 'none'}"
                )
            return found
        ids = [e.experiment_id for e in client.search_experiments()]
        newest = client.search_runs(ids, max_results=1, order_by=["attributes.start_time DESC"])
        if not newest:
            raise DlxError(f"no runs in {self.uri}")
        return client.get_experiment(newest[0].info.experiment_id)

    def runs(self, experiment: Experiment, *, filter: str = "", limit: int = MAX_RUNS) -> list[Run]:
        """The runs of an experiment, newest first, failed and killed ones included."""
        from mlflow.exceptions import MlflowException

        try:
            return list(
                self.client.search_runs(
                    [experiment.experiment_id],
                    filter_string=filter,
                    max_results=limit,
                    order_by=["attributes.start_time DESC"],
                )
            )
        except MlflowException as exc:
            raise UsageError(f"--filter: {exc.message}") from None

    def find(self, references: list[str]) -> list[Run]:
        """Runs by full id or unique id prefix, in the order given."""
        from mlflow.exceptions import MlflowException

        found = []
        everything: list[Run] | None = None
        for reference in references:
            try:
                found.append(self.client.get_run(reference))
                continue
            except MlflowException:
                pass
            if everything is None:
                ids = [e.experiment_id for e in self.client.search_experiments()]
                everything = list(self.client.search_runs(ids, max_results=MAX_RUNS))
            matches = [r for r in everything if r.info.run_id.startswith(reference)]
            if not matches:
                raise UsageError(f"no run with id '{reference}' in {self.uri}")
            if len(matches) > 1:
                shown = ", ".join(r.info.run_id for r in matches[:5])
                raise UsageError(f"the run id prefix '{reference}' is ambiguous: {shown}")
            found.append(matches[0])
        return found

    def spec_text(self, run_id: str) -> str:
        """The resolved spec a run logged as `spec.yaml`."""
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as folder:
            try:
                path = self.client.download_artifacts(run_id, "spec.yaml", folder)
            except (MlflowException, OSError):
                raise DlxError(f"the run {run_id} has no spec.yaml: was it made by dlx?") from None
            return Path(path).read_text(encoding="utf-8")

    def history(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        """A metric's logged values as (step, value), in step order."""
        points = self.client.get_metric_history(run_id, metric)
        return sorted((m.step, m.value) for m in points)


def short_id(run: Any) -> str:
    return run.info.run_id[:8]
