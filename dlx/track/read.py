"""Reading runs back from MLflow, for `dlx runs`, `dlx compare` and `dlx reproduce`.

Two readers share one interface (`Store`):

- `SqliteStore` reads MLflow's embedded sqlite store with Python's own `sqlite3`. Importing
  MLflow alone takes over a second (its sqlite backend pulls in pandas and alembic), which
  would leave no room for `dlx compare` to stay under 2 s on 200 runs; the tables it reads
  (`experiments`, `runs`, `params`, `latest_metrics`, `metrics`, `tags`) are MLflow's stable
  schema, and the tests read the same stores through MLflow's client to check them.
- `MlflowStore` reads any store through `MlflowClient`: tracking servers, other databases, and
  `--filter` (whose language only MLflow parses).

`open_store` picks one. Neither imports TensorFlow or Keras.
"""

from __future__ import annotations

import abc
import math
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from dlx.errors import DlxError, UsageError, did_you_mean
from dlx.spec import LoadedSpec
from dlx.track.store import (
    SQLITE_BUSY_SECONDS,
    check_sqlite_store,
    mlflow_uri,
    resolve_tracking_uri,
    sqlite_error,
    sqlite_file,
)
from dlx.track.tags import PARENT_RUN

MAX_RUNS = 5000
"""The most runs one listing reads; far more than a table can show."""


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str


@dataclass
class RunInfo:
    """The fields of `mlflow.entities.RunInfo` that dlx reads, under the same names."""

    run_id: str
    run_name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    experiment_id: str
    artifact_uri: str | None


@dataclass
class RunData:
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    """A run as `mlflow.entities.Run` shapes it: `info` and `data`."""

    info: RunInfo
    data: RunData


@dataclass
class RunSummary:
    """A run as `dlx runs` lists it: a line of who, when, how long, and its key metrics."""

    run_id: str
    run_name: str | None
    status: str
    start_time: str
    """Local time, `YYYY-MM-DD HH:MM:SS`."""
    duration_s: float | None
    """From start to end; None while the run has not ended."""
    metrics: dict[str, float]
    """Its final `val_*` and `test_*` metrics; a run with none: its first six metrics."""
    parent_run_id: str | None = None
    """A sweep's trial: the sweep's parent run (MLflow's `mlflow.parentRunId` tag)."""

    @classmethod
    def of(cls, run: Any) -> RunSummary:
        """The summary of a run as a `Store` returns it."""
        from datetime import datetime

        info = run.info
        keys = [m for m in run.data.metrics if m.startswith(("val_", "test_"))]
        metrics = {k: run.data.metrics[k] for k in (keys or list(run.data.metrics)[:6])}
        end = info.end_time
        return cls(
            run_id=info.run_id,
            run_name=info.run_name,
            status=info.status,
            start_time=datetime.fromtimestamp(info.start_time / 1000).isoformat(" ", "seconds"),
            duration_s=(end - info.start_time) / 1000 if end else None,
            metrics=metrics,
            parent_run_id=run.data.tags.get(PARENT_RUN),
        )


