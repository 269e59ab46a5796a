from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from dlx.errors import DlxError
from dlx.spec import load_spec
from dlx.track import (
    TrackedRun,
    confusion_matrix_figure,
    flatten_params,
    resolved_spec_text,
)
from dlx.track.params import MAX_PARAM_VALUE_LENGTH, PARAM_TRUNCATION_MARKER


def _read_artifact(client, run_id, path):
    return Path(client.download_artifacts(run_id, path)).read_text()


def test_a_run_name_tag_names_the_run(store_uri):
    """As a sweep names its trials' runs (`<name>-<trial>`, a tag over the spec's name): the
    tag names the run, where MLflow refuses a name and a tag that differ."""
    tags = {"mlflow.runName": "digits-cnn-3"}
    with TrackedRun("digits", run_name="digits-cnn", tags=tags, tracking_uri=store_uri) as run:
        pass
    assert MlflowClient(store_uri).get_run(run.run_id).info.run_name == "digits-cnn-3"


def test_a_spec_run_records_its_spec_params_tags_and_metrics(store_uri, spec_file, tmp_path):
    loaded = load_spec(spec_file)
    run = TrackedRun.for_spec(loaded, strategy="default", replicas=1, data_fingerprint="f00d")
    with run:
        run.log_metrics({"loss": np.float32(0.5), "accuracy": 0.75}, step=0)
        run.log_metrics({"loss": 0.25, "accuracy": 0.875}, step=1)
        run.set_tags({"dlx.model_params": "1234"})
        run.log_figure(confusion_matrix_figure([0, 1, 1], [0, 1, 0]), "confusion_matrix.png")
        (tmp_path / "summary.txt").write_text("Model: sequential")
        run.log_artifact(tmp_path / "summary.txt")

    client = MlflowClient(store_uri)
    record = client.get_run(run.run_id)
    assert record.info.status == "FINISHED"
    assert record.info.run_name == "digits-cnn"
    assert client.get_experiment(record.info.experiment_id).name == "digits"
    assert record.data.params == flatten_params(loaded.document.data)
    assert record.data.params["train.optimizer.adam.learning_rate"] == "1e-05"
    assert record.data.tags["dlx.data_fingerprint"] == "f00d"
    assert record.data.tags["dlx.model_params"] == "1234"
    assert record.data.tags["team"] == "vision"
    assert record.data.metrics == {"loss": 0.25, "accuracy": 0.875}
    assert [m.value for m in client.get_metric_history(run.run_id, "loss")] == [0.5, 0.25]
    assert _read_artifact(client, run.run_id, "spec.yaml") == resolved_spec_text(loaded)
    assert _read_artifact(client, run.run_id, "summary.txt") == "Model: sequential"
    names = {artifact.path for artifact in client.list_artifacts(run.run_id)}
    assert names == {"spec.yaml", "summary.txt", "confusion_matrix.png"}


def test_many_params_and_metrics_are_logged_in_batches(store_uri):
    params = {f"p{i}": str(i) for i in range(250)}
    metrics = {f"m{i}": float(i) for i in range(2500)}
    with TrackedRun("many", tracking_uri=store_uri, params=params) as run:
        requests = []
        log_batch = run.client.log_batch
        run.client.log_batch = lambda *args, **kwargs: (
            requests.append(1) or log_batch(*args, **kwargs)
        )
        run.log_metrics(metrics, step=3)
    assert len(requests) == 3
    data = MlflowClient(store_uri).get_run(run.run_id).data
    assert data.params == params
    assert data.metrics == metrics


def test_values_mlflow_would_refuse_are_recorded_safely(store_uri):
    tags = {"owner@team": "x" * 9000}
    params = {"weird key/with:chars": "v", "long": "y" * 7000}
    with TrackedRun("safe", tracking_uri=store_uri, tags=tags, params=params) as run:
        run.log_metrics({"val/loss": 1.0})
    data = MlflowClient(store_uri).get_run(run.run_id).data
    assert data.tags["owner_team"].endswith("…(truncated)")
    assert len(data.tags["owner_team"]) == 8000
    assert data.params["weird key_with_chars"] == "v"
    assert data.params["long"].endswith("…(truncated, see spec.yaml)")
    assert data.metrics == {"val_loss": 1.0}


def test_long_param_values_are_cut_with_a_visible_marker(store_uri):
    params = flatten_params({"description": "x" * 10_000, "short": "y" * MAX_PARAM_VALUE_LENGTH})
    with TrackedRun("long", tracking_uri=store_uri, params=params) as run:
        pass
    logged = MlflowClient(store_uri).get_run(run.run_id).data.params
    assert len(logged["description"]) == MAX_PARAM_VALUE_LENGTH
    assert logged["description"].endswith(PARAM_TRUNCATION_MARKER)
    assert logged["short"] == "y" * MAX_PARAM_VALUE_LENGTH


def test_an_exception_fails_the_run_keeps_its_metrics_and_logs_the_traceback(store_uri):
    run = TrackedRun("failing", tracking_uri=store_uri)
    with pytest.raises(ValueError, match="boom"), run:
        run.log_metrics({"loss": 1.5}, step=0)
        raise ValueError("boom")
    client = MlflowClient(store_uri)
    record = client.get_run(run.run_id)
    assert record.info.status == "FAILED"
    assert record.data.metrics == {"loss": 1.5}
    text = _read_artifact(client, run.run_id, "traceback.txt")
    assert text.startswith("Traceback (most recent call last):")
    assert "ValueError: boom" in text


def test_an_interrupt_kills_the_run_and_goes_on(store_uri):
    run = TrackedRun("interrupted", tracking_uri=store_uri)
    with pytest.raises(KeyboardInterrupt), run:
        run.log_metrics({"loss": 1.5}, step=0)
        raise KeyboardInterrupt
    record = MlflowClient(store_uri).get_run(run.run_id)
    assert record.info.status == "KILLED"
    assert record.data.metrics == {"loss": 1.5}


def test_a_store_that_refuses_the_run_is_a_dlx_error(store_uri):
    with pytest.raises(DlxError, match="could not start an MLflow run in experiment ''"):
        TrackedRun("", tracking_uri=store_uri).start()
    with pytest.raises(DlxError, match=r"server http://127\.0\.0\.1:9 does not answer"):
        TrackedRun("x", tracking_uri="http://127.0.0.1:9").start()


def test_a_run_is_used_between_start_and_end_once(store_uri):
    run = TrackedRun("x", tracking_uri=store_uri)
    with pytest.raises(DlxError, match="has not been started"):
        run.log_metrics({"loss": 1.0})
    with run, pytest.raises(DlxError, match="has already been started"):
        run.start()


def test_the_global_mlflow_state_is_left_alone(store_uri):
    import mlflow

    with TrackedRun("library", tracking_uri=store_uri) as run:
        assert mlflow.active_run() is None
        run.log_metrics({"loss": 1.0})
    assert mlflow.active_run() is None
