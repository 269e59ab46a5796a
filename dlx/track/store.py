"""Where runs are recorded: the tracking URI, the experiment, and the experiment's artifacts.

dlx's default store is an SQLite file, `mlflow.db`, in the working directory (MLflow 3 refuses a
plain `./mlruns` folder unless opted in). MLflow's client puts the artifacts of a local
database store in `./mlruns` under the *working directory*, so two stores used from one folder
would share one artifact tree, and a store opened from another folder would not find its
artifacts. dlx gives every experiment it creates in an SQLite store an explicit artifact
folder beside the database file instead.

Before anything is trained, `check_store` checks that the store can take a run: an SQLite file
that is damaged, not MLflow's, or in a folder that cannot be written is reported in one line.
`open_for_writing` then creates a new SQLite store under a lock, so that several trainings
started at once in an empty folder do not race through MLflow's schema migrations.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from dlx.errors import DlxError
from dlx.proc import signals
from dlx.track.params import UNSAFE_CHARACTERS, short_hash

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_STORE_FILE = "mlflow.db"

MLFLOW_TABLES = frozenset({"experiments", "runs", "params", "metrics", "latest_metrics", "tags"})
"""The tables of MLflow's SQL store that dlx reads directly (`dlx.track.read.SqliteStore`)."""

SQLITE_BUSY_SECONDS = 20.0
"""How long a reader waits for a writer's lock on an SQLite store (MLflow's own sessions wait
20 s too)."""

_ELSEWHERE = "elsewhere with --tracking-uri, $MLFLOW_TRACKING_URI or tracking.uri in the spec"
_SQL_DATABASES = ("postgresql", "mysql", "mssql")


class StoreError(DlxError):
    """A tracking store that cannot be used: damaged, not MLflow's, not writable, or without
    the database driver it needs (exit status 1)."""


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


def check_sqlite_store(path: Path, tracking_uri: str) -> bool:
    """Check that an existing SQLite file reads as an MLflow store, without changing it.

    An empty file (0 bytes, or a database without tables) is an empty store: SQLite and MLflow
    take it for a new database, and MLflow creates its tables in it when a run is recorded.

    Args:
        path: the database file.
        tracking_uri: the store's URI, for messages.

    Returns:
        Whether the store has MLflow's tables (`False`: it is empty).

    Raises:
        StoreError: the file cannot be read, is not an SQLite database, or is a database
            without MLflow's tables.
    """
    tables = _tables(path, tracking_uri)
    if tables and not MLFLOW_TABLES.issubset(tables) and _being_created(path):
        tables = _tables(path, tracking_uri)
    if tables and not MLFLOW_TABLES.issubset(tables):
        missing = ", ".join(sorted(MLFLOW_TABLES - tables))
        raise StoreError(
            f"the store {tracking_uri} is not an MLflow store: its database has no tables "
            f"{missing}. Record {_ELSEWHERE}"
        )
    return bool(tables)


def _tables(path: Path, tracking_uri: str) -> set[str]:
    try:
        connection = sqlite3.connect(
            f"{path.as_uri()}?mode=ro", uri=True, timeout=SQLITE_BUSY_SECONDS
        )
        try:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {name for (name,) in rows.fetchall()}
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise sqlite_error(tracking_uri, exc) from None


def _being_created(database: Path) -> bool:
    """Wait for a process that is creating the store (`open_for_writing`) to be done; whether
    one was (a store with only some of its tables may be one in the making)."""
    if not database.with_name(database.name + ".lock").exists():
        return False
    try:
        with lock_beside(database):
            return True
    except OSError:  # the lock cannot be taken here (a read-only folder): nothing to wait on
        return False


def sqlite_error(tracking_uri: str, exc: sqlite3.Error) -> StoreError:
    """The error to report when SQLite fails on a store: busy, unreadable, or damaged."""
    message = str(exc)
    if "locked" in message or "busy" in message:
        return StoreError(
            f"the MLflow store {tracking_uri} stayed locked by another process for "
            f"{SQLITE_BUSY_SECONDS:.0f} s ({message}). Try again when it is done"
        )
    if "unable to open" in message:
        return StoreError(
            f"the MLflow store {tracking_uri} cannot be opened ({message}). "
            "Check that the file and its folder can be read"
        )
    return StoreError(
        f"the MLflow store {tracking_uri} is damaged or is not an MLflow store: {message}. "
        f"Restore it from a backup, or record {_ELSEWHERE}"
    )


def check_store(tracking_uri: str) -> None:
    """Check, without writing anything, that runs can be recorded at `tracking_uri`.

    An SQLite store must be in a folder that can be written (SQLite writes its journal beside
    the database, dlx the artifacts; a folder still to be created, in one that can) and, when
    the file exists, be MLflow's (`check_sqlite_store`) and writable. A PostgreSQL store needs
    a driver (`mlflow_uri`). Tracking servers and other databases are not asked anything.

    Raises:
        StoreError: runs cannot be recorded there, with what to do about it.
    """
    database = sqlite_file(tracking_uri)
    if database is None:
        mlflow_uri(tracking_uri)
        return
    folder = next(f for f in (database.parent, *database.parent.parents) if f.exists())
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(
            f"the MLflow store {tracking_uri} cannot be created or written: {folder} is not "
            f"writable. Record {_ELSEWHERE}"
        )
    if database.exists():
        if not os.access(database, os.R_OK | os.W_OK):
            raise StoreError(
                f"the MLflow store {tracking_uri} cannot be written: {database} is read-only. "
                f"Make it writable, or record {_ELSEWHERE}"
            )
        check_sqlite_store(database, tracking_uri)


