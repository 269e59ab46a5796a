"""Which study a `dlx sweep --storage URL` works: the same command on several machines
finds one study (first come creates it), and a finished one leads to a fresh study.

Real Optuna storages (an SQLite file) and real specs; no training.
"""

import threading
import time
from pathlib import Path

import optuna
import pytest

from dlx.errors import DlxError
from dlx.spec import load_spec
from dlx.sweep.options import SweepConfig
from dlx.sweep.parent import _claim_study, _owner_gone, _requeue, _wait_for_parent, study_name
from dlx.sweep.study import (
    ERROR,
    HEARTBEAT_GRACE_S,
    OWNER_BEAT,
    PARENT,
    PROCESS,
    RETRY_OF,
    RUN_IDS,
    beat_as_owner,
    counted,
    heartbeat,
    heartbeat_warnings_off,
    second_retry,
)
from tests.train.processes import wait_for

WAIT_S = 30
"""The most a test waits for a heartbeat to be recorded or lost (seconds, not a fixed sleep)."""

SPEC = """\
version: 1
name: claimed
data: {source: {sklearn: digits}, validation_split: 0.2}
model:
  layers:
    - input: {shape: [8, 8, 1]}
    - flatten
    - dense: {units: 10, activation: softmax}
train:
  optimizer: {adam: {learning_rate: 0.01}}
  loss: sparse_categorical_crossentropy
sweep:
  metric: val_loss
  trials: 2
  params:
    train.optimizer.adam.learning_rate: {log_uniform: [0.001, 0.1]}
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "claimed.yaml"
    path.write_text(SPEC)
    return path


def config(spec: Path, storage: str, trials: int = 2) -> SweepConfig:
    return SweepConfig(str(spec), [], "", storage, "", trials)


def finish(study, count: int) -> None:
    for _ in range(count):
        trial = study.ask()
        trial.suggest_float("train.optimizer.adam.learning_rate", 0.001, 0.1, log=True)
        study.tell(trial, 0.5)


def test_the_study_is_named_from_the_resolved_spec_and_its_trials(spec):
    name = study_name(load_spec(spec), 2)
    assert name.startswith("dlx-claimed-")
    assert study_name(load_spec(spec), 2) == name  # every machine: the same study
    assert study_name(load_spec(spec), 3) != name  # --trials
    changed = load_spec(spec, ["train.optimizer.adam.learning_rate=0.02"])
    assert study_name(changed, 2) != name  # --set


def test_first_come_creates_the_study_the_next_joins_it_and_a_finished_one_is_not_reused(
    spec, tmp_path
):
    loaded = load_spec(spec)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    sweep = loaded.spec.sweep
    first = config(spec, storage)
    assert _claim_study(first, sweep, loaded) is None  # it created the study
    study = optuna.load_study(study_name=first.study, storage=storage)
    study.set_user_attr(PARENT, "parent-1")  # as the creator does, once its run is open

    second = config(spec, storage)
    assert _claim_study(second, sweep, loaded) == "parent-1"  # it joins
    assert second.study == first.study

    finish(study, 2)  # the sweep has its trials: the same command again starts a new one
    third = config(spec, storage)
    assert _claim_study(third, sweep, loaded) is None
    assert third.study == f"{first.study}-2"


def test_a_study_whose_creator_never_started_its_sweep_is_an_error_after_a_wait(spec, tmp_path):
    loaded = load_spec(spec)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = config(spec, storage)
    _claim_study(first, loaded.spec.sweep, loaded)
    study = optuna.load_study(study_name=first.study, storage=storage)
    started = time.monotonic()
    with pytest.raises(DlxError, match="has no sweep run after 1s"):
        _wait_for_parent(first, study, seconds=1.0)
    assert time.monotonic() - started < 10


def beating_study(tmp_path: Path):
    """A study whose storage takes a trial for lost 1 s after its last heartbeat."""
    with heartbeat_warnings_off():
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=1, grace_period=1
        )
    return optuna.create_study(storage=storage, study_name="beating")


def running_elsewhere(study, run_id: str):
    """A trial asked by a process of another machine, which recorded its run."""
    with heartbeat_warnings_off():
        trial = study.ask()
    trial.suggest_float("train.optimizer.adam.learning_rate", 0.001, 0.1, log=True)
    trial.set_user_attr(PROCESS, "another-machine:123")
    trial.set_user_attr(RUN_IDS, [run_id])
    return trial


def test_a_trial_whose_machine_went_silent_is_rerun_and_one_that_beats_is_not(
    spec, tmp_path, monkeypatch
):
    monkeypatch.setattr("dlx.sweep.study.HEARTBEAT_S", 0.2)
    study = beating_study(tmp_path)
    lost, alive = running_elsewhere(study, "run-lost"), running_elsewhere(study, "run-alive")
    study._storage.record_heartbeat(lost._trial_id)  # then its machine is gone

    def requeued() -> list[int]:
        return _requeue(config(spec, ""), study, interrupted=True)

    with heartbeat(study, alive):  # its process beats on
        again = wait_for(requeued, "the silent trial taken for lost", timeout=WAIT_S, every=0.1)
    assert again == [lost.number]
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "RUNNING", "WAITING"]
    assert trials[2].user_attrs == {"retry_of": lost.number, "resume_run": "run-lost"}
    assert trials[2].system_attrs["fixed_params"] == trials[0].params  # the same values

    # No heartbeat once its block ended: it is taken for lost in turn.
    assert wait_for(requeued, "the trial lost once it stopped beating", WAIT_S, 0.1) == [
        alive.number
    ]


def test_a_failed_trial_with_an_error_is_rerun_only_by_retry_failed(spec, tmp_path):
    study = beating_study(tmp_path)
    failed, stopped = running_elsewhere(study, "run-failed"), running_elsewhere(study, "run-x")
    failed.set_user_attr(ERROR, "training failed: boom")
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    study.tell(stopped, state=optuna.trial.TrialState.FAIL)  # Ctrl-C: no error of its own
    assert _requeue(config(spec, ""), study, interrupted=True) == [stopped.number]
    assert _requeue(config(spec, ""), study, interrupted=False) == [failed.number]
    assert _requeue(config(spec, ""), study, interrupted=True) == []  # once each


def test_two_processes_that_retry_one_trial_at_once_count_it_once(spec, tmp_path):
    study = beating_study(tmp_path)
    stopped = running_elsewhere(study, "run-x")
    study.tell(stopped, state=optuna.trial.TrialState.FAIL)  # interrupted
    params = study.trials[0].params
    for _ in range(2):  # as two processes resuming the sweep at the same moment do
        study.enqueue_trial(params, user_attrs={RETRY_OF: stopped.number})
    first, second = study.get_trials()[1:]
    assert second_retry(second, study.get_trials())
    assert not second_retry(first, study.get_trials())
    assert [t.number for t in counted(study.get_trials())] == [first.number]


def owner_beating() -> bool:
    """Whether a thread of `beat_as_owner` is still running in this process."""
    return any(t.name == "dlx-sweep-owner-heartbeat" for t in threading.enumerate())


def test_a_sweep_whose_owner_stopped_or_went_silent_is_to_be_taken_over(
    spec, tmp_path, monkeypatch
):
    import socket
    import subprocess

    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    parent = client.create_run(
        client.create_experiment("sweeps"), tags={"dlx.process": "another-machine:123"}
    ).info.run_id
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    owned = SweepConfig(str(spec), [], parent, storage, uri, 2, study="owned")
    study = optuna.create_study(storage=storage, study_name="owned")
    sweep = load_spec(spec).spec.sweep

    def gone() -> str:
        return _owner_gone(owned, sweep)

    assert gone() == ""  # on another machine, no heartbeat recorded: not known gone
    monkeypatch.setattr("dlx.sweep.study.HEARTBEAT_S", 0.1)
    beating = beat_as_owner(owned, sweep)
    wait_for(lambda: OWNER_BEAT in study.user_attrs, "the owner's first beat", WAIT_S, 0.05)
    beating.set()
    # Its thread ends, and records no beat after the ones this test records below.
    wait_for(lambda: not owner_beating(), "the owner's heartbeat to stop", WAIT_S, 0.05)
    assert time.time() - study.user_attrs[OWNER_BEAT] < 1.0
    assert gone() == ""  # it beats
    study.set_user_attr(OWNER_BEAT, time.time() - HEARTBEAT_GRACE_S - 1)
    assert gone() == "lost"  # its machine went silent

    finished = subprocess.Popen(["true"])  # a process of this machine, gone
    finished.wait()
    client.set_tag(parent, "dlx.process", f"{socket.gethostname()}:{finished.pid}")
    study.set_user_attr(OWNER_BEAT, time.time())
    assert gone() == "lost"
    client.set_terminated(parent, status="KILLED")
    assert gone() == "stopped"  # Ctrl-C
    client.set_terminated(parent, status="FINISHED")
    assert gone() == ""


def test_a_storage_whose_tables_another_process_is_creating_is_opened_once_they_are(
    tmp_path, monkeypatch
):
    """PostgreSQL refuses the second of two processes creating Optuna's tables on a new
    database: a duplicate key of its catalog, or (seen in CI) `type "studydirection" already
    exists`; the tables are there then, and the next attempt opens them. Any other refusal is
    a clear error at once."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    from dlx.sweep import study

    real = optuna.storages.RDBStorage
    refusals = [
        ProgrammingError("CREATE TYPE", {}, Exception('type "studydirection" already exists')),
        IntegrityError("INSERT", {}, Exception("duplicate key value violates unique constraint")),
    ]

    def refused_first(*args, **kwargs):
        if refusals:
            raise refusals.pop(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", refused_first)
    monkeypatch.setattr(study.time, "sleep", lambda seconds: None)
    assert study.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}").get_all_studies() == []
    assert refusals == []
    refusals.append(ProgrammingError("SELECT", {}, Exception("permission denied for schema")))
    with pytest.raises(DlxError, match="cannot open the Optuna storage .*permission denied"):
        study.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
