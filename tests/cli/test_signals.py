"""Signals during a run: SIGTERM (`timeout`, `docker stop`, Kubernetes) stops it like Ctrl-C."""

import signal

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT
from tests.in_process import dlx_in_process
from tests.train.processes import BOUND_S, journal_lines, kill_group, start, wait_for

pytestmark = pytest.mark.slow  # each test trains or runs dlx in processes

DIGITS = ROOT / "specs" / "digits_cnn.yaml"
EPOCHS = 4  # stopped after the first: some left to resume


@pytest.mark.timeout(3 * BOUND_S)
def test_sigterm_records_the_run_killed_exits_143_and_the_run_resumes(tmp_path):
    overrides = [f"--set=train.epochs={EPOCHS}", "--set=tracking.log_model=false"]
    job = start("train", str(DIGITS), *overrides, cwd=tmp_path)
    try:
        wait_for(lambda: journal_lines(tmp_path) >= 1, "an epoch journaled")
        job.send_signal(signal.SIGTERM)
        output = job.communicate(timeout=BOUND_S)[0]
    finally:
        kill_group(job)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    run_id = run.info.run_id
    assert job.returncode == 143, output[-3000:]
    assert output.splitlines()[-1] == (
        f"terminated (SIGTERM): run {run_id} recorded KILLED; "
        f"continue it with `dlx train --resume {run_id}`"
    )
    assert "Traceback" not in output
    assert run.info.status == "KILLED"
    assert len(client.get_metric_history(run_id, "loss")) < EPOCHS

    resumed = dlx_in_process("train", "--resume", run_id, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(EPOCHS))