class Store(abc.ABC):
    """An MLflow tracking store, opened for reading."""

    uri: str

    @abc.abstractmethod
    def experiments(self) -> list[Experiment]: ...

    @abc.abstractmethod
    def runs(self, experiment: Experiment, *, filter: str = "", limit: int = MAX_RUNS) -> list:
        """The runs of an experiment, newest first, failed and killed ones included."""

    @abc.abstractmethod
    def all_runs(self) -> list:
        """Every run of every experiment, newest first."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> Any | None: ...

    @abc.abstractmethod
    def history(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        """A metric's logged values as (step, value), in step order."""

    @abc.abstractmethod
    def spec_text(self, run_id: str) -> str:
        """The resolved spec a run logged as `spec.yaml`."""

    def logged_spec(self, run: Any, overrides: list[str] | tuple[str, ...] = ()) -> LoadedSpec:
        """A run's logged spec, its relative paths resolved against the folder the original
        spec was in when that folder exists here, else against the working directory."""
        from dlx.spec import load_spec_text

        source = Path(run.data.tags.get("mlflow.source.name") or "spec.yaml")
        folder = source.parent if source.parent.is_dir() else Path.cwd()
        return load_spec_text(self.spec_text(run.info.run_id), folder / source.name, overrides)

    def experiment(self, name: str | None) -> Experiment:
        """The experiment of that name; without a name, the one with the newest run."""
        experiments = self.experiments()
        if name is not None:
            for experiment in experiments:
                if experiment.name == name:
                    return experiment
            names = [e.name for e in experiments]
            raise UsageError(
                f"no experiment '{name}' in {self.uri}{did_you_mean(name, names)}; "
                f"experiments: {', '.join(names) or 'none'}"
            )
        newest = self.all_runs()[:1]
        if not newest:
            raise DlxError(f"no runs in {self.uri}")
        by_id = {e.experiment_id: e for e in experiments}
        return by_id[str(newest[0].info.experiment_id)]

    def find(self, references: list[str]) -> list:
        """Runs by full id or unique id prefix, in the order given."""
        found = []
        for reference in references:
            run = self.get_run(reference)
            if run is None:
                matches = [r for r in self.all_runs() if r.info.run_id.startswith(reference)]
                if not matches:
                    raise UsageError(f"no run with id '{reference}' in {self.uri}")
                if len(matches) > 1:
                    shown = ", ".join(r.info.run_id for r in matches[:5])
                    raise UsageError(f"the run id prefix '{reference}' is ambiguous: {shown}")
                run = matches[0]
            found.append(run)
        return found


def open_store(uri: str | None = None, *, filter: str = "") -> Store:
    """The reader for a store: direct sqlite when it can, else MLflow's client.

    Args:
        uri: the tracking URI; default: `$MLFLOW_TRACKING_URI`, else `./mlflow.db`.
        filter: an MLflow filter the listing will use (only MLflow's client parses them).

    Raises:
        UsageError: a local sqlite store that does not exist.
        DlxError: a local sqlite store that is empty, or cannot be read (`StoreError`).
    """
    resolved = resolve_tracking_uri(uri)
    local = sqlite_file(resolved)
    if local is not None and not local.exists():
        raise UsageError(
            f"no MLflow store at {local}: train a spec here first, or point at a store "
            "with --tracking-uri or $MLFLOW_TRACKING_URI"
        )
    if local is not None and not check_sqlite_store(local, resolved):
        raise DlxError(f"no runs in {resolved}: the store is empty")
    if local is not None and not filter:
        return SqliteStore(resolved, local)
    return MlflowStore(resolved)


