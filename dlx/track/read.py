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

Nothing is capped: a listing reads every run of an experiment unless its caller gives a
`limit` (and then says what was left out). A listing of ten thousand runs holds half a million
param and tag rows, more than Python can make objects of in the second `dlx compare` has; so a
listing reads only what it is asked for (`params`: all, those that differ between the runs, or
none; `tags`: all or the ones named), and the epoch at which a metric was best is found by the
store (`Store.best_steps`), in one query on sqlite, without reading histories into Python.
"""

from __future__ import annotations

import abc
import json
import math
import sqlite3
import tempfile
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlparse

from dlx.errors import DlxError, UsageError, did_you_mean
from dlx.track.store import (
    SQLITE_BUSY_SECONDS,
    check_sqlite_store,
    mlflow_uri,
    resolve_tracking_uri,
    sqlite_error,
    sqlite_file,
)
from dlx.track.tags import PARENT_RUN

if TYPE_CHECKING:
    from dlx.spec import LoadedSpec

Params = Literal["all", "differing", "none"]
"""Which params each run of a listing holds: all of them; those whose values differ between the
listed runs (a param that some of them lack differs); or none."""

_PREFIX_MATCHES_SHOWN = 5
"""How many runs an ambiguous run id prefix names in its error."""


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
    def experiments(self) -> list[Experiment]:
        """Every active experiment."""

    @abc.abstractmethod
    def runs(
        self,
        experiment: Experiment,
        *,
        filter: str = "",
        limit: int | None = None,
        params: Params = "all",
        tags: Collection[str] | None = None,
    ) -> list[Run]:
        """The runs of an experiment, newest first, failed and killed ones included.

        Args:
            experiment: whose runs.
            filter: an MLflow filter (`MlflowStore` only: `open_store` picks it for one).
            limit: at most this many, the newest; default: every run.
            params: which params each run holds (`Params`).
            tags: only these tags; default: every tag.
        """

    @abc.abstractmethod
    def count_runs(self, experiment: Experiment) -> int | None:
        """How many runs the experiment has; None where counting would mean reading them all
        (a tracking server)."""

    @abc.abstractmethod
    def newest_experiment(self) -> Experiment | None:
        """The active experiment of the newest active run; None in a store without runs."""

    @abc.abstractmethod
    def prefixed(self, prefix: str, most: int) -> list[str]:
        """The ids of at most `most` active runs whose id begins with `prefix`."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> Any | None: ...

    @abc.abstractmethod
    def history(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        """A metric's logged values as (step, value), in step order."""

    @abc.abstractmethod
    def best_steps(
        self, run_ids: Collection[str], metric: str, higher_is_better: bool
    ) -> dict[str, int]:
        """The step at which each run's `metric` was best (`best_step` of its history), by run
        id; a run without a value of it that is a number is left out."""

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
        if name is None:
            newest = self.newest_experiment()
            if newest is None:
                raise DlxError(f"no runs in {self.uri}")
            return newest
        experiments = self.experiments()
        for experiment in experiments:
            if experiment.name == name:
                return experiment
        names = [e.name for e in experiments]
        raise UsageError(
            f"no experiment '{name}' in {self.uri}{did_you_mean(name, names)}; "
            f"experiments: {', '.join(names) or 'none'}"
        )

    def find(self, references: list[str]) -> list:
        """Runs by full id or unique id prefix, in the order given."""
        found = []
        for reference in references:
            run = self.get_run(reference)
            if run is None:
                matches = self.prefixed(reference, _PREFIX_MATCHES_SHOWN + 1)
                if not matches:
                    raise UsageError(f"no run with id '{reference}' in {self.uri}")
                if len(matches) > 1:
                    shown = ", ".join(matches[:_PREFIX_MATCHES_SHOWN])
                    raise UsageError(f"the run id prefix '{reference}' is ambiguous: {shown}")
                run = self.get_run(matches[0])
            found.append(run)
        return found


def best_step(history: Iterable[tuple[int, float]], higher_is_better: bool) -> int | None:
    """The step of a history's best value: the highest or lowest, NaN never; of equal values,
    the earliest step. None when no value is a number.

    Args:
        history: (step, value) pairs, in step order.
        higher_is_better: whether the best value is the highest.
    """
    sign = -1.0 if higher_is_better else 1.0
    best: tuple[float, int] | None = None
    for step, value in history:
        if not math.isnan(value) and (best is None or (sign * value, step) < best):
            best = (sign * value, step)
    return None if best is None else best[1]


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


_IN_IDS = "run_uuid IN (SELECT value FROM json_each(?))"
"""A condition on the runs whose ids a JSON array gives: one argument however many runs
(SQLite caps the arguments of a statement at 32,766)."""


class SqliteStore(Store):
    """MLflow's embedded sqlite store, read directly (see the module's docstring).

    A query that fails (a damaged file, a writer holding its lock too long) raises a
    `StoreError` naming the store.
    """

    def __init__(self, uri: str, path: Path) -> None:
        self.uri = uri
        self.path = path
        self.connection = self._connect()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            f"{self.path.as_uri()}?mode=ro", uri=True, timeout=SQLITE_BUSY_SECONDS
        )

    def _query(
        self, sql: str, arguments: tuple = (), connection: sqlite3.Connection | None = None
    ) -> list[tuple]:
        try:
            return (connection or self.connection).execute(sql, arguments).fetchall()
        except sqlite3.DatabaseError as exc:
            raise sqlite_error(self.uri, exc) from None

    def _beside(self, table: str, ids: str, keys: Collection[str] | None = None) -> Future:
        """`_rows(table, ids, keys)` read in a thread of its own, on a connection of its own:
        sqlite lets go of the GIL while it searches, so a second core reads these rows while
        this thread reads others (a third off listing 10,000 runs on two cores)."""

        def read() -> list[tuple[str, Any, str]]:
            connection = self._connect()
            try:
                return self._rows(table, ids, keys, connection)
            finally:
                connection.close()

        thread = ThreadPoolExecutor(max_workers=1)
        try:
            return thread.submit(read)
        finally:
            thread.shutdown(wait=False)  # the read goes on; the thread ends with it

    def experiments(self) -> list[Experiment]:
        rows = self._query(
            "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'"
        )
        return [Experiment(str(i), name) for i, name in rows]

    def runs(
        self,
        experiment: Experiment,
        *,
        filter: str = "",
        limit: int | None = None,
        params: Params = "all",
        tags: Collection[str] | None = None,
    ) -> list[Run]:
        if filter:
            raise ValueError("SqliteStore reads no MLflow filter: open_store(filter=...) does")
        where = ("experiment_id = ?", (int(experiment.experiment_id),))
        return self._runs(*where, limit=limit, params=params, tags=tags)

    def count_runs(self, experiment: Experiment) -> int:
        ((count,),) = self._query(
            "SELECT COUNT(*) FROM runs WHERE lifecycle_stage = 'active' AND experiment_id = ?",
            (int(experiment.experiment_id),),
        )
        return int(count)

    def newest_experiment(self) -> Experiment | None:
        rows = self._query(
            "SELECT e.experiment_id, e.name FROM runs r JOIN experiments e "
            "ON r.experiment_id = e.experiment_id "
            "WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active' "
            "ORDER BY r.start_time DESC, r.run_uuid LIMIT 1"
        )
        return Experiment(str(rows[0][0]), rows[0][1]) if rows else None

    def prefixed(self, prefix: str, most: int) -> list[str]:
        # A range of ids rather than LIKE, which ignores case and reads `_` as any character.
        rows = self._query(
            "SELECT run_uuid FROM runs WHERE lifecycle_stage = 'active' "
            "AND run_uuid >= ? AND run_uuid < ? ORDER BY run_uuid LIMIT ?",
            (prefix, prefix + "\U0010ffff", most),
        )
        return [run_id for (run_id,) in rows]

    def get_run(self, run_id: str) -> Run | None:
        found = self._runs("run_uuid = ?", (run_id,), limit=1)
        return found[0] if found else None

    def _runs(
        self,
        where: str,
        arguments: tuple,
        *,
        limit: int | None,
        params: Params = "all",
        tags: Collection[str] | None = None,
    ) -> list[Run]:
        rows = self._query(
            "SELECT run_uuid, name, status, start_time, end_time, experiment_id, artifact_uri "
            f"FROM runs WHERE lifecycle_stage = 'active' AND {where} "
            "ORDER BY start_time DESC, run_uuid LIMIT ?",
            (*arguments, -1 if limit is None else limit),
        )
        runs = {
            run_id: Run(RunInfo(run_id, name, status, start, end, str(exp), uri), RunData())
            for run_id, name, status, start, end, exp, uri in rows
        }
        if not runs:
            return []
        ids = json.dumps(list(runs))
        metrics, tag_rows = self._beside("latest_metrics", ids), self._beside("tags", ids, tags)
        if params == "differing":
            self._differing_params(runs, ids)
        elif params == "all":
            for key, value, run_id in self._rows("params", ids):
                runs[run_id].data.params[key] = value
        for key, value, run_id in metrics.result():
            runs[run_id].data.metrics[key] = math.nan if value is None else value
        for key, value, run_id in tag_rows.result():
            runs[run_id].data.tags[key] = value
        return list(runs.values())

    def _differing_params(self, runs: dict[str, Run], ids: str) -> None:
        """Give each of `runs` (whose ids `ids` lists) the params whose values differ between
        them, a param that some of them lack included.

        Every run is compared with the first (the reference) rather than grouped by key, which
        would sort every param row of every run (350,000 for 10,000 runs): one pass over the
        runs' rows returns those whose key and value the reference has not (the values that
        differ, and keys it lacks), and a count from an index names the runs that have fewer
        params than it. A run that lacks some of the reference's keys is among those, or among
        the runs with a key the reference lacks; their params are read whole. Every other run
        has exactly the reference's keys, with its values where the pass returned none.
        """
        reference = next(iter(runs))
        base = dict(self._query("SELECT key, value FROM params WHERE run_uuid = ?", (reference,)))
        other = self._query(
            "SELECT key, value, run_uuid FROM params "
            "WHERE (key, value) NOT IN (SELECT key, value FROM params WHERE run_uuid = ?) "
            f"AND {_IN_IDS}",
            (reference, ids),
        )
        irregular = {run_id for key, _, run_id in other if key not in base}
        irregular.update(
            run_id
            for (run_id,) in self._query(
                "SELECT i.value FROM json_each(?) AS i WHERE "
                "(SELECT COUNT(*) FROM params AS p WHERE p.run_uuid = i.value) < ?",
                (ids, len(base)),
            )
        )
        whole: dict[str, dict[str, str]] = {run_id: {} for run_id in irregular}
        if irregular:
            for key, value, run_id in self._rows("params", json.dumps(list(irregular))):
                whole[run_id][key] = value
        differing = {key for key, _, _ in other}
        differing.update(k for params in whole.values() for k in base if k not in params)
        if not differing:
            return
        shared = {key: value for key, value in base.items() if key in differing}
        for run_id, run in runs.items():
            if run_id in whole:
                held = whole[run_id]
                run.data.params.update((k, held[k]) for k in differing if k in held)
            else:
                run.data.params.update(shared)
        for key, value, run_id in other:
            if run_id not in whole and key in differing:
                runs[run_id].data.params[key] = value

    def _rows(
        self,
        table: str,
        ids: str,
        keys: Collection[str] | None = None,
        connection: sqlite3.Connection | None = None,
    ) -> list[tuple[str, Any, str]]:
        """(key, value, run id) of a table of MLflow's (`params`, `tags`, `latest_metrics`,
        whose NaN values are None) for the runs `ids` lists (a JSON array): every key, or
        those in `keys`."""
        if keys is not None and not keys:
            return []
        value = (
            "CASE WHEN is_nan THEN NULL ELSE value END" if table == "latest_metrics" else "value"
        )
        only = "" if keys is None else "key IN (SELECT value FROM json_each(?)) AND "
        return self._query(
            f"SELECT key, {value}, run_uuid FROM {table} WHERE {only}{_IN_IDS}",
            (ids,) if keys is None else (json.dumps(list(keys)), ids),
            connection,
        )

    def history(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        rows = self._query(
            "SELECT step, value, is_nan FROM metrics WHERE run_uuid = ? AND key = ? "
            "ORDER BY step, timestamp",
            (run_id, metric),
        )
        return [(step, math.nan if is_nan else value) for step, value, is_nan in rows]

    def best_steps(
        self, run_ids: Collection[str], metric: str, higher_is_better: bool
    ) -> dict[str, int]:
        # Each run's best value, then the earliest step that has it: two passes over the
        # metric's rows in MLflow's primary key (key first, and it holds every column read),
        # far cheaper than a window function or a lookup per run.
        best = "MAX" if higher_is_better else "MIN"
        rows = self._query(
            "SELECT m.run_uuid, MIN(m.step) FROM ("
            f"SELECT run_uuid, {best}(value) AS value FROM metrics "
            f"WHERE key = ? AND is_nan = 0 AND {_IN_IDS} GROUP BY run_uuid) AS b "
            "JOIN metrics AS m ON m.key = ? AND m.is_nan = 0 AND m.run_uuid = b.run_uuid "
            "AND m.value = b.value GROUP BY m.run_uuid",
            (metric, json.dumps(list(run_ids)), metric),
        )
        return dict(rows)

    def spec_text(self, run_id: str) -> str:
        run = self.get_run(run_id)
        location = urlparse(run.info.artifact_uri or "") if run else None
        if location is not None and location.scheme == "file":
            path = Path(unquote(location.path)) / "spec.yaml"
            if path.exists():
                return path.read_text(encoding="utf-8")
        return MlflowStore(self.uri).spec_text(run_id)


class MlflowStore(Store):
    """Any MLflow store, through `MlflowClient`.

    Args:
        uri: the tracking URI.
        page_size: the most runs or experiments one request asks for; a listing asks page
            after page (MLflow's page tokens) until it has them all.
    """

    def __init__(self, uri: str, *, page_size: int = 1000) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.page_size = page_size
        self.client = MlflowClient(mlflow_uri(uri))

    def _pages(self, search: Callable[..., Any], limit: int | None = None) -> list:
        """Everything `search(max_results=..., page_token=...)` finds, page after page, or its
        first `limit` results."""
        found: list = []
        token = None
        while limit is None or len(found) < limit:
            size = self.page_size if limit is None else min(self.page_size, limit - len(found))
            page = search(max_results=size, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        return found

    def experiments(self) -> list[Experiment]:
        found = self._pages(self.client.search_experiments)
        return [Experiment(e.experiment_id, e.name) for e in found]

    def runs(
        self,
        experiment: Experiment,
        *,
        filter: str = "",
        limit: int | None = None,
        params: Params = "all",
        tags: Collection[str] | None = None,
    ) -> list[Run]:
        from functools import partial

        from mlflow.exceptions import MlflowException

        search = partial(
            self.client.search_runs,
            [experiment.experiment_id],
            filter_string=filter,
            order_by=["attributes.start_time DESC"],
        )
        try:
            found = self._pages(search, limit)
        except MlflowException as exc:
            raise UsageError(f"--filter: {exc.message}") from None
        keys: set[str] | None = None
        if params == "differing":
            names = {name for run in found for name in run.data.params}
            keys = {n for n in names if len({run.data.params.get(n) for run in found}) > 1}
        elif params == "none":
            keys = set()
        return [_run_of(run, keys, tags) for run in found]

    def count_runs(self, experiment: Experiment) -> None:
        return None

    def newest_experiment(self) -> Experiment | None:
        experiments = {e.experiment_id: e for e in self.experiments()}
        if not experiments:
            return None
        newest = self.client.search_runs(
            list(experiments), max_results=1, order_by=["attributes.start_time DESC"]
        )
        return experiments[newest[0].info.experiment_id] if newest else None

    def prefixed(self, prefix: str, most: int) -> list[str]:
        if prefix and not (prefix.isalnum() and prefix.isascii()):  # no quote, `_` nor `%`
            return []
        ids = [e.experiment_id for e in self.experiments()]
        found = self.client.search_runs(
            ids, filter_string=f"attributes.run_id LIKE '{prefix}%'", max_results=most
        )
        return [run.info.run_id for run in found if run.info.run_id.startswith(prefix)]

    def get_run(self, run_id: str) -> Any | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException:
            return None

    def history(self, run_id: str, metric: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, metric))

    def best_steps(
        self, run_ids: Collection[str], metric: str, higher_is_better: bool
    ) -> dict[str, int]:
        steps = {
            run_id: best_step(self.history(run_id, metric), higher_is_better) for run_id in run_ids
        }
        return {run_id: step for run_id, step in steps.items() if step is not None}

    def spec_text(self, run_id: str) -> str:
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as folder:
            try:
                path = self.client.download_artifacts(run_id, "spec.yaml", folder)
            except (MlflowException, OSError):
                raise DlxError(f"the run {run_id} has no spec.yaml: was it made by dlx?") from None
            return Path(path).read_text(encoding="utf-8")


def _run_of(run: Any, params: set[str] | None, tags: Collection[str] | None) -> Run:
    """MLflow's `Run` as a listing holds it: only the params in `params` and the tags in
    `tags` (None: all)."""
    info, data = run.info, run.data
    return Run(
        RunInfo(
            info.run_id,
            info.run_name,
            info.status,
            info.start_time,
            info.end_time,
            str(info.experiment_id),
            info.artifact_uri,
        ),
        RunData(
            {k: v for k, v in data.params.items() if params is None or k in params},
            dict(data.metrics),
            {k: v for k, v in data.tags.items() if tags is None or k in tags},
        ),
    )


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
