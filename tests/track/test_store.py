from pathlib import Path

import pytest
from mlflow import MlflowClient

from dlx.errors import DlxError
from dlx.track import TrackedRun, ensure_experiment, resolve_tracking_uri, ui_hint
from dlx.track.store import artifact_location


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
