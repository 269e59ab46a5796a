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
from dlx.tensorflow_import import import_tensorflow_quietly
from tests.conftest import ROOT
from tests.train.processes import BOUND_S, DLX, journal_lines, kill_group, wait_for

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


@pytest.mark.timeout(4 * BOUND_S)
def test_a_gan_on_two_host_devices_killed_and_resumed_equals_its_straight_run(tmp_path):
    """The GAN's own step on JAX, across two devices, deterministic: a run killed (`kill -9`)
    and resumed ends with the very metrics of one that ran straight through, which it could
    not if reruns differed by a bit (dropout masks, latent draws, the order of examples)."""
    arguments = (
        "train",
        str(SPECS / "digits_gan.yaml"),
        "--set",
        JAX,
        "--set",
        "train.epochs=3",
        "--set",
        "model.sample_every=1",
        "--set",
        "runtime.deterministic=true",
        "--set",
        "tracking.log_model=false",
        "--set",
        "data.test_split=0.8",  # a fifth of the digits an epoch: faster
    )
    # The three processes (straight, killed, resumed) compile the same programs: JAX's
    # persistent compilation cache, in this test's folder, compiles them once. Its key is the
    # program, its options and the XLA flags: a process that built another program (one that
    # drew or ordered differently) would miss it and compile its own.
    two_devices = {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }
    straight_folder, killed = tmp_path / "straight", tmp_path / "killed"
    straight_folder.mkdir()
    killed.mkdir()
    done = dlx_on_jax(*arguments, cwd=straight_folder, env=two_devices)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "(data_parallel, 2 replicas)" in done.stdout
    client, straight = only_run(straight_folder)
    assert straight.info.status == "FINISHED"
    assert (straight.data.tags["dlx.strategy"], straight.data.tags["dlx.replicas"]) == (
        "data_parallel",
        "2",
    )
    grids = [a.path for a in client.list_artifacts(straight.info.run_id, "samples")]
    assert grids == [f"samples/epoch_00{n}.png" for n in (1, 2, 3)]
    assert 0 < straight.data.metrics["d_loss"] < 5 and 0 < straight.data.metrics["g_loss"] < 5

    job = dlx_on_jax(*arguments, cwd=killed, env=two_devices, job=True)
    try:
        wait_for(lambda: journal_lines(killed) >= 1, "an epoch journaled", job=job)
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    finally:
        kill_group(job)
    _, run = only_run(killed)
    assert run.info.status == "RUNNING"
    resumed = dlx_on_jax("train", "--resume", run.info.run_id, cwd=killed, env=two_devices)

    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    _, run = only_run(killed)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == straight.data.metrics


def test_two_workers_on_jax_are_one_run_of_two_replicas_written_by_the_chief(tmp_path):
    done = subprocess.run(
        [*DLX, "train", str(IRIS), "--workers", "2", "--set", JAX, "--set", "train.epochs=3"],
        cwd=tmp_path,
        env={**os.environ, "KERAS_BACKEND": ""},
        capture_output=True,
        text=True,
        timeout=BOUND_S,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "(data_parallel, 2 replicas, 2 workers)" in done.stdout
    _, run = only_run(tmp_path)
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert (tags["dlx.strategy"], tags["dlx.replicas"], tags["dlx.workers"]) == (
        "data_parallel",
        "2",
        "2",
    )
    # The chief evaluated the test split alone, after the job (its collectives are over).
    assert 0 <= run.data.metrics["test_accuracy"] <= 1


def test_a_sweep_of_a_jax_spec_trains_its_trials_on_jax(tmp_path):
    from tests.sweep.test_sweep import LEARNING_RATE, TINY, parent_and_children, write_spec

    spec = write_spec(
        tmp_path,
        {
            "metric": "val_accuracy",
            "trials": 2,
            "params": {LEARNING_RATE: {"choice": [1e-3, 1e-2]}},
        },
        train={**TINY["train"], "epochs": 1},
        runtime={"backend": "jax"},
    )
    done = dlx_on_jax("sweep", str(spec), cwd=tmp_path)

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (parent,), children = parent_and_children(tmp_path)
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert {(c.info.status, c.data.tags["dlx.backend"]) for c in children} == {("FINISHED", "jax")}
    assert not (tmp_path / "tensorflow-imports.txt").exists()


def test_a_process_whose_keras_runs_tensorflow_refuses_a_jax_spec_clearly(tmp_path):
    with pytest.raises(BackendMismatch) as caught:
        api.train(IRIS, [JAX], tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")

    assert "cannot switch to jax" in str(caught.value)
