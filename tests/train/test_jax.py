"""Training on Keras's JAX backend (`runtime.backend: jax`).

Keras reads its backend once per process, and this test process runs TensorFlow's: every run
on JAX here is a `dlx` process of its own.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dlx import api
from dlx.backend import BackendMismatch
from dlx.errors import SpecError
from dlx.tensorflow_import import import_tensorflow_quietly
from tests.conftest import ROOT
from tests.train.processes import BOUND_S, journal_lines, kill_group, wait_for

pytest.importorskip("jax")
pytestmark = pytest.mark.slow  # every test here trains in a process of its own

SPECS = ROOT / "specs"
DIGITS = SPECS / "digits_cnn.yaml"
IRIS = SPECS / "iris_mlp.yaml"
JAX = "runtime.backend=jax"

# `dlx` in a process whose imports of TensorFlow fail and are written down: what
# `dlx train` on JAX with data in memory must never need.
WITHOUT_TENSORFLOW = """
import sys, importlib.abc

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            with open("tensorflow-imports.txt", "a") as attempts:
                attempts.write(name + "\\n")
            raise ImportError(f"{name} is not importable in this test")
        return None

sys.meta_path.insert(0, NoTensorFlow())
from dlx.cli import main
sys.argv = ["dlx", *sys.argv[1:]]
main()
"""


@pytest.fixture(autouse=True)
def _keras_on_tensorflow():
    """This process's Keras runs TensorFlow's backend, as in the rest of the suite: a JAX
    spec validated here first must not start Keras on JAX in a shared test process."""
    import_tensorflow_quietly()


def dlx_on_jax(*arguments: str, cwd: Path, env: dict | None = None, job: bool = False):
    """`dlx ARGUMENTS` with TensorFlow made unimportable; a started job with `job`."""
    command = [sys.executable, "-c", WITHOUT_TENSORFLOW, *arguments]
    environment = {**os.environ, "KERAS_BACKEND": "", **(env or {})}
    if job:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    return subprocess.run(
        command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=BOUND_S
    )


def only_run(folder: Path):
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(ids)
    return client, run


def test_a_cnn_trains_on_jax_from_memory_without_importing_tensorflow_and_exports(tmp_path):
    done = dlx_on_jax("train", str(DIGITS), "--set", JAX, cwd=tmp_path)

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.splitlines()[0] == "backend: jax"
    assert not (tmp_path / "tensorflow-imports.txt").exists()
    _, run = only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.params["runtime.backend"] == "jax"
    assert run.data.tags["dlx.backend"] == "jax"
    assert "dlx.version.jax" in run.data.tags and "dlx.version.tensorflow" not in run.data.tags
    assert run.data.metrics["val_accuracy"] >= 0.95  # as on TensorFlow (0.97-0.98)

    # Exported under TensorFlow (this process's backend), checked in each runtime as any run.
    exported = api.export(
        run.info.run_id,
        ["saved_model", "onnx"],
        output=tmp_path / "export",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    assert [check.format for check in exported.checks] == ["saved_model", "onnx"]
    assert all(check.max_abs_diff <= 1e-5 for check in exported.checks)


def test_data_parallel_on_two_host_devices_is_one_run_of_two_replicas(tmp_path):
    two_devices = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = dlx_on_jax(
        "train",
        str(IRIS),
        "--set",
        JAX,
        "--set",
        "train.epochs=5",
        cwd=tmp_path,
        env=two_devices,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "(data_parallel, 2 replicas)" in done.stdout
    _, run = only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert (run.data.tags["dlx.strategy"], run.data.tags["dlx.replicas"]) == ("data_parallel", "2")


@pytest.mark.timeout(4 * BOUND_S)
def test_deterministic_reruns_are_bitwise_equal_and_kill_9_then_resume_equals_them(tmp_path):
    arguments = (
        "train",
        str(DIGITS),
        "--set",
        JAX,
        "--set",
        "train.epochs=8",
        "--set",
        "runtime.deterministic=true",
        "--set",
        "tracking.log_model=false",
    )
    straight = []
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        done = dlx_on_jax(*arguments, cwd=folder)
        assert done.returncode == 0, done.stderr[-3000:]
        straight.append(only_run(folder)[1].data.metrics)
    assert straight[0] == straight[1]

    killed = tmp_path / "killed"
    killed.mkdir()
    job = dlx_on_jax(*arguments, cwd=killed, job=True)
    try:
        wait_for(lambda: journal_lines(killed) >= 3, "three epochs journaled", job=job)
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        kill_group(job)
    _, run = only_run(killed)
    assert run.info.status == "RUNNING"
    resumed = dlx_on_jax("train", "--resume", run.info.run_id, cwd=killed)

    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    _, run = only_run(killed)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == straight[0]
    assert not (killed / "tensorflow-imports.txt").exists()


def test_a_gan_on_jax_is_a_located_error_from_validate():
    with pytest.raises(SpecError) as caught:
        api.validate(SPECS / "digits_gan.yaml", [JAX], check_data=False)

    (problem,) = caught.value.problems
    assert problem.key == "model.kind"
    assert problem.location is not None and problem.location.line > 1
    assert "a GAN trains on the tensorflow backend only" in problem.message


def test_a_process_whose_keras_runs_tensorflow_refuses_a_jax_spec_clearly(tmp_path):
    with pytest.raises(BackendMismatch) as caught:
        api.train(IRIS, [JAX], tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")

    assert "cannot switch to jax" in str(caught.value)