class SqliteStore(Store):
    """MLflow's embedded sqlite store, read directly (see the module's docstring).

    A query that fails (a damaged file, a writer holding its lock too long) raises a
    `StoreError` naming the store.
    """

    def __init__(self, uri: str, path: Path) -> None:
        self.uri = uri
        self.connection = sqlite3.connect(
            f"{path.as_uri()}?mode=ro", uri=True, timeout=SQLITE_BUSY_SECONDS
        )

    def _query(self, sql: str, arguments: tuple = ()) -> list[tuple]:
        try:
            return self.connection.execute(sql, arguments).fetchall()
        except sqlite3.DatabaseError as exc:
            raise sqlite_error(self.uri, exc) from None

    def experiments(self) -> list[Experiment]:
        rows = self._query(
            "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'"
        )
        return [Experiment(str(i), name) for i, name in rows]

    def runs(self, experiment: Experiment, *, filter: str = "", limit: int = MAX_RUNS) -> list:
        return self._runs("experiment_id = ?", (int(experiment.experiment_id),), limit)

    def all_runs(self) -> list:
        return self._runs("1 = 1", (), MAX_RUNS)

    def get_run(self, run_id: str) -> Run | None:
        found = self._runs("run_uuid = ?", (run_id,), 1)
        return found[0] if found else None

    def _runs(self, where: str, arguments: tuple, limit: int) -> list[Run]:
        rows = self._query(
            "SELECT run_uuid, name, status, start_time, end_time, experiment_id, artifact_uri "
            f"FROM runs WHERE lifecycle_stage = 'active' AND {where} "
            "ORDER BY start_time DESC, run_uuid LIMIT ?",
            (*arguments, limit),
        )
        runs = {
            run_id: Run(RunInfo(run_id, name, status, start, end, str(exp), uri), RunData())
            for run_id, name, status, start, end, exp, uri in rows
        }
        if not runs:
            return []
        marks = ",".join("?" * len(runs))
        ids = tuple(runs)
        for key, value, run_id in self._query(
            f"SELECT key, value, run_uuid FROM params WHERE run_uuid IN ({marks})", ids
        ):
            runs[run_id].data.params[key] = value
        for key, value, is_nan, run_id in self._query(
            f"SELECT key, value, is_nan, run_uuid FROM latest_metrics WHERE run_uuid IN ({marks})",
            ids,
        ):
            runs[run_id].data.metrics[key] = math.nan if is_nan else value
        for key, value, run_id in self._query(
            f"SELECT key, value, run_uuid FROM tags WHERE run_uuid IN ({marks})", ids
        ):
            runs[run_id].data.tags[key] = value
        return list(runs.values())

    def history(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        rows = self._query(
            "SELECT step, value, is_nan FROM metrics WHERE run_uuid = ? AND key = ? "
            "ORDER BY step, timestamp",
            (run_id, metric),
        )
        return [(step, math.nan if is_nan else value) for step, value, is_nan in rows]

    def spec_text(self, run_id: str) -> str:
        run = self.get_run(run_id)
        location = urlparse(run.info.artifact_uri or "") if run else None
        if location is not None and location.scheme == "file":
            path = Path(unquote(location.path)) / "spec.yaml"
            if path.exists():
                return path.read_text(encoding="utf-8")
        return MlflowStore(self.uri).spec_text(run_id)


class MlflowStore(Store):
    """Any MLflow store, through `MlflowClient`."""

    def __init__(self, uri: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(mlflow_uri(uri))

    def experiments(self) -> list[Experiment]:
        return [Experiment(e.experiment_id, e.name) for e in self.client.search_experiments()]

    def runs(self, experiment: Experiment, *, filter: str = "", limit: int = MAX_RUNS) -> list:
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

    def all_runs(self) -> list:
        ids = [e.experiment_id for e in self.experiments()]
        return list(
            self.client.search_runs(
                ids, max_results=MAX_RUNS, order_by=["attributes.start_time DESC"]
            )
        )

    def get_run(self, run_id: str) -> Any | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException:
            return None

    def history(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, metric))

    def spec_text(self, run_id: str) -> str:
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as folder:
            try:
                path = self.client.download_artifacts(run_id, "spec.yaml", folder)
            except (MlflowException, OSError):
                raise DlxError(f"the run {run_id} has no spec.yaml: was it made by dlx?") from None
            return Path(path).read_text(encoding="utf-8")


def nested(runs: list[Any]) -> list[Any]:
    """Runs in their order, each sweep's trials (by `mlflow.parentRunId`) right after their
    parent when it is listed too, in their own order."""
    listed = {run.info.run_id for run in runs}
    children: dict[str, list[Any]] = {}
    for run in runs:
        parent = run.data.tags.get(PARENT_RUN)
        if parent in listed:
            children.setdefault(parent, []).append(run)
    ordered = []
    for run in runs:
        if run.data.tags.get(PARENT_RUN) not in listed:
            ordered.append(run)
            ordered.extend(children.get(run.info.run_id, []))
    return ordered


def short_id(run: Any) -> str:
    return run.info.run_id[:8]
