"""Multi-worker training on loopback: real worker processes, a real store, hard time bounds."""

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from dlx.errors import DlxError
from dlx.train.multi_worker import KNOWN_SOURCES, Cluster, source_digest
from tests.conftest import ROOT
from tests.in_process import dlx_in_process
from tests.train.processes import (
    BOUND_S,
    dlx,
    environment_of,
    journal_lines,
    kill_group,
    processes_with,
    start,
    tf_config,
    wait_for,
)

SPEC = ROOT / "specs" / "digits_cnn.yaml"
EPOCH_COUNT = 4  # a job killed after two epochs has two to resume
EPOCHS = f"train.epochs={EPOCH_COUNT}"
TWO_WORKERS = ("train", str(SPEC), "--workers", "2", "--set", EPOCHS)
HERE = Path(__file__).parent


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def only_run(cwd: Path):
    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], max_results=10
    )
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


def test_the_keras_code_patched_for_multi_worker_is_the_code_it_was_written_for():
    """Fails when Keras changes the functions dlx patches (keras-team/keras#20585): then check
    whether Keras fixed the issue, and update or delete dlx/train/multi_worker.py."""
    from keras.src.backend.tensorflow import trainer

    assert not getattr(trainer.TensorFlowTrainer, "_dlx_multi_worker_patch", False)
    found = {
        "TensorFlowTrainer._maybe_symbolic_build": source_digest(
            trainer.TensorFlowTrainer._maybe_symbolic_build
        ),
        "reduce_per_replica": source_digest(trainer.reduce_per_replica),
    }
    assert found == KNOWN_SOURCES


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("", Cluster()),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}', Cluster()),
        (
            '{"cluster": {"worker": ["a:1", "b:1", "c:1"]}, '
            '"task": {"type": "worker", "index": 2}}',
            Cluster(3, 2, "a:1"),
        ),
        (
            '{"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", '
            '"index": 0}}',
            Cluster(2, 1, "a:1"),
        ),
        (
            '{"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief"}}',
            Cluster(2, 0, "a:1"),
        ),
    ],
)
def test_the_cluster_and_the_chief_come_from_tf_config(monkeypatch, config, expected):
    monkeypatch.setenv("TF_CONFIG", config)
    cluster = Cluster.from_environment()
    assert cluster == expected
    assert cluster.is_chief == (expected.index == 0)


@pytest.mark.parametrize(
    "config",
    ["{not json", '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "ps", "index": 0}}'],
)
def test_a_bad_tf_config_is_a_clear_error(monkeypatch, config):
    monkeypatch.setenv("TF_CONFIG", config)
    with pytest.raises(DlxError, match="TF_CONFIG"):
        Cluster.from_environment()


