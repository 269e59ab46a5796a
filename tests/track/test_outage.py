"""A tracking server that goes away mid-run loses no metric, and logs none twice.

Each test runs a real `mlflow server` (`tests.track.server.MlflowServer`) and stops it while
metrics are being logged: during training (the `dlx_tests>ServerOutage` callback of
`tests.track.plugins_for_outage`) or between `Outbox` calls.
"""

from __future__ import annotations

import csv
import json
import logging
import time

import pytest
from mlflow import MlflowClient

import tests.track.plugins_for_outage as outage
from dlx import api
from dlx.track import TrackedRun
from dlx.track.outbox import Outbox
from tests.track.server import START_TIMEOUT_S, MlflowServer

pytestmark = pytest.mark.slow  # every test here starts an MLflow server; most train

EPOCHS = 8
KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")

SPEC = """\
version: 1
name: iris-outage
seed: 42
plugins: [tests.track.plugins_for_outage]
data:
  source: {{sklearn: iris}}
  validation_split: 0.2
model:
  layers:
    - input: {{shape: [4]}}
    - dense: {{units: 8, activation: relu}}
    - dense: {{units: 3, activation: softmax}}
train:
  epochs: {epochs}
  batch_size: 16
  optimizer: {{adam: {{learning_rate: 1e-2}}}}
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  callbacks:
    - dlx_tests>ServerOutage: {outage}
tracking:
  experiment: outage
  log_model: false
"""


@pytest.fixture
def server(tmp_path):
    """A started server, which `ServerOutage` stops and starts; stopped after the test."""
    served = MlflowServer(tmp_path / "server")
    outage.SERVER = served
    outage.EVENTS.clear()
    outage.RESTARTER.clear()
    try:
        served.start()
        yield served
    finally:
        for thread in outage.RESTARTER:
            thread.join(START_TIMEOUT_S + 10)
        served.stop()
        outage.SERVER = None


def _train(tmp_path, server, callback_arguments: str):
    spec = tmp_path / "outage.yaml"
    spec.write_text(SPEC.format(epochs=EPOCHS, outage=callback_arguments))
    return api.train(spec, [], tracking_uri=server.url)


def _assert_every_epoch_logged_once(server, result, tmp_path):
    client = MlflowClient(server.url)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    path = client.download_artifacts(result.run_id, "history.csv", str(tmp_path))
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))
    for key in KEYS:
        history = client.get_metric_history(result.run_id, key)
        steps = sorted(metric.step for metric in history)
        assert steps == list(range(EPOCHS)), f"{key}: steps {steps}"
        by_step = {metric.step: metric.value for metric in history}
        assert by_step == {step: float(rows[step][key]) for step in range(EPOCHS)}, key
        assert by_step[EPOCHS - 1] == result.metrics[key] == run.data.metrics[key]


def _events() -> list[str]:
    return [name for name, _ in outage.EVENTS]


@pytest.mark.timeout(240)
def test_a_server_stopped_and_restarted_mid_training_loses_no_metric(server, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="dlx.track.outbox")
    result = _train(tmp_path, server, "{stop_at: 2, start_at: 5}")

    assert _events() == ["stopped", "started", "train_end"]
    assert server.starts == 2
    assert "tracking store unreachable" in caplog.text  # the outage was seen, and survived
    assert "tracking store back" in caplog.text
    _assert_every_epoch_logged_once(server, result, tmp_path)


@pytest.mark.timeout(300)
def test_metrics_held_back_until_after_training_are_sent_at_the_end(server, tmp_path, caplog):
    # The server is down from epoch 2 on, and only back once training ended: the run's end
    # waits for it with MLflow's retries (minutes), then sends epochs 2 to 7.
    caplog.set_level(logging.WARNING, logger="dlx.track.outbox")
    result = _train(tmp_path, server, "{stop_at: 2, start_after_training: true, delay_s: 1.0}")

    events = dict(reversed(outage.EVENTS))  # the first time of each
    assert _events() == ["stopped", "train_end", "restarting", "started"]
    assert events["stopped"] < events["train_end"] < events["restarting"]
    assert "tracking store unreachable" in caplog.text
    _assert_every_epoch_logged_once(server, result, tmp_path)


@pytest.mark.timeout(180)
def test_the_outbox_keeps_metrics_while_the_server_is_down(server, tmp_path):
    journal = tmp_path / "checkpoints" / "metrics.jsonl"
    with TrackedRun("outbox", tracking_uri=server.url) as run:
        outbox = Outbox(run, journal.parent)
        outbox.add({"loss": 1.0, "accuracy": 0.1}, step=0)
        assert outbox.send()
        assert outbox.delivered_steps() == {0}

        server.stop()
        for step in (1, 2):
            outbox.add({"loss": 1.0 / (step + 1), "accuracy": 0.1 * (step + 1)}, step=step)
            started = time.monotonic()
            assert not outbox.send()  # one quick try, not MLflow's minutes of retries
            assert time.monotonic() - started < 5
        assert [step for step, _, _ in outbox.pending] == [1, 2]
        lines = [json.loads(line) for line in journal.read_text().splitlines()]
        assert [line["step"] for line in lines] == [0, 1, 2]
        assert lines[2]["metrics"] == {"loss": 1.0 / 3, "accuracy": pytest.approx(0.3)}
        assert set(outbox.kept()) == {0, 1, 2}

        server.start()
        # What the end of a run does: queue what the journal has and the store lacks, send.
        outbox.requeue(range(3))
        assert [step for step, _, _ in outbox.pending] == [1, 2]  # each step queued once
        assert outbox.send(wait=True)
        assert not outbox.pending
        assert outbox.delivered_steps() == {0, 1, 2}
        outbox.requeue(range(3))  # all delivered: nothing to send again
        assert not outbox.pending

    client = MlflowClient(server.url)
    assert client.get_run(run.run_id).info.status == "FINISHED"
    for key in ("loss", "accuracy"):
        history = client.get_metric_history(run.run_id, key)
        assert sorted(metric.step for metric in history) == [0, 1, 2], key
        by_step = {metric.step: metric.value for metric in history}
        assert by_step == {step: kept[key] for step, (kept, _) in outbox.kept().items()}


@pytest.mark.timeout(300)
def test_a_store_still_down_at_the_end_keeps_the_run_for_resume(server, tmp_path, monkeypatch):
    from dlx.train.runner import TrainingFailed

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # the end's wait, shortened
    with pytest.raises(TrainingFailed) as failed:
        _train(tmp_path, server, "{stop_at: 2}")
    message = str(failed.value)
    assert "could not be marked FAILED" in message and "shows as RUNNING" in message
    run_id = message.split("The run ")[1].split()[0]

    server.start()
    assert MlflowClient(server.url).get_run(run_id).info.status == "RUNNING"
    result = api.resume(run_id, tracking_uri=server.url)
    assert result.run_id == run_id
    _assert_every_epoch_logged_once(server, result, tmp_path)


def test_an_entry_appended_after_a_line_cut_by_a_kill_is_kept(tmp_path):
    journal = tmp_path / "metrics.jsonl"
    journal.write_text('{"step": 0, "timestamp": 1, "metrics": {"loss": 0.5}}\n{"step": 1, "tim')
    outbox = Outbox(None, tmp_path)  # journaling needs no run
    outbox.add({"loss": 0.25}, step=1)
    outbox.add({"loss": 0.125}, step=2)
    kept = outbox.kept()
    assert sorted(kept) == [0, 1, 2]
    assert kept[1][0] == {"loss": 0.25} and kept[2][0] == {"loss": 0.125}
