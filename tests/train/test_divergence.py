"""A run whose loss stops being a number ends FAILED with a clear message (`train.on_nan`)."""

import pytest
from mlflow import MlflowClient

from dlx import api
from tests.conftest import ROOT
from tests.in_process import dlx_in_process

pytestmark = pytest.mark.slow  # each test trains

DIGITS = ROOT / "specs" / "digits_cnn.yaml"
HUGE_STEPS = "--set=train.optimizer={adam: {learning_rate: 1.0e6}}"


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """`dlx train` of the digits CNN with a learning rate of 1e6: (process, store, folder)."""
    folder = tmp_path_factory.mktemp("diverged")
    done = dlx_in_process("train", str(DIGITS), "--set=train.epochs=3", HUGE_STEPS, cwd=folder)
    return done, MlflowClient(f"sqlite:///{folder / 'mlflow.db'}"), folder


def test_a_diverging_run_stops_failed_at_its_first_nan_epoch(diverged):
    done, client, folder = diverged
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.startswith(
        "error: training diverged at epoch 1: loss is nan. Lower the learning rate "
        "(train.optimizer), or check the data for NaN or infinite values "
        "(train.on_nan: continue lets such a run go on).\n"
        f"The run {run.info.run_id} is recorded as FAILED with the metrics of its epochs up "
        "to that one.\n"
    )
    assert "Traceback" not in done.stderr
    assert "loss=nan" in done.stdout  # the epoch that diverged is shown, then the run stops
    assert run.info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [0]
    assert client.search_logged_models([run.info.experiment_id]) == []
    assert not (folder / "dlx-checkpoints").exists()  # NaN weights: nothing to resume from


def test_on_nan_continue_lets_a_diverging_run_finish():
    result = api.train(
        DIGITS,
        [
            "train.epochs=2",
            "train.optimizer={adam: {learning_rate: 1.0e6}}",
            "train.on_nan=continue",
            "tracking.log_model=false",
        ],
    )
    run = MlflowClient(result.tracking_uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert len(MlflowClient(result.tracking_uri).get_metric_history(result.run_id, "loss")) == 2