@pytest.mark.slow
@pytest.mark.timeout(BOUND_S + 30)
def test_two_workers_from_a_hand_made_tf_config_train_the_same_weights_into_one_run(tmp_path):
    chief_dir, worker_dir = tmp_path / "chief", tmp_path / "worker"
    chief_dir.mkdir()
    worker_dir.mkdir()
    ports = free_ports(2)
    workers = []
    for index, cwd in enumerate((chief_dir, worker_dir)):
        env = {**os.environ, "TF_CONFIG": tf_config(ports, index), "DLX_WORKER_TIMEOUT": "120"}
        output = tmp_path / f"weights-{index}.npz"
        command = [sys.executable, str(HERE / "worker_weights.py"), str(SPEC), str(output), EPOCHS]
        workers.append(
            subprocess.Popen(
                command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        )
    try:
        outputs = [w.communicate(timeout=BOUND_S)[0].decode() for w in workers]
    finally:
        for w in workers:
            w.kill()
            w.wait()
    for w, output in zip(workers, outputs, strict=True):
        assert w.returncode == 0, output[-3000:]
    assert "worker 1 of 2: run ''" in outputs[1]

    chief, worker = (np.load(tmp_path / f"weights-{i}.npz") for i in range(2))
    assert len(chief.files) == len(worker.files) == 8  # two conv2d, two dense: kernel, bias
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], worker[name])
    # The worker wrote nothing (no store, no checkpoints), the chief one run.
    assert list(worker_dir.iterdir()) == []
    client, run = only_run(chief_dir)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert (tags["dlx.strategy"], tags["dlx.replicas"], tags["dlx.workers"]) == (
        "multi_worker_mirrored",
        "2",
        "2",
    )
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(EPOCH_COUNT))
    assert not (chief_dir / "dlx-checkpoints").exists()  # removed when the run finished


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_worker_whose_peers_never_come_gives_up_with_a_clear_error(tmp_path):
    env = {"TF_CONFIG": tf_config(free_ports(2), 0), "DLX_WORKER_TIMEOUT": "3"}
    done = dlx("train", str(SPEC), cwd=tmp_path, env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL  # TensorFlow ignores SIGTERM while it waits
    assert "worker 0: the other workers of TF_CONFIG's cluster did not all join within 3 s" in (
        done.stderr
    )
    assert not (tmp_path / "mlflow.db").exists()  # no run was opened


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (
            "mirrored",
            "runtime.strategy: a cluster of 2 workers (TF_CONFIG) needs "
            "multi_worker_mirrored, but the strategy is mirrored",
        ),
        (
            "parameter_server",
            "runtime.strategy: parameter_server is not supported: Keras 3's fit "
            "has no ParameterServerStrategy support",
        ),
    ],
)
def test_strategies_that_cannot_run_a_cluster_are_clear_errors(tmp_path, strategy, message):
    env = {"TF_CONFIG": tf_config(free_ports(2), 0)}
    # Refused before any strategy is made: nothing of the cluster starts in this process.
    done = dlx_in_process(
        "train", str(SPEC), "--set", f"runtime.strategy={strategy}", cwd=tmp_path, env=env
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_the_launcher_checks_the_spec_once_before_starting_any_worker(tmp_path):
    done = dlx_in_process(*TWO_WORKERS, "--set", "runtime.strategy=one_device", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("a cluster of 2 workers (TF_CONFIG) needs multi_worker_mirrored") == 1
    assert "workers on 127.0.0.1" not in done.stderr  # nothing was started


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """`dlx train SPEC --workers 2`, uninterrupted: the reference for the resumed job."""
    cwd = tmp_path_factory.mktemp("launched")
    marker = uuid.uuid4().hex
    done = dlx(*TWO_WORKERS, cwd=cwd, env={"DLX_TEST_MARKER": marker})
    return cwd, done, marker


class TestLaunchedJob:
    """The tests of the `launched` job: together in one worker, which runs it once
    (tests/conftest.py)."""

    @pytest.mark.slow
    @pytest.mark.timeout(BOUND_S + 30)
    def test_the_launcher_runs_two_workers_as_one_finished_run(self, launched):
        cwd, done, marker = launched
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        assert "(multi_worker_mirrored, 2 replicas, 2 workers)" in done.stdout
        assert "2 workers on 127.0.0.1" in done.stderr
        _, run = only_run(cwd)
        assert run.info.status == "FINISHED" and run.data.tags["dlx.workers"] == "2"
        # Data in memory: every worker reads every example and keeps its part of each batch.
        assert "training data sharded by example: the data is in memory" in done.stdout
        assert run.data.tags["dlx.shard_policy"] == "data"
        assert "dlx.files_per_worker" not in run.data.tags
        assert processes_with("DLX_TEST_MARKER", marker) == []  # no worker left behind

    @pytest.mark.slow
    @pytest.mark.timeout(2 * BOUND_S + 60)
    def test_a_job_whose_worker_is_killed_resumes_to_the_uninterrupted_metrics(
        self, launched, tmp_path
    ):
        reference_dir, reference, _ = launched
        assert reference.returncode == 0
        _, uninterrupted = only_run(reference_dir)

        marker = uuid.uuid4().hex
        job = start(*TWO_WORKERS, cwd=tmp_path, env={"DLX_TEST_MARKER": marker})
        try:
            wait_for(lambda: journal_lines(tmp_path) >= 2, "two epochs journaled")
            (worker,) = [
                pid
                for pid in processes_with("DLX_TEST_MARKER", marker)
                if '"index": 1' in environment_of(pid).get("TF_CONFIG", "")
            ]
            os.kill(worker, signal.SIGKILL)
            output = job.communicate(timeout=BOUND_S)[0]
        finally:
            kill_group(job)
        assert job.returncode == 1, output[-3000:]
        assert "worker 1 exited with status -9" in output
        assert "training failed: a worker of the job stopped answering" in output
        assert "Exception ignored" not in output
        assert processes_with("DLX_TEST_MARKER", marker) == []
        client, failed = only_run(tmp_path)
        assert failed.info.status == "FAILED"

        resumed = dlx("train", "--resume", failed.info.run_id, "--workers", "2", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
        _, run = only_run(tmp_path)
        assert run.info.status == "FINISHED" and run.data.tags["dlx.resumed"] == "1"
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert steps == list(range(EPOCH_COUNT)), key
        assert run.data.metrics == pytest.approx(uninterrupted.data.metrics, abs=1e-6)

    @pytest.mark.slow
    @pytest.mark.timeout(BOUND_S + 30)
    def test_reproducing_a_job_on_one_process_says_the_placement_differs(self, launched):
        cwd, done, _ = launched
        assert done.returncode == 0
        _, run = only_run(cwd)
        reproduced = dlx_in_process("reproduce", run.info.run_id, cwd=cwd)
        assert reproduced.returncode == 3
        assert (
            "note: the original ran on multi_worker_mirrored, 2 replicas, 2 workers, the "
            "reproduction on default, 1 replica" in reproduced.stderr
        )


@pytest.mark.slow
def test_tpu_without_a_tpu_is_a_clear_error(tmp_path):
    # TensorFlow's TPU resolver refuses an empty address at once: nothing starts in this process.
    done = dlx_in_process("train", str(SPEC), "--set", "runtime.strategy=tpu", cwd=tmp_path)
    assert done.returncode == 1
    assert "error: runtime.strategy: tpu: no TPU found" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_tpu_address_that_never_answers_is_given_up_on(tmp_path):
    env = {"DLX_WORKER_TIMEOUT": "3"}
    done = dlx(
        "train",
        str(SPEC),
        "--set",
        "runtime.tpu=grpc://127.0.0.1:1",
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL
    assert "the TPU 'grpc://127.0.0.1:1' did not answer within 3 s" in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(BOUND_S + 30)
def test_ctrl_c_on_the_launcher_records_the_run_killed_and_leaves_no_worker(tmp_path):
    marker = uuid.uuid4().hex
    job = start(*TWO_WORKERS, cwd=tmp_path, env={"DLX_TEST_MARKER": marker})
    try:
        wait_for(lambda: journal_lines(tmp_path) >= 1, "an epoch journaled")
        job.send_signal(signal.SIGINT)
        output = job.communicate(timeout=BOUND_S)[0]
    finally:
        kill_group(job)
    assert job.returncode == 130, output[-3000:]
    assert "dlx: interrupted; workers stopped" in output
    assert processes_with("DLX_TEST_MARKER", marker) == []
    _, run = only_run(tmp_path)
    assert run.info.status == "KILLED"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TF_CONFIG": "{bad"}, "error: TF_CONFIG is not valid: Expecting property name"),
        (
            {"DLX_WORKER_TIMEOUT": "soon"},
            "error: DLX_WORKER_TIMEOUT: expected a number of seconds. Received: 'soon'",
        ),
    ],
)
def test_a_bad_cluster_environment_is_exit_2_with_a_clear_error(tmp_path, env, message):
    env = {"TF_CONFIG": tf_config(free_ports(2), 0), **env}
    done = dlx("train", str(SPEC), cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