def open_for_writing(tracking_uri: str) -> MlflowClient:
    """An `MlflowClient` for a store that runs can be recorded in, checked first.

    After `check_store`, a missing or empty SQLite store is created, with MLflow's tables,
    while holding an exclusive lock on the file `<database>.lock` beside it (`lock_beside`,
    which removes it), so that processes starting at once create it one at a time. A damaged
    store is never written to. Other SQL databases are opened too, so that a refused login
    shows now; tracking servers are not asked anything yet.

    Args:
        tracking_uri: the store's URI.

    Returns:
        A client for the store.

    Raises:
        StoreError: the store cannot be used, with what to do about it.
    """
    quiet_mlflow()  # creating a store logs each of its migrations
    check_store(tracking_uri)
    database = sqlite_file(tracking_uri)
    if database is None:
        database_server = tracking_uri.partition(":")[0].partition("+")[0] in _SQL_DATABASES
        client = _client(tracking_uri, probe=database_server)
        return cast("MlflowClient", _Uninterrupted(client)) if database_server else client
    with contextlib.ExitStack() as held:
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(lock_beside(database))
        except OSError as exc:
            raise StoreError(
                f"the MLflow store {tracking_uri} cannot be created or written: "
                f"{exc.strerror}: {exc.filename}. Record {_ELSEWHERE}"
            ) from None
        return cast("MlflowClient", _Uninterrupted(_client(tracking_uri, probe=True)))


@contextlib.contextmanager
def lock_beside(database: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `<database>.lock` beside `database`, and remove the
    file before letting the lock go: the folder keeps nothing of it (without POSIX's `flock`,
    as on Windows, nothing is locked).

    A process that waited on the file may get its lock once the file is gone, and another
    may have made a new one meanwhile: the lock held is the file that is there, so each
    process checks, once it has the lock, that the file it locked is still the one at that
    path, and locks it anew when not. Two processes never hold it at once.

    Raises:
        OSError: the file cannot be made (its folder cannot be written).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    path = database.with_name(database.name + ".lock")
    while True:
        lock = open(path, "a+b")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _same_file(lock, path):
                break
        except BaseException:
            lock.close()
            raise
        lock.close()
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        lock.close()


def _same_file(opened: Any, path: Path) -> bool:
    """Whether the open file `opened` is the file at `path` now."""
    try:
        there = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(opened.fileno())
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


class _Uninterrupted:
    """A database store's `MlflowClient` whose calls Ctrl-C and SIGTERM do not cut in two.

    A signal's exception raised in the middle of SQLAlchemy's commit leaves the transaction
    open and its lock held: the same process can then no longer record the run KILLED
    ("database is locked"). Each call runs with the signals held back (`signals.deferred`),
    and the stop takes effect as it returns; a second signal still ends the process.
    """

    def __init__(self, client: MlflowClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def uninterrupted(*args: Any, **kwargs: Any) -> Any:
            with signals.deferred():
                return attribute(*args, **kwargs)

        return uninterrupted


def mlflow_uri(tracking_uri: str) -> str:
    """The URI to give MLflow for a store: `tracking_uri`, with a PostgreSQL driver named.

    SQLAlchemy reads `postgresql://` as `postgresql+psycopg2://`. When psycopg2 is missing and
    psycopg (3, `pip install 'dlx[postgres]'`) is installed, the URI names psycopg instead.

    Raises:
        StoreError: a PostgreSQL store and neither driver installed.
    """
    scheme, separator, rest = tracking_uri.partition("://")
    if scheme in ("http", "https"):
        _check_server(tracking_uri)
    if not separator or scheme != "postgresql":
        return tracking_uri
    if importlib.util.find_spec("psycopg2") is not None:
        return tracking_uri
    if importlib.util.find_spec("psycopg") is not None:
        return f"postgresql+psycopg://{rest}"
    raise StoreError(
        f"the MLflow store {tracking_uri} needs a PostgreSQL driver, and none is installed. "
        "Install one with `pip install 'dlx[postgres]'`"
    )


SERVER_TIMEOUT_S = 5.0
"""How long a tracking server gets to answer dlx's first request (connecting and answering)."""


@functools.cache
def _check_server(tracking_uri: str) -> None:
    """Check that the tracking server at `tracking_uri` answers, in seconds, once a process.

    MLflow retries a request to a server that is down with a growing back-off: a command would
    wait about four minutes before saying anything. Any HTTP answer will do (its `/health`, or
    an error page of a proxy that asks for a login): what fails is no answer at all.

    Raises:
        StoreError: no answer within `SERVER_TIMEOUT_S` seconds, with why.
    """
    import socket
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=SERVER_TIMEOUT_S)
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, socket.timeout | TimeoutError):
            why = f"no answer within {SERVER_TIMEOUT_S:g} s"
        else:
            why = getattr(reason, "strerror", None) or str(reason)
        raise StoreError(
            f"the MLflow tracking server {tracking_uri} does not answer ({why}). Start it, or "
            f"record {_ELSEWHERE}"
        ) from None


def _client(tracking_uri: str, *, probe: bool) -> MlflowClient:
    """A client for the store; with `probe`, MLflow opens it (creating an empty database's
    tables) and reads from it now."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        client = MlflowClient(mlflow_uri(tracking_uri))
        if probe:
            client.search_experiments(max_results=1)
    except ImportError as exc:
        raise StoreError(
            f"the MLflow store {tracking_uri} needs a database driver that is not installed "
            f"({exc}). For PostgreSQL: `pip install 'dlx[postgres]'`"
        ) from None
    except (MlflowException, SQLAlchemyError) as exc:
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        raise StoreError(
            f"could not open the MLflow store {tracking_uri}: {message.splitlines()[0]}"
        ) from None
    return client


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
    # dlx says what it downloads; MLflow's progress bar would fill the console with its frames.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


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
