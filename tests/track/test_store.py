import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dlx.errors import DlxError
from dlx.track import TrackedRun, ensure_experiment, resolve_tracking_uri, ui_hint
from dlx.track.store import (
    MLFLOW_TABLES,
    StoreError,
    artifact_location,
    check_sqlite_store,
    lock_beside,
    mlflow_uri,
    open_for_writing,
)
from tests.in_process import dlx_in_process

# A spec that trains in a second, for tests about the store rather than the training.
TINY_SPEC = """\
version: 1
name: iris-tiny
seed: 42
data:
  source: {sklearn: iris}
  validation_split: 0.2
model:
  layers:
    - input: {shape: [4]}
    - dense: {units: 3, activation: softmax}
train:
  epochs: 1
  batch_size: 32
  optimizer: adam
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
tracking:
  experiment: tiny
  log_model: false
"""

DAMAGED = "is damaged or is not an MLflow store"


def test_the_spec_wins_then_the_environment_then_mlflow_db_in_the_working_directory(
    tmp_path, monkeypatch
):
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(None) == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:///runs.db") == "sqlite:///runs.db"


def test_new_experiments_keep_their_artifacts_beside_the_database(store_uri, tmp_path):
    client = MlflowClient(store_uri)
    experiment_id = ensure_experiment(client, "digits")
    assert ensure_experiment(client, "digits") == experiment_id
    location = client.get_experiment(experiment_id).artifact_location
    assert location == (tmp_path / "mlartifacts" / "digits").as_uri()

    with TrackedRun("digits", tracking_uri=store_uri) as run:
        run.log_text("hello", "notes/hello.txt")
    logged = tmp_path / "mlartifacts" / "digits" / run.run_id / "artifacts" / "notes" / "hello.txt"
    assert logged.read_text() == "hello"
    assert not (tmp_path / "mlruns").exists()


def test_two_stores_never_share_an_artifact_folder(tmp_path):
    folders = {
        artifact_location(f"sqlite:///{tmp_path}/a/mlflow.db", "digits"),
        artifact_location(f"sqlite:///{tmp_path}/b/mlflow.db", "digits"),
        artifact_location(f"sqlite:///{tmp_path}/a/other.db", "digits"),
    }
    assert len(folders) == 3
    assert (tmp_path / "a" / "other-mlartifacts" / "digits").as_uri() in folders


def test_a_relative_sqlite_store_resolves_against_the_working_directory(tmp_path):
    assert artifact_location("sqlite:///runs/mlflow.db", "x") == (
        (tmp_path / "runs" / "mlartifacts" / "x").as_uri()
    )


def test_experiment_names_that_are_not_folder_names_get_a_safe_distinct_folder(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    slash, underscore = artifact_location(uri, "team/digits"), artifact_location(uri, "team_digits")
    assert slash != underscore
    assert Path(slash.removeprefix("file://")).name.startswith("team_digits-")
    assert artifact_location(uri, "..") != artifact_location(uri, "...")


def test_servers_and_other_stores_choose_their_own_artifact_location():
    assert artifact_location("http://127.0.0.1:5000", "digits") is None
    assert artifact_location("postgresql://db/mlflow", "digits") is None
    assert artifact_location("sqlite:///:memory:", "digits") is None


def test_a_deleted_experiment_is_an_error_that_says_how_to_restore_it(store_uri):
    client = MlflowClient(store_uri)
    client.delete_experiment(ensure_experiment(client, "digits"))
    with pytest.raises(DlxError, match="was deleted. Restore it with `mlflow experiments restore"):
        ensure_experiment(client, "digits")


def test_ui_hint_links_to_a_server_and_says_how_to_open_a_local_store():
    assert ui_hint("http://host:5000/", "3", "abc") == "http://host:5000/#/experiments/3/runs/abc"
    assert ui_hint("https://host", "3") == "https://host/#/experiments/3"
    assert ui_hint("sqlite:////home/me/mlflow.db", "3", "abc") == (
        "mlflow ui --backend-store-uri sqlite:////home/me/mlflow.db"
    )
    assert ui_hint("sqlite:////my runs/mlflow.db") == (
        "mlflow ui --backend-store-uri 'sqlite:////my runs/mlflow.db'"
    )


def dlx(*arguments: str, cwd: Path, timeout: float = 60, prefix: tuple[str, ...] = ()):
    """Run `dlx` in a process (under `prefix`, a command that changes what the process may
    do); within `timeout` seconds (MLflow alone retries a store that fails to open for
    minutes)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "dlx", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(done: subprocess.CompletedProcess, expected: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert expected in lines[0]


def test_the_lock_beside_a_store_is_held_by_one_at_a_time_and_leaves_no_file(store_uri, tmp_path):
    """Threads stand for processes: each opens the lock file itself, and `flock` locks an open
    file. They take it 400 times at once, each time while the one before removes the file it
    held: each finds nobody else inside (without checking that the file it locked is still
    there, hundreds would)."""
    import threading
    import time

    open_for_writing(store_uri)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # no mlflow.db.lock

    database, inside, overlaps = tmp_path / "optuna.db", [], []
    start = threading.Barrier(8)

    def take_it_50_times() -> None:
        start.wait()
        for _ in range(50):
            with lock_beside(database):
                inside.append(1)
                time.sleep(0)  # no wait: the other threads run while this one holds the lock
                if len(inside) > 1:
                    overlaps.append(len(inside))
                inside.pop()

    threads = [threading.Thread(target=take_it_50_times) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not overlaps
    assert not (tmp_path / "optuna.db.lock").exists()


@pytest.mark.slow
def test_processes_opening_a_new_store_at_once_create_it_one_at_a_time(tmp_path):
    # MLflow alone races here: each process runs the schema migrations, and most fail.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = f"from dlx.track.store import open_for_writing; open_for_writing({uri!r})"
    started = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [process.communicate(timeout=120)[1] for process in started]
    assert [process.returncode for process in started] == [0] * 4, "\n".join(errors)
    assert [e.name for e in MlflowClient(uri).search_experiments()] == ["Default"]
    assert not (tmp_path / "mlflow.db.lock").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_trainings_started_at_once_on_a_new_store_all_finish(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "dlx", "train", "tiny.yaml"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        # Seconds each on an idle machine; minutes when its cores are shared.
        errors = [process.communicate(timeout=280)[1] for process in started]
    finally:
        for process in started:
            process.kill()
    assert [process.returncode for process in started] == [0] * 4, "\n".join(errors)
    runs = MlflowClient(resolve_tracking_uri(None)).search_runs(
        [ensure_experiment(MlflowClient(resolve_tracking_uri(None)), "tiny")]
    )
    assert [run.info.status for run in runs] == ["FINISHED"] * 4


def _store_with_a_run(folder: Path, migrated_store: Path) -> Path:
    path = folder / "mlflow.db"
    shutil.copy(migrated_store, path)
    with TrackedRun("tiny", tracking_uri=f"sqlite:///{path}", params={"seed": "1"}) as run:
        run.log_metrics({"loss": 0.5}, step=0)
    return path


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _truncated(path: Path) -> None:
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)


def _not_mlflow(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    connection.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_garbage, f"{DAMAGED}: file is not a database"),
        (_truncated, f"{DAMAGED}: database disk image is malformed"),
        (_not_mlflow, "is not an MLflow store: its database has no tables experiments"),
    ],
)
def test_a_damaged_store_is_one_line_for_every_command_and_is_left_as_it_was(
    tmp_path, migrated_store, damage, expected
):
    path = _store_with_a_run(tmp_path, migrated_store)
    damage(path)
    before = path.read_bytes()
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    for command in (["runs"], ["compare"], ["compare", "--filter", "params.seed = '1'"]):
        one_error_line(dlx_in_process(*command, cwd=tmp_path), expected)
    one_error_line(dlx_in_process("train", "tiny.yaml", cwd=tmp_path), expected)
    assert path.read_bytes() == before


@pytest.mark.slow
def test_an_empty_file_is_an_empty_store_that_a_run_initialises(tmp_path):
    path = tmp_path / "mlflow.db"
    path.touch()
    one_error_line(dlx_in_process("runs", cwd=tmp_path), "no runs in sqlite:///")
    with TrackedRun("tiny", tracking_uri=f"sqlite:///{path}") as run:
        run.log_metrics({"loss": 0.5}, step=0)
    assert MlflowClient(f"sqlite:///{path}").get_run(run.run_id).info.status == "FINISHED"


def _without_write_permission() -> tuple[str, ...]:
    """A command prefix under which permissions bind this process: root ignores them unless
    it drops the capabilities that let it."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root, and setpriv (util-linux) is not installed to drop root's")
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


def test_a_store_in_a_folder_that_cannot_be_written_is_one_line_before_training(tmp_path):
    prefix = _without_write_permission()
    folder = tmp_path / "read-only"
    folder.mkdir()
    (folder / "tiny.yaml").write_text(TINY_SPEC)
    folder.chmod(0o555)
    try:
        done = dlx("train", "tiny.yaml", cwd=folder, prefix=prefix)
    finally:
        folder.chmod(0o755)
    one_error_line(done, f"cannot be created or written: {folder} is not writable")
    assert "--tracking-uri" in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.yaml"]


def test_a_postgresql_uri_names_the_driver_that_is_installed():
    uri = "postgresql://me@127.0.0.1:5432/mlflow"
    assert mlflow_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    if importlib.util.find_spec("psycopg2") is not None:
        assert mlflow_uri(uri) == uri
    elif importlib.util.find_spec("psycopg") is not None:
        assert mlflow_uri(uri) == "postgresql+psycopg://me@127.0.0.1:5432/mlflow"
    else:
        with pytest.raises(StoreError, match=r"pip install 'dlx\[postgres\]'"):
            mlflow_uri(uri)


def test_a_missing_database_driver_is_one_line_that_says_what_to_install():
    if importlib.util.find_spec("psycopg2") is not None:
        pytest.skip("psycopg2 is installed")
    with pytest.raises(StoreError, match=r"not installed.*pip install 'dlx\[postgres\]'"):
        open_for_writing("postgresql+psycopg2://me@127.0.0.1:1/mlflow")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_runs_are_recorded_in_and_read_from_a_postgresql_store(postgres_uri, tmp_path):
    with TrackedRun("pg", tracking_uri=postgres_uri, params={"seed": "1"}) as run:
        run.log_metrics({"loss": 0.5}, step=0)
    done = dlx_in_process("runs", "--format", "json", "--tracking-uri", postgres_uri, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [listed] = json.loads(done.stdout)
    assert (listed["run_id"], listed["status"]) == (run.run_id, "FINISHED")


def _refused_uri() -> str:
    """A tracking server's URI on a port where nothing listens."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    "arguments",
    [
        ["train", "spec.yaml"],
        ["runs"],
        ["compare"],
        ["sweep", "spec.yaml"],
        ["export", "0123456789abcdef0123456789abcdef", "-o", "out"],
    ],
    ids=lambda arguments: arguments[0],
)
def test_a_tracking_server_that_is_down_is_one_line_in_seconds_for_every_command(
    arguments, tmp_path
):
    uri = _refused_uri()
    sweep = "sweep: {metric: val_accuracy, trials: 2, params: {seed: {choice: [1, 2]}}}\n"
    (tmp_path / "spec.yaml").write_text(TINY_SPEC + sweep)
    done = dlx_in_process(*arguments, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: the MLflow tracking server {uri} does not answer (Connection refused). Start "
        "it, or record elsewhere with --tracking-uri, $MLFLOW_TRACKING_URI or tracking.uri in "
        "the spec"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # no optuna.db, no run


def test_a_tracking_server_that_takes_connections_but_never_answers_fails_in_its_timeout(
    monkeypatch,
):
    import socket
    import time

    from dlx.track import store

    monkeypatch.setattr(store, "SERVER_TIMEOUT_S", 0.5)
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(StoreError, match="does not answer \\(no answer within 0.5 s\\)"):
            mlflow_uri(uri)
        assert time.monotonic() - started < 5


def test_a_store_seen_while_another_process_creates_it_is_checked_once_it_is_made(tmp_path):
    # A training that checks the store while another one is still creating MLflow's tables
    # (some made, others not) waits for it instead of calling the store damaged.
    import threading

    database = tmp_path / "mlflow.db"
    uri = f"sqlite:///{database}"
    creating, checked = threading.Event(), []
    tables = sorted(MLFLOW_TABLES)

    def create() -> None:
        with lock_beside(database):
            connection = sqlite3.connect(database)
            connection.execute(f"CREATE TABLE {tables[0]} (x)")
            connection.commit()
            creating.set()
            while not checking.is_alive():
                pass
            checking.join(timeout=0.5)  # the check waits on the lock meanwhile
            for table in tables[1:]:
                connection.execute(f"CREATE TABLE {table} (x)")
            connection.commit()
            connection.close()

    checking = threading.Thread(target=lambda: checked.append(check_sqlite_store(database, uri)))
    creator = threading.Thread(target=create)
    creator.start()
    creating.wait(timeout=10)
    checking.start()
    creator.join(timeout=10)
    checking.join(timeout=10)
    assert checked == [True]
    assert not database.with_name("mlflow.db.lock").exists()
